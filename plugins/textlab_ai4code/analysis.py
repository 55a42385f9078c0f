"""`analyze ai4code`: the structure of a set of notebooks.

Languages of markdown are guessed without any model or download: the dominant Unicode script of
a cell's letters, and for Latin script a vote of common function words (English, French, German,
Spanish, Portuguese, Italian, Dutch, Indonesian, Turkish, Vietnamese); cells with too few words
count as "short".
"""

from __future__ import annotations

import statistics
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Sequence

import textlab

from .data import Notebook
from .metrics import BUCKETS, bucket_name

STOPWORDS = {
    "english": "the and of to is in that it for this we with are be on as you can by from",
    "french": "le la les et des est une un pour dans que qui nous sur pas avec du au",
    "german": "der die das und ist nicht ein eine zu mit den wir sie auf für von",
    "spanish": "el la los las y es que en un una para por con del se como",
    "portuguese": "o os as e é que em um uma para com do da não se dos",
    "italian": "il lo la gli le e è che di un una per con non del della",
    "dutch": "de het een en is van dat op te zijn voor niet met",
    "indonesian": "yang dan di ini itu dengan untuk dari dalam adalah kita tidak",
    "turkish": "bir ve bu da de için ile olarak daha çok gibi",
    "vietnamese": "của và là các có được trong cho một những với này",
}
_STOP = {lang: set(words.split()) for lang, words in STOPWORDS.items()}
SCRIPTS = (("CYRILLIC", "cyrillic"), ("CJK", "chinese/japanese"), ("HIRAGANA", "chinese/japanese"),
           ("KATAKANA", "chinese/japanese"), ("HANGUL", "korean"), ("ARABIC", "arabic"), ("HEBREW", "hebrew"),
           ("DEVANAGARI", "devanagari"), ("THAI", "thai"), ("GREEK", "greek"), ("LATIN", "latin"))


def guess_language(text: str) -> str:
    """A coarse language label for a markdown cell (see the module docstring)."""
    scripts: Counter = Counter()
    for ch in text[:3000]:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            scripts[next((label for key, label in SCRIPTS if key in name), "other")] += 1
    if not scripts:
        return "none"
    script = scripts.most_common(1)[0][0]
    if script != "latin":
        return script
    words = textlab.words(text[:3000])
    if len(words) < 4:
        return "short"
    votes = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    lang, n = max(votes.items(), key=lambda kv: kv[1])
    return lang if n >= 2 else "latin, other"


def _dist(values: Sequence[float]) -> dict:
    v = sorted(values)
    if not v:
        return {}
    return {"mean": statistics.fmean(v), "median": statistics.median(v), "p90": v[min(len(v) - 1, int(0.9 * len(v)))],
            "min": v[0], "max": v[-1]}


def analyze_notebooks(notebooks: Sequence[Notebook]) -> dict:
    cells = [len(nb) for nb in notebooks]
    md = [len(nb.markdown) for nb in notebooks]
    code = [len(nb.code) for nb in notebooks]
    langs = Counter(guess_language(nb.sources[i]) for nb in notebooks for i in nb.markdown)
    buckets = Counter()
    for n in cells:
        for lo, hi in BUCKETS:
            if n >= lo and (hi is None or n <= hi):
                buckets[bucket_name(lo, hi)] += 1
    out = {
        "notebooks": len(notebooks),
        "ancestor_groups": len({nb.ancestor or nb.id for nb in notebooks}),
        "cells": sum(cells), "markdown_cells": sum(md), "code_cells": sum(code),
        "markdown_share": sum(md) / max(1, sum(cells)),
        "cells_per_notebook": _dist(cells), "markdown_per_notebook": _dist(md), "code_per_notebook": _dist(code),
        "markdown_chars": _dist([len(nb.sources[i]) for nb in notebooks for i in nb.markdown]),
        "code_chars": _dist([len(nb.sources[i]) for nb in notebooks for i in nb.code]),
        "length_buckets": {bucket_name(lo, hi): buckets.get(bucket_name(lo, hi), 0) for lo, hi in BUCKETS},
        "languages": dict(langs.most_common()),
    }
    ordered = [nb for nb in notebooks if nb.order is not None]
    if ordered:
        first = last = follows_md = total = 0
        for nb in ordered:
            types = [nb.cell_types[nb.index(c)] for c in nb.order]
            seen_code = 0
            n_code = types.count("code")
            for k, t in enumerate(types):
                if t == "code":
                    seen_code += 1
                    continue
                total += 1
                first += seen_code == 0
                last += seen_code == n_code
                follows_md += k > 0 and types[k - 1] == "markdown"
        out["markdown_position"] = {"before_first_code": first / max(total, 1), "after_last_code": last / max(total, 1),
                                    "right_after_markdown": follows_md / max(total, 1)}
    return out


