"""The run directory: one per training run, never reused.

    runs/<task>/<YYYYmmdd-HHMMSS>-<label>[-<name>]/
      run.json        task, model, status, command line, versions, git commit, seed, device,
                      start/end, wall time, best metric
      config.toml     the resolved options (what `--config` and `textlab rerun` read back)
      metrics.jsonl   {"step", "epoch", "split", "name", "value", "time"}, appended to (a resume after a
                      process died drops what it logged after its last last.pt); NaN/inf as null
      checkpoints/    last.pt (resumable), best.pt
      plots/  eval/  outputs/

Only rank 0 writes; other ranks hold a `Run` whose writes are no-ops.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from . import distributed
from .data import atomic_write, read_json, write_json
from .errors import TextlabError, UsageError
from .rundir import find_run, iter_run_dirs, locate_run, runs_root  # noqa: F401  (re-exported)

STATUSES = ("running", "finished", "failed", "interrupted")


class Run:
    """A training run: its directory, metrics, checkpoints and status."""

    def __init__(self, path: Path, info: dict, config: dict, *, resumed: bool = False, started: float | None = None):
        """`config`: the run's options as a flat dict (what loggers such as TensorBoard record).
        `started`: when the command began (time.time()), so that its wall clock, which a time budget
        counts, includes what happened before the run directory was made (reading the data)."""
        self.dir = Path(path)
        self.info = info
        self.config = config
        self.resumed = resumed
        self.is_main = distributed.is_main()
        self.stop_requested: str | None = None
        self._t0 = started if started is not None else time.time()
        self._prior = float(info.get("wall_time") or 0.0)
        self._loggers: list[Any] = []
        # new work written by this process; until then a bad-input error removes a new run, and
        # puts a resumed one back as it was (run.json, config.json: see `discard`)
        self._wrote = False
        self._snapshot: dict[str, bytes | None] = {}
        self._died = False  # resumed after a process that ended without saving at the end (killed or failed)
        self._trimmed = False
        self._trim_to: Any = None
        self._keep_dir = False  # a directory chosen in advance (a SLURM job's): never removed
        self._announced = False
        self._handlers: dict[int, Any] = {}
        self._stop_announced = False

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, task: str, label: str, config: dict, *, runs_dir: str | None = None, name: str | None = None,
               seed: int = 0, device: str = "cpu", loggers: list[str] | None = None,
               path: str | os.PathLike | None = None, config_text: str | None = None,
               started: float | None = None) -> "Run":
        """Make a new run directory (rank 0) and share its path with the other ranks.

        `config`: the run's options (a dict; or a record {"task", "verb", "options", "core"}), written
        as config.toml (`config_text`: that file's text, when the caller has it already).
        `path`: make the run exactly there (a new or empty folder), for example a step inside
        another run (the vectors an embedder trains for a task's run).
        """
        prior: dict = {}
        fixed = os.environ.get("TEXTLAB_RUN_DIR")  # set by `textlab submit` job scripts
        given = path is not None
        if given:  # known to every rank that calls this: no collective call below (an embedder runs on rank 0 alone)
            path = Path(path)
            if distributed.is_main():
                if path.exists() and any(path.iterdir()):
                    raise UsageError(f"{path} is not empty: a new run needs a folder of its own")
                path.mkdir(parents=True, exist_ok=True)
        elif fixed and distributed.is_main():
            path, prior = _claim_fixed_dir(Path(fixed))
        elif distributed.is_main():
            base = runs_root(runs_dir) / task
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            stem = "-".join(p for p in (stamp, _safe(label), _safe(name) if name else None) if p)
            base.mkdir(parents=True, exist_ok=True)
            for i in range(1, 10_000):
                cand = base / (stem if i == 1 else f"{stem}-{i}")
                try:
                    cand.mkdir()
                except FileExistsError:
                    continue
                path = cand
                break
        if not given:
            path = Path(distributed.broadcast_object(str(path)))
        info = {
            "task": task,
            "model": label,
            "name": name,
            "status": "running",
            "command": _command_line(),
            "textlab_version": _version(),
            "torch_version": _torch_version(),
            "python": platform.python_version(),
            "versions": library_versions(),
            "git_commit": _git_commit(),
            "seed": seed,
            "device": str(device),
            "world_size": distributed.world_size(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": _now(),
            "end": None,
            "wall_time": 0.0,
            "best": None,
            "loggers": loggers or [],
        }
        if prior.get("slurm"):
            info["slurm"] = prior["slurm"]
        run = cls(path, info, flat_config(config), started=started)
        run._keep_dir = bool(fixed) and not given
        if run.is_main:
            write_config(path, config, config_text)
            write_json(path / "run.json", info)
        run._start_loggers()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike, *, resume: bool = False, started: float | None = None,
             loggers: list[str] | None = None) -> "Run":
        """Reopen an existing run (to resume it, or to add results to it). `loggers`: the resume's
        (the run's own, or those given to it)."""
        path = locate_run(path)
        info = read_json(path / "run.json", "run.json")
        run = cls(path, info, flat_config(read_config(path)), resumed=resume, started=started)
        if resume:
            if not (path / "checkpoints" / "last.pt").exists():
                raise UsageError(f"run {path} has no checkpoints/last.pt to resume from")
            # a process that ended without saving at the end: killed (still "running") or failed
            run._died = info.get("status") in ("running", "failed")
            if (info.get("status") == "running" and info.get("host") == socket.gethostname()
                    and info.get("pid") != os.getpid() and _alive(info.get("pid"))):
                raise UsageError(f"run {path} is still training (process {info.get('pid')})",
                                 hint="stop it first (Ctrl-C saves last.pt), then resume")
            trained, now = int(info.get("world_size") or 1), distributed.world_size()
            if trained != now:  # each process trains its own shard: another count is another data order
                hint = f"textlab train --resume {path}" + (f" --nproc {trained}" if trained > 1 else "")
                raise UsageError(f"run {path} trained with {trained} process(es), this resume has {now}",
                                 hint=hint)
            if run.is_main:
                run._snapshot = {n: (path / n).read_bytes() if (path / n).exists() else None
                                 for n in ("run.json", "config.toml")}
                run.info.setdefault("resumes", []).append({"at": _now(), "command": _command_line()})
                run.info.update(status="running", end=None, pid=os.getpid(), host=socket.gethostname(), error=None)
                if loggers is not None:
                    run.info["loggers"] = list(loggers)
                write_run_json(path, run.info)
            run._start_loggers()
        return run

    # ------------------------------------------------------------------ places
    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def seed(self) -> int:
        return int(self.info.get("seed") or 0)

    @property
    def device(self) -> Any:
        return distributed.resolve_device(self.info.get("device") or "auto")

    @property
    def name(self) -> str:
        return self.dir.name

    def subdir(self, name: str) -> Path:
        p = self.dir / name
        if self.is_main:
            p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def checkpoints_dir(self) -> Path:
        return self.subdir("checkpoints")

    @property
    def plots_dir(self) -> Path:
        return self.subdir("plots")

    @property
    def eval_dir(self) -> Path:
        return self.subdir("eval")

    @property
    def outputs_dir(self) -> Path:
        return self.subdir("outputs")

    def checkpoint_path(self, which: str = "last") -> Path:
        return self.dir / "checkpoints" / f"{which}.pt"

    # ------------------------------------------------------------------ time
    def elapsed(self) -> float:
        """Wall-clock seconds of this run, across resumes."""
        return self._prior + (time.time() - self._t0)

    # ------------------------------------------------------------------ metrics
    def log(self, split: str, metrics: dict[str, Any], *, step: int, epoch: float | None = None) -> None:
        """Append one record per metric to metrics.jsonl (and to the chosen loggers)."""
        if not self.is_main or not metrics:
            return
        now = round(self.elapsed(), 3)
        records = []
        for name, value in metrics.items():
            if hasattr(value, "item"):
                value = value.item()
            if value is None:
                continue
            records.append({"step": int(step), "epoch": None if epoch is None else round(float(epoch), 4),
                            "split": split, "name": name, "value": float(value), "time": now})
        self._apply_trim()
        path = self.dir / "metrics.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as fh:
                for rec in records:  # NaN / inf are not JSON: null there (read back as NaN); loggers get the float
                    line = rec if math.isfinite(rec["value"]) else {**rec, "value": None}
                    fh.write(json.dumps(line, allow_nan=False) + "\n")
                fh.flush()
        except OSError as exc:
            from .data import write_error

            raise write_error(path, exc) from None
        self.mark_wrote()
        for logger in self._loggers:
            for rec in records:
                logger.log(rec)

    def metrics(self) -> list[dict]:
        return read_metrics(self.dir)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, which: str, **payload: Any) -> Path | None:
        """`textlab.save_checkpoint` into checkpoints/<which>.pt (rank 0 only)."""
        if not self.is_main:
            return None
        from .checkpoint import save_checkpoint

        payload.setdefault("task", self.task)
        self._apply_trim()
        if which == "last":  # where metrics.jsonl stood: a resume after a kill drops what came later
            log = self.dir / "metrics.jsonl"
            payload.setdefault("run_state", {"metrics_bytes": log.stat().st_size if log.exists() else 0})
        path = save_checkpoint(self.checkpoint_path(which), **payload)
        self.mark_wrote()
        size = vocab_size(payload.get("vocab"))
        if size is not None and size != self.info.get("vocab_size"):
            self.update(vocab_size=size)
        return path

    def load_checkpoint(self, which: str = "last") -> dict:
        from .checkpoint import load_checkpoint

        data = load_checkpoint(self.checkpoint_path(which))
        if which == "last" and self.resumed and self._died and self._trim_to is None and self.is_main:
            # done at this process's first write, so a resume refused before it loses nothing
            self._trim_to = (data.get("run_state") or {}).get("metrics_bytes")
        return data

    def _apply_trim(self) -> None:
        if self._trim_to is not None and not self._trimmed:
            self._trimmed = True
            self._trim_metrics(self._trim_to)

    def _trim_metrics(self, size: Any) -> None:
        """Drop the records a dead process logged after its last.pt: the resumed run logs those steps again."""
        log = self.dir / "metrics.jsonl"
        if not isinstance(size, int) or not log.exists() or log.stat().st_size <= size:
            return
        with open(log, "rb") as fh:
            fh.seek(size)
            dropped = sum(1 for line in fh if line.strip())
        with open(log, "r+b") as fh:
            fh.truncate(size)
        from .console import status

        status(f"dropped {dropped} metric records logged after last.pt by the process that died; "
               "those steps run again")

    def load_state(self, target: Any, state: dict) -> None:
        """Load a resumed run's weights (or optimizer state) into `target`.

        A mismatch (a resume whose options build another model) is one line naming what the resume
        changed; the run is then put back as it was (see `discard`).
        """
        from .checkpoint import load_weights

        changed = sorted((self.info.get("resumes") or [{}])[-1].get("changed") or {}) if self.resumed else []
        hint = "a resume keeps the model and its sizes" + (f"; this one changed {', '.join(changed)}" if changed else "")
        load_weights(target, state, source=self.checkpoint_path("last"), hint=hint + "; start a new run for other sizes")

    # ------------------------------------------------------------------ run.json
    def update(self, **fields: Any) -> None:
        """Set fields of run.json (for example `best` or task-specific results)."""
        self.info.update(fields)
        if self.is_main:
            self.info["wall_time"] = round(self.elapsed(), 3)
            write_run_json(self.dir, self.info)

    def record(self, **options: Any) -> None:
        """Add option values the task resolved only while running (from the data, say) to config.toml,
        so that `--config`, `rerun` and `diff` see what the run really used."""
        if not self.is_main or not options:
            return
        from .options import plain

        data = read_config(self.dir)
        data.setdefault("options", {}).update({k: plain(v) for k, v in options.items() if v is not None})
        path = self.dir / "config.toml"
        header = "\n".join(ln[2:] for ln in path.read_text(encoding="utf-8").splitlines()
                           if ln.startswith("# ")) if path.exists() else ""
        write_config(self.dir, data, header=header)
        self.config = flat_config(data)

    def set_best(self, metric: str, value: float, step: int, **more: Any) -> None:
        self.update(best={"metric": metric, "value": float(value), "step": int(step), **more})

    def mark_wrote(self) -> None:
        """Tell the run that it holds work (so a later error does not remove the directory).

        The run directory is announced on stderr at its first write: input errors found before
        that stay one line, and their empty run directory is removed.
        """
        self._wrote = True
        if not self._announced and self.is_main:
            self._announced = True
            from .console import status

            status(f"run directory: {self.dir}")

    # ------------------------------------------------------------------ stopping
    def should_stop(self) -> bool:
        """True once Ctrl-C / SIGTERM arrived (on any rank). Loops check this between steps."""
        stop = distributed.any_true(self.stop_requested is not None)
        if stop and self.stop_requested and not self._stop_announced and self.is_main:
            self._stop_announced = True
            from .console import err

            err.print(f"[yellow]{self.stop_requested}: saving last.pt and stopping "
                      "(press Ctrl-C again to stop at once)[/yellow]")
        return stop

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only set a flag: the handler runs between any two bytecodes of the main thread, which may be
        # half-way through a write to stderr or a (lazy) import of rich; printing here raised
        # "cannot import name ... from partially initialized module". should_stop() says it instead.
        if self.stop_requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop_requested = signal.Signals(signum).name

    def __enter__(self) -> "Run":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers.clear()
        signalled = self.stop_requested is not None
        try:
            if exc_type is None:
                self.finish("interrupted" if signalled else "finished")
            elif issubclass(exc_type, KeyboardInterrupt) or (signalled and issubclass(exc_type, (SystemExit, BrokenPipeError))):
                self.finish("interrupted")  # Ctrl-C; or the pipe we printed to (`| tee`) died of the same Ctrl-C
            elif issubclass(exc_type, (TextlabError, OSError)) and not self._wrote and not self._keep_dir:
                self.discard()  # bad input or a fault before anything was written: nothing half-written is kept
            else:
                self.finish("failed", error=f"{exc_type.__name__}: {exc}")
        except OSError as write_exc:
            if exc_type is None:
                raise
            from .console import warn  # the first error is the one to report; say the status could not be kept

            warn(f"could not record the run's status in {self.dir / 'run.json'}: {write_exc}")
        return False

    def finish(self, status: str, error: str | None = None) -> None:
        self.update(status=status, end=_now(), error=error)
        for logger in self._loggers:
            try:
                if hasattr(logger, "finish"):
                    logger.finish(status)  # a tracker with a status of its own (MLflow) or a summary (hparams)
                logger.close()
            except Exception as exc:  # noqa: BLE001 - a logger must not lose the run
                from .console import warn

                warn(f"logger {type(logger).__name__} could not finish: {exc}")
        self._loggers = []

    def discard(self) -> None:
        """Remove a run that failed before it wrote anything (bad input): nothing half-written.

        A resumed run is put back as it was instead: its run.json and config.toml as before the
        resume (status, options), its checkpoints and metrics untouched.
        """
        self._loggers = []
        if self.resumed:
            if self.is_main:
                for name, data in self._snapshot.items():
                    if data is None:  # a run of textlab 0.1 had no config.toml before this resume
                        (self.dir / name).unlink(missing_ok=True)
                        continue
                    with atomic_write(self.dir / name, "wb") as fh:
                        fh.write(data)
            return
        if self.is_main:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
            try:
                self.dir.parent.rmdir()  # the task folder, if this was its only run
            except OSError:
                pass

    def _start_loggers(self) -> None:
        """Open the loggers; one that cannot start leaves the run as it was (a new run: no directory)."""
        try:
            self._open_loggers()
        except BaseException:
            self.discard()
            raise

    def _open_loggers(self) -> None:
        if not self.is_main:
            return
        from .errors import first_line
        from .plugins import registry

        for name in self.info.get("loggers") or []:
            spec = registry().logger(name)
            try:
                self._loggers.append(spec.factory(self.dir, self.config))
            except TextlabError:
                raise
            except Exception as exc:  # noqa: BLE001 - a tracker that cannot start is one line
                raise TextlabError(f"--logger {name} could not start: {type(exc).__name__}: {first_line(exc)}") from None


def _claim_fixed_dir(path: Path) -> tuple[Path, dict]:
    """Use a run directory chosen in advance (a queued SLURM job). Never overwrite work in it."""
    path.mkdir(parents=True, exist_ok=True)
    if (path / "checkpoints" / "last.pt").exists():
        raise UsageError(f"{path} already holds a checkpoint", hint=f"resume it: textlab train --resume {path}")
    prior = read_json(path / "run.json", "run.json") if (path / "run.json").exists() else {}
    metrics = path / "metrics.jsonl"
    if metrics.exists():  # an attempt that died before its first checkpoint: keep its log aside
        n = 1
        while (path / f"metrics.attempt{n}.jsonl").exists():
            n += 1
        metrics.rename(path / f"metrics.attempt{n}.jsonl")
    return path, prior


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All records of a run's metrics.jsonl.

    A torn last line (a kill) is skipped; a few unreadable lines are skipped with a warning; a file
    that holds no record at all is one DataError (it is not textlab's metrics log)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out, bad, lines = [], 0, 0
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                lines += 1
                rec = _metric_record(raw)
                if rec is None:
                    bad += 1
                else:
                    out.append(rec)
    except OSError as exc:
        from .errors import DataError

        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if lines and not out:
        from .errors import DataError

        raise DataError(f"{path} is not a textlab metrics log: none of its {lines:,} lines is a metric record")
    if bad > 1:  # one torn last line is what a kill leaves: not worth a word
        from .console import warn

        warn(f"{path}: skipped {bad:,} of {lines:,} lines that are not metric records")
    return out


def _metric_record(raw: bytes) -> dict | None:
    """One line of metrics.jsonl as a record, or None when it is not one."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("split"), str) or not isinstance(rec.get("name"), str):
        return None
    step, value = rec.get("step"), rec.get("value")
    if not isinstance(step, int) or isinstance(step, bool) or not (value is None or _number(value)):
        return None
    if not all(rec.get(k) is None or _number(rec.get(k)) for k in ("epoch", "time")):
        return None
    if value is None:
        rec["value"] = float("nan")  # logged as null: NaN or inf
    return rec


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_info(run_dir: str | os.PathLike) -> dict:
    """A run's run.json as a dict, or {} when it is missing or not one (for listings and reports)."""
    try:
        data = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_runs(runs_dir: str | os.PathLike | None = None, task: str | None = None) -> list[dict]:
    """Every run under the root: run.json plus its path and a liveness check for 'running'."""
    root = runs_root(runs_dir)
    if not root.is_dir():
        return []
    rows = []
    for info_path in sorted(root.glob("*/*/run.json")):
        info = read_info(info_path.parent)
        if not info:
            continue  # not a run.json textlab wrote
        if task and info.get("task") != task:
            continue
        info["path"] = str(info_path.parent)
        if info.get("status") == "running" and info.get("host") == socket.gethostname() and not _alive(info.get("pid")):
            info["status"] = "stale"  # the process died without marking the run
        rows.append(info)
    return rows


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _safe(text: str | None) -> str:
    import re

    return re.sub(r"[^\w.=,+-]+", "_", str(text)).strip("_")[:80] if text else ""


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _command_line() -> str:
    import shlex

    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "textlab")):
        argv[0] = "textlab"
    return " ".join(shlex.quote(a) for a in argv)


def _version() -> str:
    from ._version import __version__

    return __version__


LIBRARIES = ("numpy", "typer", "rich", "pluggy", "pyarrow", "datasets", "scikit-learn", "numba", "einops", "nltk",
             "transformers", "tensorboard", "mlflow-skinny", "mlflow")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a run's results can depend on (those installed)."""
    from importlib import metadata

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def vocab_size(vocab: Any) -> int | None:
    """Entries of a checkpoint's vocabulary (a Vocab dict, a list, or a dict of word lists), if it says."""
    if isinstance(vocab, dict) and isinstance(vocab.get("itos"), list):
        return len(vocab["itos"])
    if isinstance(vocab, (list, tuple)):
        return len(vocab)
    if isinstance(vocab, dict) and isinstance(vocab.get("words"), list):
        return len(vocab["words"])
    return None


def _torch_version() -> str | None:
    try:
        import torch

        return torch.__version__
    except ImportError:  # pragma: no cover
        return None


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return commit + ("-dirty" if dirty else "")


# ============================================================================ config.toml
def flat_config(config: dict) -> dict:
    """A record {"options": ..., "core": ...} (or a plain dict of options) as one flat dict."""
    if isinstance(config, dict) and isinstance(config.get("options"), dict):
        return {**config.get("options", {}), **(config.get("core") or {})}
    return dict(config or {})


def write_config(path: Path, config: dict, text: str | None = None, header: str = "") -> None:
    """config.toml of a run: `text`, or `config` (a record or a plain dict of options) as TOML."""
    from .options import dump_toml, plain

    if text is None:
        tables = dict(config) if isinstance(config.get("options"), dict) else {"options": config}
        text = dump_toml({k: plain(v) for k, v in tables.items()}, header)
    with atomic_write(path / "config.toml", "w", encoding="utf-8") as fh:
        fh.write(text)


def read_config(path: Path) -> dict:
    """A run's stored options as a record (config.toml; a run of textlab 0.1: its config.json)."""
    import tomllib

    toml_path, legacy = path / "config.toml", path / "config.json"
    if toml_path.exists():
        try:
            return tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            from .errors import DataError

            raise DataError(f"{toml_path} is not valid TOML ({exc})") from None
    if legacy.exists():
        data = read_json(legacy, "config.json")
        return {"options": data} if isinstance(data, dict) else {}
    return {}


# ============================================================================ `textlab runs`
STATUSES_SHOWN = ("finished", "running", "failed", "interrupted", "stale", "queued")


def prune_runs(rows: list[dict], statuses: set[str], yes: bool) -> list[dict]:
    """Delete the failed and stale runs among `rows` (or those of `statuses`, failed/stale only).

    Asks first in a terminal; elsewhere it needs `yes` (a script must say it means it)."""
    import shutil
    import sys

    from .console import err, status

    doomed = statuses & {"failed", "stale"} or {"failed", "stale"}
    if statuses - {"failed", "stale"}:
        raise UsageError("--prune deletes failed and stale runs only", hint="--prune [--status failed|stale]")
    victims = [r for r in rows if r.get("status") in doomed]
    if not victims:
        status("nothing to prune: no " + " or ".join(sorted(doomed)) + " runs")
        return []
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"--prune would delete {len(victims)} run(s); pass --yes to confirm (no terminal to ask)")
        err.print(runs_table(victims, f"{len(victims)} run(s) to delete"))
        if input("delete them? [y/N] ").strip().lower() not in ("y", "yes"):
            raise UsageError("nothing deleted")
    for r in victims:
        shutil.rmtree(r["path"], ignore_errors=True)
    status(f"deleted {len(victims)} run(s)")
    return victims


