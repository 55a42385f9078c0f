"""`prep --from-notebooks`: any folder of .ipynb files -> the Kaggle AI4Code layout.

What Kaggle did to its notebooks, done to yours: outputs, metadata and raw cells are dropped,
empty cells removed, nbformat-3 heading cells become markdown, inline base64 images are
shortened, and only notebooks with markdown and code (and, by default, Python) are kept. Ids are
stable: a notebook's id is a hash of its path relative to the input folder, so running prep again
gives the same ids. A notebook that cannot be read is skipped with its reason, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import textlab

from .data import CODE, MARKDOWN, kaggle_notebook, write_layout

_B64 = re.compile(r"data:image/[a-zA-Z+.-]+;base64,[A-Za-z0-9+/=\s]{40,}")


class Skip(Exception):
    """A notebook that is not kept, and why (the reason is counted)."""


def _text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return "".join(value)
    if value is None:
        return ""
    raise Skip(f"malformed cell ({what} is not text)")


def read_ipynb(path: Path, language: str = "python") -> list[tuple[str, str]]:
    """The cells of one .ipynb as (type, source) in order, cleaned; raises Skip with a reason."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Skip(f"unreadable ({exc.strerror or exc})") from None
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise Skip("not UTF-8") from None
    except json.JSONDecodeError:
        raise Skip("not valid JSON") from None
    if not isinstance(obj, dict):
        raise Skip("not a notebook (no cells)")
    if isinstance(obj.get("cells"), list):
        cells = obj["cells"]
    elif isinstance(obj.get("worksheets"), list):  # nbformat 3
        cells = [c for ws in obj["worksheets"] if isinstance(ws, dict) for c in (ws.get("cells") or [])]
    else:
        raise Skip("not a notebook (no cells)")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    lang = _language(meta)
    if language != "any" and lang is not None and lang != language:
        raise Skip(f"not {language.title()}")
    out = []
    for cell in cells:
        if not isinstance(cell, dict):
            raise Skip("malformed cell (not an object)")
        kind = cell.get("cell_type")
        if kind == "code":
            source = _text(cell.get("source", cell.get("input")), "source")
            out.append((CODE, source))
        elif kind == "markdown":
            out.append((MARKDOWN, _B64.sub("data:image/png;base64,<omitted>", _text(cell.get("source"), "source"))))
        elif kind == "heading":  # nbformat 3
            level = cell.get("level") if isinstance(cell.get("level"), int) else 1
            out.append((MARKDOWN, "#" * max(1, min(level, 6)) + " " + _text(cell.get("source"), "source")))
        elif kind is None:
            raise Skip("malformed cell (no cell_type)")
        # raw and unknown cell types are dropped, as Kaggle did
    return [(t, s) for t, s in out if s.strip()]


def _language(meta: dict) -> str | None:
    for key, field in (("kernelspec", "language"), ("language_info", "name")):
        sub = meta.get(key)
        if isinstance(sub, dict) and isinstance(sub.get(field), str) and sub[field].strip():
            return sub[field].strip().lower()
    return None


def notebook_id(rel_path: str) -> str:
    return hashlib.sha256(f"ai4code:{rel_path}".encode()).hexdigest()[:14]


def prep_notebooks(src: Path, out: Path, *, min_markdown: int = 1, min_code: int = 1, max_chars: int = 400_000,
                   language: str = "python", overwrite: bool = False) -> dict:
    """Convert every .ipynb under `src` into Kaggle layout under `out`; returns counts and skip reasons."""
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.exists():
        raise textlab.DataError(f"no such folder: {src}")
    files = [src] if src.is_file() else sorted(
        p for p in src.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file())
    if not files:
        raise textlab.DataError(f"no .ipynb files under {src}")
    if out.resolve() == src.resolve():
        raise textlab.UsageError("--out must not be the notebooks folder itself")
    replace = (out / "train").exists() and any((out / "train").iterdir())
    if replace and not overwrite:
        raise textlab.UsageError(f"{out}/train already holds notebooks", hint="pass --overwrite to replace them")
    base = src if src.is_dir() else src.parent
    kept, skipped, seen = [], [], {}
    reasons: Counter = Counter()
    sources_rows = []
    with textlab.progress(len(files), "prep notebooks", unit="nb") as bar:
        for path in files:
            rel = path.relative_to(base).as_posix()
            try:
                cells = read_ipynb(path, language)
                n_md = sum(t == MARKDOWN for t, _ in cells)
                n_code = len(cells) - n_md
                if n_md < min_markdown or n_code < min_code:
                    raise Skip(f"too few cells (need {min_markdown} markdown and {min_code} code)")
                if sum(len(s) for _, s in cells) > max_chars:
                    raise Skip(f"too large (over {max_chars:,} characters)")
                digest = hashlib.sha256(json.dumps(cells).encode()).hexdigest()
                if digest in seen:
                    raise Skip("duplicate of another notebook")
                seen[digest] = rel
            except Skip as why:
                reasons[str(why)] += 1
                skipped.append({"path": rel, "reason": str(why)})
                bar.advance(1)
                continue
            code_text = "\n\x00".join(s for t, s in cells if t == CODE)
            ancestor = hashlib.sha256(code_text.encode()).hexdigest()[:8]  # same code: same group
            nb = kaggle_notebook(notebook_id(rel), cells, ancestor=ancestor)
            kept.append(nb)
            sources_rows.append((nb.id, rel))
            bar.advance(1)
    if not kept:  # nothing written, and an earlier output in `out` is left as it was
        why = "; ".join(f"{n} {reason}" for reason, n in reasons.most_common(3))
        raise textlab.DataError(f"none of the {len(files)} notebooks under {src} was kept ({why}); "
                                f"nothing was written to {out}",
                                hint="see --min-markdown, --min-code, --max-chars and --language")
    if replace:  # only now that there is a new set to write
        shutil.rmtree(out / "train")
    write_layout(out, kept)
    with textlab.atomic_write(out / "sources.csv", encoding="utf-8", newline="") as fh:
        import csv

        w = csv.writer(fh)
        w.writerow(["id", "path"])
        w.writerows(sources_rows)
    report = {
        "source": str(src),
        "out": str(out),
        "found": len(files),
        "kept": len(kept),
        "skipped": len(skipped),
        "reasons": dict(reasons.most_common()),
        "cells": sum(len(nb) for nb in kept),
        "markdown_cells": sum(len(nb.markdown) for nb in kept),
        "code_cells": sum(len(nb.code) for nb in kept),
        "skipped_files": skipped,
    }
    out.mkdir(parents=True, exist_ok=True)
    textlab.write_json(out / "prep_report.json", report)
    return report


def show_report(report: dict) -> None:
    """The counts of a prep: found, kept, skipped per reason, cells."""
    from rich.table import Table

    t = Table(title=f"prep: {report['source']} -> {report['out']}")
    t.add_column("")
    t.add_column("count", justify="right")
    t.add_row("notebooks found", f"{report['found']:,}")
    t.add_row("[green]kept[/green]", f"{report['kept']:,}")
    for reason, n in report["reasons"].items():
        t.add_row(f"[yellow]skipped[/yellow]: {reason}", f"{n:,}")
    t.add_row("cells (markdown / code)", f"{report['cells']:,} ({report['markdown_cells']:,} / {report['code_cells']:,})")
    textlab.show(t)
    if report["skipped"]:
        textlab.status(f"skipped files and reasons: {Path(report['out']) / 'prep_report.json'}")
