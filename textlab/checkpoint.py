"""Checkpoints: one `.pt` file of tensors and plain values, enough on its own for every verb.

Layout of the dict inside::

    format: "textlab.checkpoint"   version: 2 (1: the vocabulary pickled; still read)
    task, model: str               config: dict (the model's config dataclass as a dict)
    vocab: anything plain (usually Vocab.to_dict()); stored as JSON text (vocab_format: "json")
           where it is JSON exactly (str keys, lists, str, int, finite float, bool, None)
    state_dict: {name: tensor}     extra: dict (task-specific plain values and tensors)
    train_state: dict | None       (optimizer, scheduler, step, epoch, RNG...: only in last.pt)
    run_state: dict                (only in a run's last.pt: metrics_bytes, the size of metrics.jsonl then)
    textlab_version: str

The vocabulary goes in as one JSON string, not as millions of pickled objects: torch's safe
unpickler reads a 2.5M-word vocabulary with its counts in 10 s, the JSON in 0.8 s
(`load_checkpoint` hands back the same dict). Files are written to a temporary name and renamed,
without the CRC32 that torch.save would compute for every record (torch.load never checks it;
computing it was half the time of writing a 270 MB last.pt). Loading uses
`torch.load(..., weights_only=True)`, which refuses to run code, and refuses any file that is
not ours with one clear line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UsageError, first_line

FORMAT = "textlab.checkpoint"
VERSION = 2


def save_checkpoint(path: str | os.PathLike, *, task: str, model: str, config: Any, state_dict: dict,
                    vocab: Any = None, extra: dict | None = None, train_state: dict | None = None,
                    run_state: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary file + rename)."""
    import torch

    from ._version import __version__
    from .specs import config_to_dict

    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "textlab_version": __version__,
        "task": task,
        "model": model,
        "config": config_to_dict(config),
        "vocab": vocab,
        "state_dict": {k: v.detach().cpu() if hasattr(v, "detach") else v for k, v in state_dict.items()},
        "extra": extra or {},
        "train_state": train_state,
    }
    if run_state is not None:  # the core's own bookkeeping (Run.save_checkpoint): where metrics.jsonl stood
        payload["run_state"] = run_state
    if vocab is not None and _json_exact(vocab):
        import json

        payload.update(vocab=json.dumps(vocab, ensure_ascii=False, allow_nan=False), vocab_format="json")
    from .data import new_temp_file, write_error

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temp_file(path)
        with _without_crc32(torch):
            torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)):
            err = write_error(path, exc)
            raise CheckpointError(err.message, hint=err.hint) from None
        raise
    return path


