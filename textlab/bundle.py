"""`textlab bundle`: everything a node without internet needs, in one folder.

    bundle/
      README.md     how to install and run from it
      env.sh        `source bundle/env.sh`: TEXTLAB_HOME=bundle/home and the offline variables
      home/         a TEXTLAB_HOME: datasets.json (names -> bundled data), data/, prepared caches
      extra/        local tokenizer / model folders (--include)
      wheels/       textlab and every dependency, pinned to the versions installed here

On the node, `TEXTLAB_HOME=bundle/home` makes `--data NAME` (a hub name such as `ag_news`, or
the local path used when bundling) resolve to the bundled copy, and the prepared data and
vocabularies the task's `prep`/`vocab`/`pairs` verbs cached are found again (the cache keys do not
depend on where the bundle lives). A command that would still need the network says so in one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .console import status
from .data import load_hub, read_json, resolve, write_json
from .errors import DataError, UsageError

PREP_VERBS = ("prep", "vocab", "pairs")


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "data"


def add_alias(home: Path, name: str, target: str) -> None:
    path = home / "datasets.json"
    aliases = read_json(path, "datasets.json") if path.exists() else {}
    aliases[name] = target
    write_json(path, aliases)


def bundle_data(task: str, data: str, home: Path) -> str:
    """Put one data source into `home/data/` and register its name. Returns the name to pass as --data."""
    from .data import offline

    source = resolve(task, data)
    if source.kind == "registered":
        status(f"{data}: a dataset of the {task} plugin itself; nothing to copy")
        return data
    if source.kind == "local":
        assert source.path is not None
        dest = home / "data" / _safe(source.path.name)
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.path.is_dir():
            shutil.copytree(source.path, dest, copy_function=shutil.copy2)
        else:
            shutil.copy2(source.path, dest)
        rel = str(dest.relative_to(home))
        add_alias(home, data, rel)
        add_alias(home, source.path.name, rel)
        status(f"{data}: copied to {dest}")
        return source.path.name
    # a Hugging Face dataset: download every split now (this machine is online) as parquet
    if offline():
        raise DataError(f"cannot bundle hub dataset {source.describe()!r} while offline",
                        hint="run bundle on a machine with internet, or pass local files")
    ds = load_hub(source.ref, source.config)
    dest = home / "data" / _safe(source.ref + (f"-{source.config}" if source.config else ""))
    dest.mkdir(parents=True, exist_ok=True)
    splits = ds.items() if hasattr(ds, "items") else [("train", ds)]
    for split, part in splits:
        part.to_parquet(str(dest / f"{split}.parquet"))
    add_alias(home, data, str(dest.relative_to(home)))
    status(f"{data}: {len(list(dest.iterdir()))} splits saved to {dest}")
    return data


def run_prep_verbs(task: str, name: str, home: Path, extra_args: list[str]) -> list[str]:
    """Run the task's prep/vocab/pairs verbs on the bundled data, with TEXTLAB_HOME = the bundle."""
    from .cli import build_app
    from .plugins import registry

    spec = registry().task(task)
    done = []
    app = build_app()
    for verb in PREP_VERBS:
        if verb not in spec.verbs:
            continue
        known = _verb_options(app, verb, task)
        args = ["--data", name] if "--data" in known else []
        args += _filter_args(extra_args, known)
        status(f"bundle: textlab {verb} {task} {' '.join(args)}")
        env = dict(os.environ, TEXTLAB_HOME=str(home))
        # the verb's results are progress of the bundle: they go to stderr, stdout stays the bundle's result
        proc = subprocess.run([sys.executable, "-m", "textlab", verb, task, *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:  # its own error line, inside ours: one line in all
            said = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
            why = said[-1][len("error:"):].strip() if said else f"exit code {proc.returncode}"
            raise DataError(f"'textlab {verb} {task}' failed while bundling: {why}")
        sys.stderr.write(proc.stderr + proc.stdout)
        done.append(verb)
    return done


def _verb_options(app: Any, verb: str, task: str) -> set[str]:
    """Every option spelling (`--min-count`, `--no-lower`...) of `textlab VERB TASK`."""
    command = app.commands[verb].commands[task]
    return {o for p in command.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}


def _check_args(task: str, args: list[str]) -> None:
    """Every option after `--` must be one that some prep verb of the task takes (a typo is not dropped)."""
    from .cli import build_app
    from .plugins import registry

    spec = registry().task(task)
    app = build_app()
    known = set().union(*(_verb_options(app, v, task) for v in PREP_VERBS if v in spec.verbs))
    for a in args:
        flag = a.split("=", 1)[0]
        if flag.startswith("-") and flag not in known and not flag.lstrip("-").replace(".", "", 1).isdigit():
            verbs = ", ".join(v for v in PREP_VERBS if v in spec.verbs) or "none"
            raise UsageError(f"{flag}: no {task} prep verb ({verbs}) takes this option")


def _filter_args(args: list[str], known: set[str]) -> list[str]:
    """Keep only the options (with their values) that a verb understands."""
    out: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i].split("=", 1)[0]
        takes_value = "=" not in args[i] and i + 1 < len(args) and not args[i + 1].startswith("--")
        if flag in known:
            out.append(args[i])
            if takes_value:
                out.append(args[i + 1])
        i += 2 if takes_value else 1
    return out


def requirement_pins(dist: str = "textlab") -> list[str]:
    """`name==version` of textlab's runtime dependencies, transitively, as installed here."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    todo = [dist]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            d = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = d.version
        for req in d.requires or []:
            r = Requirement(req)
            if r.marker is not None and not r.marker.evaluate({"extra": ""}):
                continue
            todo.append(r.name)
    seen.pop(dist.lower(), None)
    return sorted(f"{n}=={v}" for n, v in seen.items())


def build_wheelhouse(dest: Path) -> list[str]:
    """Download pinned wheels of every dependency and build textlab's own wheel into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = requirement_pins()
    status(f"bundle: downloading {len(pins)} wheels (torch included) into {dest}")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                           "-d", str(dest), *pins])
    if proc.returncode != 0:
        raise DataError("pip download failed while building the wheelhouse", hint="check network access to the package index")
    source = _textlab_source()
    if source is not None:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), str(source)])
        if proc.returncode != 0:
            raise DataError("building textlab's own wheel failed")
    else:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest),
                               f"textlab=={metadata.version('textlab')}"])
    return pins