STATUS_COLOURS = {"finished": "green", "running": "cyan", "failed": "red", "interrupted": "yellow", "stale": "magenta",
                  "queued": "blue"}


def runs_table(rows: list[dict], title: str) -> Any:
    """The rich table `textlab runs` prints: run, task, model, status, best metric, age."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title))
    for col in ("run", "task", "model", "status", "best", "age"):
        t.add_column(col)
    for r in sorted(rows, key=lambda r: r.get("start") or ""):
        best = r.get("best") if isinstance(r.get("best"), dict) else {}
        value = best.get("value")
        best_s = f"{best.get('metric')} {value:.4g}" if isinstance(value, (int, float)) else "-"
        st = str(r.get("status", "?"))
        if isinstance(r.get("slurm"), dict):
            st += f" (job {r['slurm'].get('job_id')})"
        colour = STATUS_COLOURS.get(st.split()[0], "white")
        t.add_row(escape(Path(r["path"]).name), escape(str(r.get("task", "?"))), escape(str(r.get("model") or "-")),
                  f"[{colour}]{escape(st)}[/]", escape(best_s), age(r.get("start")))
    return t


def age(start: str | None) -> str:
    """'5m ago', '3h ago'... from an ISO time."""
    if not start:
        return "?"
    try:
        secs = (datetime.now().astimezone() - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


def write_run_json(run_dir: Path, info: dict) -> None:
    """run.json, atomically; on a full disk (where not even a new small file fits), rewritten in
    place, compactly: a run's status must not stay `running` because its checkpoint filled the disk."""
    path = run_dir / "run.json"
    try:
        write_json(path, info)
    except OSError as exc:
        if getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT) or not path.exists():
            raise
        text = json.dumps(info, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"
        with open(path, "r+", encoding="utf-8") as fh:
            fh.write(text)
            fh.truncate()
