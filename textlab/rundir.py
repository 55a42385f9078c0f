"""Where runs live, and finding one from what a person typed (a path, a name, `task/name`).

Every command that takes a run (`train --resume`, `eval`, `analyze`, `rerun`, `diff`, `report`,
`submit`) finds it through `locate_run` / `locate_target`: one place, one error line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .errors import UsageError


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """`--runs-dir`, else `TEXTLAB_RUNS`, else `./runs` (a file there is one usage line)."""
    root = Path(runs_dir or os.environ.get("TEXTLAB_RUNS") or "runs").expanduser()
    if root.exists() and not root.is_dir():
        where = "--runs-dir" if runs_dir else ("TEXTLAB_RUNS" if os.environ.get("TEXTLAB_RUNS") else "./runs")
        raise UsageError(f"the runs folder {root} ({where}) is a file, not a folder",
                         hint="point --runs-dir or TEXTLAB_RUNS at a folder")
    return root


def is_run_dir(path: Path) -> bool:
    return (path / "run.json").is_file()


def find_run(name: str, runs_dir: str | os.PathLike | None = None) -> Path | None:
    """A run directory by its folder name (or `task/name`) under the runs root, or None."""
    root = runs_root(runs_dir)
    if not root.is_dir() or not name or name.startswith(("/", "~")):
        return None
    for cand in (root / name, *sorted(root.glob(f"*/{name}"))):
        if is_run_dir(cand):
            return cand
    return None


def locate_run(ref: str | os.PathLike, runs_dir: str | os.PathLike | None = None, *, what: str = "run directory") -> Path:
    """The run directory `ref` names (a path to it, or its name under the runs root)."""
    path = Path(ref).expanduser()
    if is_run_dir(path):
        return path
    found = find_run(str(ref), runs_dir)
    if found is not None:
        return found
    if path.exists():
        raise UsageError(f"{ref} is not a {what} (it has no run.json)", hint="see 'textlab runs'")
    raise UsageError(f"no such {what}: {ref}", hint=f"runs are under {runs_root(runs_dir)}; see 'textlab runs'")


def locate_target(ref: str | os.PathLike, make_one: str | None = None) -> Path:
    """What an artifact verb names: a run directory, a run name, or a checkpoint file.

    A name that is none of these is a usage error (exit 2); `make_one` says how to make one."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    found = find_run(str(ref))
    if found is None:
        hint = f"make one: {make_one}" if make_one else f"runs are under {runs_root()}; see 'textlab runs'"
        raise UsageError(f"no such run directory or checkpoint: {ref}", hint=hint)
    return found


def iter_run_dirs(refs: list[str]) -> Iterator[Path]:
    """Run directories from arguments: a run, a run name, or a folder of runs (e.g. runs/agnews)."""
    for ref in refs:
        path = Path(ref).expanduser()
        if not is_run_dir(path) and path.is_dir() and any(path.glob("*/run.json")):
            yield from sorted(q.parent for q in path.glob("*/run.json"))
        else:
            yield locate_run(ref)
