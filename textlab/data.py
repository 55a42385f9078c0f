"""Data sources, local readers, the Hugging Face hub, and the cache.

`--data` takes one of:
  * the name of a dataset a plugin registered for the task (`sample`, `ag_news`, ...),
  * a local file or folder (parquet, csv, tsv, jsonl, json, txt; any of them gzipped),
  * a Hugging Face dataset name, optionally `name:config` (users are online; offline it fails
    in one line that says how to pass local files).

Prepared data is cached under `textlab_home()` (`TEXTLAB_HOME`, else the platform's user cache
folder), keyed by a fingerprint of the source and the options, so a second run reuses it.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import DataError, WriteError, first_line

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json")
TEXT_SUFFIXES = (".txt", ".text", ".raw", ".tokens")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TEXTLAB_OFFLINE")


# ---------------------------------------------------------------------------- places
def textlab_home() -> Path:
    """Root of textlab's cache: `TEXTLAB_HOME`, else the platform's user cache folder."""
    env = os.environ.get("TEXTLAB_HOME")
    if env:
        path = Path(env).expanduser()
        if path.exists() and not path.is_dir():
            raise DataError(f"TEXTLAB_HOME={env} is a file, not a folder",
                            hint="point TEXTLAB_HOME at a folder (it holds textlab's caches), or unset it")
        return path
    import platformdirs

    return Path(platformdirs.user_cache_path("textlab"))


def cache_dir(task: str, kind: str, key: str | None = None) -> Path:
    """`<home>/<task>/<kind>[/<key>]`, created."""
    path = textlab_home() / task / kind
    if key:
        path = path / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def fingerprint(*parts: Any, length: int = 16) -> str:
    """A short stable hash of plain values and files (path, size and mtime of each file).

    Files are hashed by name, size and modification time (not by absolute path), so a copied
    or moved source, such as the data in a `textlab bundle` on another machine, keeps its cache
    (copy with `cp -a`, `rsync -a` or `tar`, which keep modification times), and editing it
    invalidates the cache.
    """
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, Path):
            p = obj.expanduser().resolve()
            if p.is_dir():
                for f in sorted(x for x in p.rglob("*") if x.is_file()):
                    st = f.stat()
                    h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns};".encode())
            elif p.exists():
                st = p.stat()
                h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
            else:
                h.update(f"{p}:missing;".encode())
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for x in obj:
                feed(x)
            h.update(b"]")
        elif isinstance(obj, dict):
            feed(sorted(obj.items(), key=lambda kv: str(kv[0])))
        else:
            h.update(json.dumps(obj, sort_keys=True, default=str).encode())
            h.update(b";")

    for part in parts:
        feed(part)
    return h.hexdigest()[:length]


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask sets it, which races other threads)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_temp_file(path: Path) -> str:
    """An empty temporary file beside `path`, with the permissions a plain `open` would give it.

    (`mkstemp` makes it 0600, which the rename would carry over: a group could not read a shared
    runs folder, a bundle or prepared data.)
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return tmp


# errors that mean "this file cannot be written here" (not a bug in the writer): named in one line
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
                 errno.EISDIR}


def write_error(path: str | os.PathLike, exc: BaseException) -> WriteError:
    """One line for a file that could not be written: which file, why, how much room is left."""
    import shutil

    path = Path(path)
    if isinstance(exc, WriteError):
        return exc
    try:
        free = shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free
    except (OSError, StopIteration):
        free = None
    code = getattr(exc, "errno", None)
    full = code in (errno.ENOSPC, errno.EDQUOT) or "unexpected pos" in str(exc)  # torch's zip writer on a full disk
    what = "the disk is full" if full else (getattr(exc, "strerror", None) or first_line(exc))
    room = f" ({free / 2**20:,.0f} MiB free there)" if free is not None and full else ""
    run = next((p for p in list(path.parents)[:3] if (p / "run.json").is_file()), None)
    hint = None
    if full:
        hint = (f"earlier checkpoints are intact; make room, then: textlab train --resume {run}" if run
                else "make room, then run the command again")
    err = WriteError(f"could not write {path}: {what}{room}", hint=hint)
    err.errno = code if code is not None else (errno.ENOSPC if full else None)
    return err


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Write to a temporary file beside `path` and rename it into place when done.

    A crash or Ctrl-C leaves the old file (or none), never half a file. A full disk or a folder
    that cannot be written is one `WriteError` naming `path`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temp_file(path)
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError) and exc.errno in _WRITE_ERRNOS:
            raise write_error(path, exc) from None
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically, pretty and UTF-8 (Cyrillic stays readable)."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read JSON, turning a missing or malformed file into one clear DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} is not valid JSON: {exc}") from None