@contextlib.contextmanager
def _without_crc32(torch: Any) -> Iterator[None]:
    """torch.save without the CRC32 of each record (the module docstring); torch's setting as it was after."""
    ser = torch.serialization
    if not hasattr(ser, "set_crc32_options"):  # an older torch: it computes them
        yield
        return
    before = ser.get_crc32_options()
    ser.set_crc32_options(False)
    try:
        yield
    finally:
        ser.set_crc32_options(before)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a textlab checkpoint; never executes code from the file."""
    import pickle
    import warnings
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: we refuse in one line instead
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"refusing to load {path}: it is not a textlab checkpoint (it holds Python objects that could run code)"
            ) from None
        if "Weights only load failed" in text or "weights_only" in text:
            # an opcode the safe unpickler does not know: random bytes, or a pickle torch.save did not write
            raise CheckpointError(f"{path} is not a textlab checkpoint (corrupt, or not written by torch.save)") from None
        raise CheckpointError(f"{path} is not a textlab checkpoint (unreadable: {first_line(exc)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - whatever else torch raises on foreign bytes
        raise CheckpointError(f"{path} is not a textlab checkpoint ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a textlab checkpoint (no textlab format tag)")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise CheckpointError(f"{path} was written by a newer textlab (format version {data.get('version')}); upgrade textlab")
    for key in ("task", "model", "state_dict"):
        if key not in data:
            raise CheckpointError(f"{path} is missing {key!r}: corrupt or not a textlab checkpoint")
    if data.pop("vocab_format", None) == "json":
        import json

        try:
            data["vocab"] = json.loads(data["vocab"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path} has a vocabulary that is not JSON ({first_line(exc)}): corrupt") from None
    _check_fields(path, data)
    return data


def _json_exact(value: Any) -> bool:
    """Whether JSON gives `value` back unchanged (no tuples, no int keys, no NaN, no tensors)."""
    import math

    kind = type(value)
    if value is None or kind in (str, int, bool):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:  # the long lists (words, counts) in one pass of a builtin
        return all(type(x) is str for x in value) or all(type(x) is int for x in value) or all(map(_json_exact, value))
    if kind is dict:
        return all(type(k) is str and _json_exact(v) for k, v in value.items())
    return False


# what each field of a checkpoint must be (a file with our tag but other contents is refused in one line)
_FIELDS = {"task": (str,), "model": (str,), "state_dict": (dict,), "config": (dict, type(None)),
           "extra": (dict, type(None)), "train_state": (dict, type(None)), "run_state": (dict, type(None))}


def _check_fields(path: Path, data: dict) -> None:
    import torch

    for key, types in _FIELDS.items():
        if key in data and not isinstance(data[key], types):
            want = " or ".join("none" if t is type(None) else {"dict": "a mapping", "str": "text"}[t.__name__]
                               for t in types)
            raise CheckpointError(f"{path} is corrupt: its {key!r} is {type(data[key]).__name__}, not {want}")
    for name, value in data["state_dict"].items():
        if not isinstance(name, str) or not (torch.is_tensor(value) or isinstance(value, (int, float, bool, str,
                                                                                           list, dict, type(None)))):
            raise CheckpointError(f"{path} is corrupt: its state_dict holds {type(value).__name__} under {name!r}")


def load_weights(target: Any, state: dict, *, source: str | os.PathLike, hint: str | None = None) -> None:
    """`target.load_state_dict(state)` (a module or an optimizer); a mismatch is one line, not a traceback.

    torch's message starts with "Error(s) in loading state_dict for X:" and names the problem on the
    next line; that line (the first missing or unexpected key, or the first size mismatch) is shown.
    """
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: its weights do not fit this model ({mismatch_detail(exc)})",
                              hint=hint) from None


def mismatch_detail(exc: BaseException) -> str:
    """The informative part of a `load_state_dict` error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        detail = lines[1]
        if detail.startswith(("Missing key(s)", "Unexpected key(s)")):
            head, _, keys = detail.partition(":")
            names = [k.strip().strip('".') for k in keys.split(",") if k.strip()]
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return f"{head.lower()}: {', '.join(names[:3])}{more}"
        return first_line(ValueError(detail), 160)
    return first_line(exc, 160)