def _textlab_source() -> Path | None:
    """The source tree textlab was installed from (editable or local path), if any."""
    try:
        text = metadata.distribution("textlab").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    url = json.loads(text).get("url", "")
    if url.startswith("file://"):
        path = Path(url[len("file://"):])
        return path if (path / "pyproject.toml").exists() else None
    return None


def make_bundle(task: str, data: list[str], out: Path, *, include: list[Path], wheels: bool,
                extra_args: list[str]) -> dict[str, Any]:
    from .plugins import registry

    registry().task(task)
    if out.exists() and any(out.iterdir()) and not (out / "home").is_dir():
        raise UsageError(f"{out} exists and is not a textlab bundle; choose an empty or new folder")
    for path in include:  # every input checked before anything is written
        if not path.exists():
            raise DataError(f"--include {path}: no such file or folder")
    _check_args(task, extra_args)
    fresh = not out.exists() or not any(out.iterdir())
    try:
        return _make_bundle(task, data, out, include=include, wheels=wheels, extra_args=extra_args)
    except BaseException:
        if fresh:  # nothing half-written: a bundle that failed is removed (one that existed is kept)
            shutil.rmtree(out, ignore_errors=True)
        raise


def _make_bundle(task: str, data: list[str], out: Path, *, include: list[Path], wheels: bool,
                 extra_args: list[str]) -> dict[str, Any]:
    home = out / "home"
    home.mkdir(parents=True, exist_ok=True)
    names = [bundle_data(task, d, home) for d in (data or ["sample"])]
    prepared = {n: run_prep_verbs(task, n, home, extra_args) for n in names}
    extras = []
    for path in include:
        dest = out / "extra" / path.name
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, dest)
        extras.append(str(dest.relative_to(out)))
    pins = build_wheelhouse(out / "wheels") if wheels else []
    (out / "env.sh").write_text(
        '# source this file on the offline node: textlab then reads everything from this bundle\n'
        'BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"\n'
        'export TEXTLAB_HOME="$BUNDLE/home"\n'
        'export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TEXTLAB_OFFLINE=1\n')
    readme = [f"# textlab bundle: {task}", "",
              "Everything a node without internet needs. On that node:", "", "```bash"]
    if wheels:
        readme += ["python3 -m venv .venv && .venv/bin/pip install --no-index --find-links wheels textlab"]
    readme += ["source env.sh          # TEXTLAB_HOME=home, offline variables"]
    readme += [f".venv/bin/textlab train {task} --data {n}" for n in names]
    readme += ["```", "", f"Data names: {', '.join(names)} (see home/datasets.json).",
               f"Prepared with: {json.dumps(prepared)}.", f"Extra folders: {', '.join(extras) or 'none'}.",
               f"Wheels: {len(pins)} pinned dependencies + textlab" if wheels else "Wheels: not included (--no-wheels).",
               f"Built with Python {sys.version.split()[0]} on {sys.platform}: use the same Python minor version on the node."]
    (out / "README.md").write_text("\n".join(readme) + "\n")
    return {"bundle": str(out), "task": task, "data": names, "prepared": prepared, "extra": extras,
            "wheels": len(pins) + (1 if wheels else 0)}