# ---------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Source:
    """What `--data` named: a registered dataset, a local path, or a hub dataset."""

    kind: str  # "registered" | "local" | "hub"
    ref: str
    path: Path | None = None
    spec: Any = None  # DatasetSpec for kind == "registered"
    config: str | None = None  # hub config (the part after ':')

    def describe(self) -> str:
        if self.kind == "local":
            return str(self.path)
        if self.kind == "hub":
            return f"hf:{self.ref}" + (f":{self.config}" if self.config else "")
        return self.ref


    def reference(self) -> str:
        """What a checkpoint records as its data, so that `eval` finds it again from any working
        directory: a registered name, a local path made absolute, or `hub-name[:config]`."""
        if self.kind == "local" and self.path is not None:
            return str(self.path.expanduser().resolve())
        if self.kind == "hub":
            return self.ref + (f":{self.config}" if self.config else "")
        return self.ref

    def fingerprint(self, *parts: Any) -> str:
        """A cache key of this data (and `parts`) that does not depend on where local files lie:
        registered and hub data by name, local files by what `fingerprint` reads of them (names,
        sizes, modification times), so the same data reached by another path, or copied to another
        machine with `cp -a` or a bundle, reuses its cache."""
        if self.kind == "local" and self.path is not None:
            return fingerprint("local", Path(self.path), *parts)
        return fingerprint(self.kind, self.ref, self.config, *parts)


def resolve(task: str, data: str) -> Source:
    """Decide what `--data VALUE` means for `task` (see the module docstring)."""
    from .plugins import registry

    if not data:
        raise DataError("--data is empty", hint="pass a dataset name, a local path or 'sample'")
    spec = registry().dataset(task, data)
    if spec is not None:
        return Source("registered", data, spec=spec)
    alias = aliases().get(data)
    if alias is not None:  # a name bundled for offline use (`textlab bundle`)
        target = Path(alias) if Path(alias).is_absolute() else textlab_home() / alias
        if not target.exists():
            raise DataError(f"--data {data}: bundled at {target}, which is missing")
        return Source("local", data, path=target)
    path = Path(data).expanduser()
    if path.exists():
        return Source("local", data, path=path)
    parts = data.split("/")
    looks_like_path = (
        data.startswith((".", "/", "~"))
        or _has_suffix(Path(data), TABLE_SUFFIXES + TEXT_SUFFIXES + (".gz", ".ipynb", ".json"))
        or len(parts) > 2
        or (len(parts) == 2 and Path(parts[0]).expanduser().is_dir())  # data/missing, not org/dataset
    )
    if looks_like_path:
        raise DataError(f"no such file or folder: {data}")
    name, _, config = data.partition(":")
    return Source("hub", name, config=config or None)


def aliases() -> dict[str, str]:
    """Dataset names registered in `TEXTLAB_HOME/datasets.json` (by `textlab bundle`) -> paths."""
    path = textlab_home() / "datasets.json"
    if not path.exists():
        return {}
    data = read_json(path, "datasets.json")
    return data if isinstance(data, dict) else {}


def split_files(folder: Path, split: str, suffixes: Iterable[str] = TABLE_SUFFIXES + TEXT_SUFFIXES) -> list[Path]:
    """Files in `folder` for one split: `train.parquet`, `train-0000-of-0002.parquet`, `wiki.train.txt.gz`..."""
    aliases = {"valid": ("valid", "validation", "val", "dev"), "test": ("test",), "train": ("train",)}.get(split, (split,))
    found = []
    for f in sorted(folder.iterdir()):
        if not f.is_file() or not _has_suffix(f, suffixes):
            continue
        stem = _strip_suffixes(f.name).lower()
        tokens = stem.replace("-", ".").replace("_", ".").split(".")
        if any(a in tokens for a in aliases):
            found.append(f)
    return found


def _strip_suffixes(name: str) -> str:
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[0]


def _has_suffix(path: Path, suffixes: Iterable[str]) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return any(name.endswith(s) for s in suffixes)


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a text file, gzipped or not, with a clear error if it is neither."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors="strict", newline=None)
    return open(path, encoding=encoding, newline=None)


def iter_lines(paths: Path | Iterable[Path], suffixes: Iterable[str] = TEXT_SUFFIXES) -> Iterator[str]:
    """Stream the lines of a text file, or of every text file in a folder (sorted), .gz included."""
    if isinstance(paths, (str, Path)):
        p = Path(paths)
        paths = sorted(f for f in p.rglob("*") if f.is_file() and _has_suffix(f, suffixes)) if p.is_dir() else [p]
        if not paths:
            raise DataError(f"no text files ({', '.join(suffixes)}, optionally .gz) in {p}")
    for path in paths:
        try:
            with open_text(path) as fh:
                for line in fh:
                    yield line.rstrip("\n")
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"cannot read {path} as UTF-8 text: {exc}") from None


