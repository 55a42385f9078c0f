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
from typing import Any, Callable

from .console import status
from .data import load_hub, read_json, resolve, write_json
from .errors import DataError, TextlabError, UsageError

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


def split_prep_args(task: str, args: list[str]) -> dict[str, tuple[list[str], set[str]]]:
    """The options after `--`, per prep verb of the task: {verb: (its words, every flag it knows)}.

    Each option must be one that some prep verb takes (a typo is refused, not dropped)."""
    from .invocation import get_verb
    from .plugins import registry

    spec = registry().task(task)
    verbs = [v for v in PREP_VERBS if v in spec.verbs]
    known = {v: _flags(get_verb(spec, v)) for v in verbs}
    for a in args:
        flag = a.split("=", 1)[0]
        if flag.startswith("-") and not any(flag in k for k, _ in known.values()) \
                and not flag.lstrip("-").replace(".", "", 1).isdigit():
            raise UsageError(f"{flag}: no {task} prep verb ({', '.join(verbs) or 'none'}) takes this option")
    return {v: (_filter_args(args, *known[v]), known[v][0]) for v in verbs}


def _flags(verb: Any) -> tuple[set[str], set[str]]:
    """(every spelling of the verb's options, the spellings that are flags without a value)."""
    from . import options as O

    flags, bare = set(), set()
    for spec in verb.specs():
        names = [f for d in (spec.meta.flags or (spec.flag,)) for f in d.split("/")]
        if spec.kind is bool and not spec.meta.flags:
            names += ["--no-" + spec.flag[2:]]
        flags.update(names)
        if spec.kind is bool:
            bare.update(names)
    return flags, bare


def _filter_args(args: list[str], known: set[str], bare: set[str]) -> list[str]:
    """Keep only the options (with their values) that a verb understands."""
    out: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i].split("=", 1)[0]
        takes_value = "=" not in args[i] and flag not in bare and i + 1 < len(args)
        if flag in known:
            out.append(args[i])
            if takes_value:
                out.append(args[i + 1])
        i += 2 if takes_value else 1
    return out


def run_prep_verbs(name: str, home: Path, verbs: list[str], prepare: Callable[[str, str], Any]) -> list[str]:
    """Run the task's prep/vocab/pairs verbs on the bundled data `name`, with TEXTLAB_HOME = the bundle.

    `prepare(verb, name)` gives each verb's invocation; its tables go to stderr (they are progress of
    the bundle: stdout stays the bundle's result)."""
    from .console import json_mode, set_json, to_stderr
    from .runner import execute

    done = []
    as_json = json_mode()
    for verb in verbs:
        inv = prepare(verb, name)
        status(f"bundle: textlab {' '.join(inv.to_argv())}")
        saved = os.environ.get("TEXTLAB_HOME")
        os.environ["TEXTLAB_HOME"] = str(home)
        try:
            with to_stderr():
                execute(inv)
        except TextlabError as exc:
            raise DataError(f"'textlab {verb} {inv.task}' failed while bundling: {exc.line()}") from None
        finally:
            set_json(as_json)  # the verb's own --json setting must not change the bundle's output
            if saved is None:
                os.environ.pop("TEXTLAB_HOME", None)
            else:
                os.environ["TEXTLAB_HOME"] = saved
        done.append(verb)
    return done


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
                prep_verbs: list[str], prepare: Callable[[str, str], Any]) -> dict[str, Any]:
    """Build the bundle (see the module docstring). `prepare(verb, data_name)` gives the invocation
    of each prep verb (checked by the caller before anything is written)."""
    from .plugins import registry

    registry().task(task)
    if out.exists() and any(out.iterdir()) and not (out / "home").is_dir():
        raise UsageError(f"{out} exists and is not a textlab bundle; choose an empty or new folder")
    for path in include:  # every input checked before anything is written
        if not path.exists():
            raise DataError(f"--include {path}: no such file or folder")
    fresh = not out.exists() or not any(out.iterdir())
    try:
        return _make_bundle(task, data, out, include=include, wheels=wheels, prep_verbs=prep_verbs, prepare=prepare)
    except BaseException:
        if fresh:  # nothing half-written: a bundle that failed is removed (one that existed is kept)
            shutil.rmtree(out, ignore_errors=True)
        raise


def _make_bundle(task: str, data: list[str], out: Path, *, include: list[Path], wheels: bool,
                 prep_verbs: list[str], prepare: Callable[[str, str], Any]) -> dict[str, Any]:
    home = out / "home"
    home.mkdir(parents=True, exist_ok=True)
    names = [bundle_data(task, d, home) for d in (data or ["sample"])]
    prepared = {n: run_prep_verbs(n, home, prep_verbs, prepare) for n in names}
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