@dataclass
class Artifact:
    """What artifact-first verbs (eval, neighbors, generate...) receive: a loaded checkpoint.

    `run_dir` is set when the user passed a run directory (or a checkpoint inside one); results
    then go to `run_dir/eval`, `run_dir/plots`, `run_dir/outputs`. Otherwise they go beside the
    checkpoint (`output_dir`). `device` is where verbs run the model (`--device`; `cpu` when a
    verb is called from Python without one).
    """

    path: Path
    data: dict
    run_dir: Path | None = None
    device: Any = "cpu"
    _model: Any = field(default=None, repr=False)

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def model_name(self) -> str:
        return self.data["model"]

    @property
    def config(self) -> dict:
        return self.data.get("config") or {}

    @property
    def vocab(self) -> Any:
        return self.data.get("vocab")

    @property
    def extra(self) -> dict:
        return self.data.get("extra") or {}

    @property
    def state_dict(self) -> dict:
        return self.data["state_dict"]

    def model_config(self) -> Any:
        """The model's config dataclass, rebuilt from the checkpoint."""
        from .plugins import registry
        from .specs import config_from_dict

        return config_from_dict(self._model_spec().config, self.config)

    def _model_spec(self) -> Any:
        from .plugins import registry

        try:
            return registry().model(self.task, self.model_name)
        except UsageError:
            raise CheckpointError(
                f"{self.path} needs model {self.model_name!r} of task {self.task!r}, which no installed plugin provides"
            ) from None

    def build_model(self, device: Any = None) -> Any:
        """Build the registered model from the stored config and vocabulary, load the weights, and
        move it to `device` (default: the artifact's `device`)."""
        if self._model is None:
            spec = self._model_spec()
            model = spec.build(self.model_config(), self.vocab)
            load_weights(model, self.state_dict, source=self.path)
            model.eval()
            self._model = model
        return self._model.to(self.device if device is None else device)

    def data_source(self, data: str | os.PathLike | None) -> tuple[str, bool]:
        """(the data a verb reads, whether it is the data the run trained on): `--data` if given,
        else what the checkpoint recorded (`extra["data"]`)."""
        own = self.extra.get("data")
        if data:
            return str(data), same_data(data, own)
        if not own:
            raise UsageError(f"{self.path} does not say which data it was trained on: pass --data")
        return str(own), True

    def output_dir(self, kind: str = "eval", data: str | os.PathLike | None = None) -> Path:
        """Where a verb writes its results: `<run>/<kind>` or `<checkpoint dir>/<stem>-<kind>`.

        Results on `data` other than the data the checkpoint was trained on (`extra["data"]`) go to
        a subfolder named after that data (`<kind>/<name>-<hash>`), so evaluating on other data
        never replaces the results on the run's own.
        """
        base = (self.run_dir / kind) if self.run_dir else (self.path.parent / f"{self.path.stem}-{kind}")
        if data is not None and not same_data(data, self.extra.get("data")):
            base = base / data_label(data)
        base.mkdir(parents=True, exist_ok=True)
        return base


def _data_key(data: str | os.PathLike) -> str:
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else str(data)


def same_data(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Whether two data references (a registered name, or a path however spelled) name the same data."""
    if a is None or b is None:
        return a is b
    return _data_key(a) == _data_key(b)


def data_label(data: str | os.PathLike) -> str:
    """A folder name for results on `data`: its last name, made safe, and a short hash of the whole reference."""
    import hashlib

    key = _data_key(data)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in (Path(key).name or "data")).strip(".") or "data"
    return f"{name[:40]}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def open_artifact(target: str | os.PathLike, *, which: str = "best", device: Any = "cpu",
                  make_one: str | None = None) -> Artifact:
    """A run directory, a run name under the runs root, or a checkpoint file -> Artifact.

    `make_one`: how to make a run, said when `target` does not exist."""
    from .rundir import locate_target

    path = locate_target(target, make_one)
    run_dir = None
    if path.is_dir():
        if not (path / "run.json").exists() and not (path / "checkpoints").is_dir():
            raise CheckpointError(f"{path} is not a run directory (no run.json)")
        run_dir = path
        order = ["best.pt", "last.pt"] if which == "best" else ["last.pt", "best.pt"]
        ckpt = next((path / "checkpoints" / n for n in order if (path / "checkpoints" / n).exists()), None)
        if ckpt is None:
            raise CheckpointError(f"run {path} has no checkpoint yet (checkpoints/best.pt or last.pt)")
    else:
        if which == "last":
            raise UsageError(f"--checkpoint last picks a checkpoint of a run directory; {path} is a checkpoint file",
                             hint="pass the run directory, or the file you want")
        ckpt = path
        if path.parent.name == "checkpoints" and (path.parent.parent / "run.json").exists():
            run_dir = path.parent.parent
    return Artifact(ckpt, load_checkpoint(ckpt), run_dir, device)