def read_table(path: str | os.PathLike, columns: Iterable[str] | None = None, *, csv_header: bool = True,
               column_names: list[str] | None = None) -> "Any":
    """Read one parquet / csv / tsv / jsonl / json file (optionally .gz) into a pyarrow Table.

    `columns` are checked: a missing column is one DataError naming the file and what it has.
    For a header-less CSV pass `csv_header=False` and `column_names`.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".parquet"):
            table = pq.read_table(path)
        elif name.endswith((".csv", ".tsv")):
            delim = "\t" if name.endswith(".tsv") else ","
            read_opts = pacsv.ReadOptions(autogenerate_column_names=False, column_names=column_names) if not csv_header else None
            table = pacsv.read_csv(path, read_options=read_opts,
                                   parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True))
        elif name.endswith(".jsonl"):
            table = pajson.read_json(path)
        elif name.endswith(".json"):
            with open_text(path) as fh:
                obj = json.load(fh)
            if isinstance(obj, dict):
                obj = next((v for v in obj.values() if isinstance(v, list)), [obj])
            table = pa.Table.from_pylist(obj)
        else:
            raise DataError(f"cannot read {path}: expected .parquet, .csv, .tsv, .jsonl or .json (optionally .gz)")
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises many kinds; all mean "malformed"
        raise DataError(f"cannot read {path}: {first_line(exc)}") from None
    if columns:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            names = ", ".join(repr(m) for m in missing)
            raise DataError(f"{path} has no column {names}", hint=f"its columns: {', '.join(table.column_names)}")
    return table


def iter_parquet(path: str | os.PathLike, columns: list[str], *, batch_size: int = 10_000,
                 hint: str | None = None) -> Iterator[Any]:
    """The `columns` of a parquet file as pyarrow record batches of `batch_size` rows, for data
    too large to read whole: memory holds about one batch, whatever the file's size (no
    read-ahead of the file, and pyarrow's pool gives back what each batch used).

    An unreadable file, or a missing column, is one DataError (its hint: the file's columns, then
    `hint`, e.g. which option chooses the column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds; all mean "not a parquet file"
        raise DataError(f"cannot read {path}: {first_line(exc)}") from None
    names = pf.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{path} has no column {', '.join(repr(m) for m in missing)}",
                        hint=f"its columns: {', '.join(names)}" + (f"; {hint}" if hint else ""))
    pool = pa.default_memory_pool()
    try:
        for batch in pf.iter_batches(columns=list(columns), batch_size=batch_size):
            yield batch
            del batch
            pool.release_unused()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt page deep in the file
        raise DataError(f"cannot read {path}: {first_line(exc)}") from None


# ---------------------------------------------------------------------------- hub
def offline() -> bool:
    """True when the user asked for offline mode (`--offline` or the HF variables)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in OFFLINE_VARS)


def set_offline() -> None:
    """Set the Hugging Face offline variables. Call before `datasets` is imported."""
    for var in OFFLINE_VARS:
        os.environ[var] = "1"


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick TCP check, so that no command hangs for minutes on a cluster without internet."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:
        host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    hostname, _, port = host.partition(":")
    try:
        with socket.create_connection((hostname, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def load_hub(name: str, config: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
    """`datasets.load_dataset(name, config, split=...)` with a one-line error when offline.

    With no network (or `--offline`) a dataset that is already in the local Hugging Face cache
    still loads; anything else fails with a line that says how to pass local files.
    """
    label = name + (f":{config}" if config else "")
    hint = "pass local files instead, e.g. --data path/to/folder (parquet, csv, jsonl, txt, .gz)"
    why = "offline (--offline or HF_HUB_OFFLINE)"
    if not offline() and not hub_reachable():
        # Let datasets use its local cache rather than retrying the network for minutes.
        set_offline()
        why = "the Hugging Face hub cannot be reached"
    try:
        import datasets  # noqa: F401  (imported late: the offline variables must be set first)
        from datasets import load_dataset
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DataError(f"the 'datasets' package is needed to load {label!r}: {exc}") from None
    try:
        return load_dataset(name, config, split=split, **kwargs)
    except Exception as exc:  # noqa: BLE001 - connection, missing dataset, missing split...
        text = first_line(exc)
        if offline():
            raise DataError(f"cannot load Hugging Face dataset {label!r}: {why} and it is not in the local cache",
                            hint=hint) from None
        raise DataError(f"cannot load Hugging Face dataset {label!r}: {text}", hint=hint) from None