def show_analysis(result: dict) -> None:
    from rich.table import Table

    t = Table(title=f"ai4code data: {result['notebooks']:,} notebooks, {result['ancestor_groups']:,} ancestor groups")
    t.add_column("per notebook")
    for col in ("mean", "median", "p90", "min", "max"):
        t.add_column(col, justify="right")
    for key, label in (("cells_per_notebook", "cells"), ("markdown_per_notebook", "markdown cells"),
                       ("code_per_notebook", "code cells"), ("markdown_chars", "chars per markdown cell"),
                       ("code_chars", "chars per code cell")):
        d = result[key]
        t.add_row(label, *(f"{d[c]:,.1f}" if c == "mean" else f"{d[c]:,.0f}" for c in ("mean", "median", "p90", "min", "max")))
    textlab.show(t)
    s = Table(title=f"markdown share {result['markdown_share']:.1%} of {result['cells']:,} cells")
    s.add_column("")
    s.add_column("value", justify="right")
    for name, n in result["length_buckets"].items():
        s.add_row(f"notebooks with {name} cells", f"{n:,}")
    for name, share in (result.get("markdown_position") or {}).items():
        s.add_row(f"markdown {name.replace('_', ' ')}", f"{share:.1%}")
    textlab.show(s)
    lang = Table(title="markdown languages (script + function words)")
    lang.add_column("language")
    lang.add_column("cells", justify="right")
    lang.add_column("share", justify="right")
    total = sum(result["languages"].values()) or 1
    for name, n in result["languages"].items():
        lang.add_row(name, f"{n:,}", f"{n / total:.1%}")
    textlab.show(lang)


def plot_analysis(notebooks: Sequence[Notebook], out_dir: Path) -> Path:
    """Histograms of cells per notebook and of the markdown share: `out_dir/ai4code-analysis.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(out_dir) / "ai4code-analysis.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].hist([len(nb) for nb in notebooks], bins=40, color="#4477aa")
    axes[0].set_xlabel("cells per notebook")
    axes[0].set_ylabel("notebooks")
    axes[1].hist([len(nb.markdown) / max(1, len(nb)) for nb in notebooks], bins=20, color="#cc6677")
    axes[1].set_xlabel("markdown share of cells")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyze_data(data: str, split: str, out: Path | None) -> dict:
    """The `analyze` verb: the structure of the notebooks of `data` as tables, and with `out`
    also `out/analysis.json` and `out/ai4code-analysis.png`."""
    from .data import load_data

    if out is not None and Path(out).exists() and not Path(out).is_dir():  # before any work
        raise textlab.UsageError(f"--out {out} is a file; give a folder for the PNG and analysis.json")
    notebooks = load_data(data, split, need_orders=False)
    result = analyze_notebooks(notebooks)
    result["data"] = data
    show_analysis(result)
    if out is not None:
        result["files"] = [str(plot_analysis(notebooks, Path(out))), str(Path(out) / "analysis.json")]
        textlab.write_json(Path(out) / "analysis.json", result)
        textlab.status(f"wrote {', '.join(result['files'])}")
    return result
