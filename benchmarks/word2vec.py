"""word2vec benchmark: textlab vs gensim on the same corpus, same hyperparameters, same cores.

    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/word2vec.py            # full (about 20 min)
    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/word2vec.py --quick    # a check (2 min)

English (text8like, 16.9M tokens): skip-gram, dim 100, window 5, negative 5, min-count 5,
sample 1e-3, 1 epoch, on --threads cores (default 2): gensim's Word2Vec (the anchor script in
../shared/data/word2vec) against `textlab train word2vec` with its default settings, then the
variants that explain the defaults: pairs from shards instead of on the fly, word2vec.c's
per-pair negatives instead of shared ones, and the batched torch backend (on a slice of the
corpus: it is slow). Each run is a separate process; each timing is recorded with the load
average. Quality: analogy accuracy on questions-words (30,000 most frequent words), Spearman on
wordsim353 and simlex999, all computed by `textlab eval` (identical to gensim's evaluation).
Russian (ruslit, 6.1M tokens, ё folded as in the test sets): textlab and gensim with the same
settings but 3 epochs (--ru-epochs; one epoch of 6M words of literature leaves the similarities
near zero for both), ru_hj and ru_simlex999 Spearman and the 10 neighbours of "москва".

Writes benchmarks/results/word2vec.json and prints a rich table. Corpora are decompressed to
--tmp (never into the repository).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data" / "word2vec").resolve()
RESULTS = REPO / "benchmarks" / "results" / "word2vec.json"
PARAMS = {"dim": 100, "window": 5, "negative": 5, "min_count": 5, "sample": 1e-3, "epochs": 1}
console = Console(stderr=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def unpack(name: str, tmp: Path, lines: int | None) -> Path:
    """../shared/data/word2vec/NAME.txt.gz -> TMP/NAME[-LINES].txt (plain text: gzip would cost a core)."""
    out = tmp / (f"{name}.txt" if lines is None else f"{name}-{lines}.txt")
    if not out.exists():
        part = out.with_suffix(".part")
        with gzip.open(DATA / f"{name}.txt.gz", "rt", encoding="utf-8") as src, open(part, "w", encoding="utf-8") as dst:
            for line in itertools.islice(src, lines):
                dst.write(line)
        part.rename(out)
    return out


CHILD = r"""
import json, resource, sys, time
from textlab.cli import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
wall = time.perf_counter() - t0
print(json.dumps({"code": code, "wall_s": round(wall, 2),
                  "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}), file=sys.stderr)
"""


def textlab_cmd(args: list[str], env: dict, check: bool = True) -> dict | None:
    """Run `textlab ARGS --json` in a child process: its JSON result, wall time, peak memory, load."""
    l0 = load()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args, "--json"], capture_output=True, text=True, env=env)
    stats = {}
    for line in reversed(proc.stderr.strip().splitlines()):
        if line.startswith("{") and "max_rss_mb" in line:
            stats = json.loads(line)
            break
    if proc.returncode != 0 or stats.get("code") != 0:
        if not check:
            return None
        console.print(proc.stderr[-3000:])
        raise SystemExit(f"textlab {' '.join(args)} failed")
    return {"result": json.loads(proc.stdout), **stats, "load_start": l0, "load_end": load()}


def gensim_anchor(corpus: Path, lang: str, out: Path, threads: int, epochs: int) -> dict:
    l0 = load()
    proc = subprocess.run([sys.executable, str(DATA / "gensim_anchor.py"), str(corpus), "--epochs", str(epochs), "--lang", lang,
                           "--workers", str(threads), "--out", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        console.print(proc.stderr[-3000:])
        raise SystemExit("gensim_anchor.py failed")
    res = json.loads(out.read_text(encoding="utf-8"))
    res["load_start"], res["load_end"] = l0, load()
    return res


def train_args(corpus: Path, threads: int, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["train", "word2vec", "--data", str(corpus), "--min-count", str(PARAMS["min_count"]),
            "--dim", str(PARAMS["dim"]), "--window", str(PARAMS["window"]), "--negative", str(PARAMS["negative"]),
            "--sample", str(PARAMS["sample"]), "--epochs", str(epochs), "--threads", str(threads),
            "--save-every", "0", "--out", str(out), *extra]


def evaluate(ckpt: Path, env: dict, lang: str) -> dict:
    ev = DATA / "eval"
    if lang == "en":
        args = ["eval", str(ckpt), "--analogies", str(ev / "questions-words.txt"), "--similarity", str(ev / "wordsim353.tsv"),
                "--similarity", str(ev / "simlex999.txt"), "--restrict", "30000"]
    else:
        args = ["eval", str(ckpt), "--similarity", str(ev / "ru_hj.tsv"), "--similarity", str(ev / "ru_simlex999.tsv")]
    res = textlab_cmd(args, env)["result"]
    out = {}
    if "analogies" in res:
        a = res["analogies"]
        out["analogy"] = {"accuracy": a["accuracy"], "semantic": a["semantic"], "syntactic": a["syntactic"],
                          "evaluated": a["evaluated"]}
    for s in res.get("similarity", []):
        out[Path(s["file"]).name] = {"spearman": s["spearman"], "pearson": s["pearson"], "oov_pct": s["oov_pct"]}
    return out


def textlab_run(label: str, corpus: Path, threads: int, env: dict, tmp: Path, lang: str, *extra: str, epochs: int = 1) -> dict:
    ckpt = tmp / f"{label}.pt"
    console.print(f"[bold]{label}[/bold]: textlab train {' '.join(extra)} (load {load()})")
    r = textlab_cmd(train_args(corpus, threads, ckpt, epochs, *extra), env)
    s = r["result"]["result"]["summary"]
    row = {"label": label, "tool": "textlab", "options": list(extra), "epochs": epochs, "train_s": s["seconds"], "raw_words_per_s": s["raw_words_per_s"],
           "effective_words_per_s": s["effective_words_per_s"], "pairs_per_s": s["pairs_per_s"], "pairs": s["pairs"],
           "loss": s["loss"], "threads": s["threads"], "kernel_load_s": s["compile_seconds"], "process_wall_s": r["wall_s"],
           "max_rss_mb": r["max_rss_mb"], "rss_before_training_mb": s.get("peak_rss_mb_before"),
           "load_start": r["load_start"], "load_end": r["load_end"], "checkpoint": str(ckpt)}
    row.update(evaluate(ckpt, env, lang))
    return row


def gensim_run(label: str, corpus: Path, threads: int, tmp: Path, lang: str, epochs: int = 1) -> dict:
    console.print(f"[bold]{label}[/bold]: gensim Word2Vec, {threads} workers (load {load()})")
    g = gensim_anchor(corpus, lang, tmp / f"{label}.json", threads, epochs)
    tot = g["gensim_total"]
    row = {"label": label, "tool": "gensim", "epochs": epochs, "train_s": tot["seconds"], "raw_words_per_s": round(tot["raw_words"] / tot["seconds"]),
           "effective_words_per_s": tot["effective_words_per_s"], "build_vocab_s": g["build_vocab_s"],
           "max_rss_mb": g["max_rss_mb"], "load_start": g["load_start"], "load_end": g["load_end"], "threads": threads}
    if "analogy" in g:
        row["analogy"] = {k: g["analogy"][k] for k in ("accuracy", "semantic", "syntactic", "evaluated")}
    for name in ("wordsim353.tsv", "simlex999.txt", "ru_hj.tsv", "ru_simlex999.tsv"):
        if name in g:
            row[name] = g[name]
    row["neighbors"] = g.get("neighbors", {})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="slices of the corpora: checks that everything runs (minutes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="repeat the gensim / textlab pair (alternating) N times")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/textlab-word2vec-bench"))
    ap.add_argument("--no-variants", action="store_true", help="only gensim vs textlab's defaults")
    ap.add_argument("--no-russian", action="store_true")
    ap.add_argument("--ru-epochs", type=int, default=3, help="epochs on ruslit (both tools; 1 epoch of 6M words "
                                                             "of literature gives near-random similarities)")
    a = ap.parse_args()

    a.tmp.mkdir(parents=True, exist_ok=True)
    home = a.tmp / "home"
    env = dict(os.environ, TEXTLAB_HOME=str(home), TEXTLAB_RUNS=str(a.tmp / "runs"), TEXTLAB_PROGRESS="0", COLUMNS="200")
    en = unpack("text8like", a.tmp, 400 if a.quick else None)
    ru = unpack("ruslit", a.tmp, 20000 if a.quick else None)
    started = time.time()
    result: dict = {"quick": a.quick, "threads": a.threads, "params": PARAMS, "cpu_count": os.cpu_count(),
                    "load_start": load(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "english": {}, "russian": {}}

    # ---------------------------------------------------------------- English: prep + vocab (timed, then cached)
    console.print(f"[bold]prep + vocab[/bold] {en.name} (load {load()})")
    prep = textlab_cmd(["prep", "word2vec", "--data", str(en), "--force"], env)
    vocab = textlab_cmd(["vocab", "word2vec", "--data", str(en), "--min-count", str(PARAMS["min_count"]), "--force"], env)
    result["english"]["corpus"] = {"file": en.name, "raw_tokens": vocab["result"]["raw_tokens"],
                                   "tokens": vocab["result"]["tokens"], "vocab_size": vocab["result"]["vocab_size"]}
    result["english"]["prep_s"] = prep["result"]["seconds"]
    result["english"]["vocab_s"] = vocab["result"]["seconds"]

    rows = []
    pairs = []
    for i in range(a.repeat):
        g = gensim_run(f"gensim#{i + 1}", en, a.threads, a.tmp, "en")
        t = textlab_run(f"textlab#{i + 1}", en, a.threads, env, a.tmp, "en")
        rows += [g, t]
        pairs.append({"gensim_train_s": g["train_s"], "textlab_train_s": t["train_s"],
                      "ratio": round(g["train_s"] / t["train_s"], 3), "load": [g["load_start"], t["load_end"]]})
    ratios = sorted(p["ratio"] for p in pairs)
    result["english"]["speed_ratio"] = ratios[len(ratios) // 2]
    result["english"]["pairs"] = pairs

    if not a.no_variants:
        console.print(f"[bold]pairs[/bold] shards for {en.name} (load {load()})")
        pr = textlab_cmd(["pairs", "word2vec", "--data", str(en), "--window", str(PARAMS["window"]),
                          "--sample", str(PARAMS["sample"]), "--force"], env)
        result["english"]["pairs_step"] = {"seconds": pr["result"]["seconds"], "pairs": pr["result"]["pairs"],
                                           "shards": len(pr["result"]["shards"]), "bytes": pr["result"]["bytes"],
                                           "max_rss_mb": pr["max_rss_mb"], "load_start": pr["load_start"]}
        rows.append(textlab_run("textlab-shards", en, a.threads, env, a.tmp, "en", "--pairs", "shards"))
        rows.append(textlab_run("textlab-per-pair", en, a.threads, env, a.tmp, "en", "--negatives", "per-pair"))
        rows.append(textlab_run("textlab-1-thread", en, 1, env, a.tmp, "en"))
        # the batched torch backend is much slower: time it on the first 2% of the corpus only
        part = unpack("text8like", a.tmp, 30 if a.quick else 127)
        textlab_cmd(["vocab", "word2vec", "--data", str(part), "--min-count", "5"], env)
        rows.append(textlab_run("textlab-torch-2pct", part, a.threads, env, a.tmp, "en", "--backend", "torch", "--batch", "4096"))
        rows.append(textlab_run("textlab-2pct", part, a.threads, env, a.tmp, "en"))
    result["english"]["runs"] = rows

    # ---------------------------------------------------------------- Russian
    if not a.no_russian:
        console.print(f"[bold]ruslit[/bold] {ru.name} (load {load()})")
        rp = textlab_cmd(["prep", "word2vec", "--data", str(ru), "--fold-yo", "--force"], env)
        rv = textlab_cmd(["vocab", "word2vec", "--data", str(ru), "--min-count", "5", "--force"], env)
        gr = gensim_run("gensim-ru", ru, a.threads, a.tmp, "ru", a.ru_epochs)
        tr = textlab_run("textlab-ru", ru, a.threads, env, a.tmp, "ru", epochs=a.ru_epochs)
        nb = textlab_cmd(["neighbors", tr["checkpoint"], "москва", "-k", "10"], env, check=False)
        tr["neighbors"] = {"москва": [[n["word"], n["cosine"]] for n in nb["result"]["neighbors"]] if nb else []}
        gr["neighbors"] = {"москва": gr["neighbors"].get("москва", [])}
        result["russian"] = {"epochs": a.ru_epochs, "corpus": {"file": ru.name, "raw_tokens": rv["result"]["raw_tokens"],
                                        "vocab_size": rv["result"]["vocab_size"]},
                             "prep_s": rp["result"]["seconds"], "vocab_s": rv["result"]["seconds"],
                             "speed_ratio": round(gr["train_s"] / tr["train_s"], 3), "runs": [gr, tr]}

    result["load_end"] = load()
    result["minutes"] = round((time.time() - started) / 60, 1)
    if not a.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        (a.tmp / "word2vec-quick.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    show(result, RESULTS if not a.quick else a.tmp / "word2vec-quick.json")


def show(result: dict, path: Path) -> None:
    out = Console(width=None if sys.stdout.isatty() else 170)
    en = result["english"]
    t = Table(title=f"word2vec on {en['corpus']['file']} ({en['corpus']['raw_tokens']:,} tokens, "
                    f"{en['corpus']['vocab_size']:,} words), {result['threads']} threads"
                    + (" [QUICK: slices]" if result["quick"] else ""))
    for col in ("run", "train s", "raw words/s", "eff. words/s", "pairs/s", "analogy", "wordsim353", "simlex999",
                "peak MB", "load"):
        t.add_column(col, justify="left" if col == "run" else "right")
    for r in en["runs"]:
        t.add_row(r["label"], f"{r['train_s']:.1f}", f"{r['raw_words_per_s']:,}",
                  f"{r['effective_words_per_s']:,}" if r.get("effective_words_per_s") else "-",
                  f"{r['pairs_per_s']:,}" if r.get("pairs_per_s") else "-",
                  _pct((r.get("analogy") or {}).get("accuracy")), _num(r.get("wordsim353.tsv")), _num(r.get("simlex999.txt")),
                  f"{r['max_rss_mb']:,.0f}", f"{r['load_start']}→{r['load_end']}")
    out.print(t)
    out.print(f"speed ratio textlab/gensim (train time, same corpus): [bold]{en['speed_ratio']:.2f}[/bold] "
              f"(pairs: {', '.join(str(p['ratio']) for p in en['pairs'])}); prep {en['prep_s']} s, vocab {en['vocab_s']} s")
    if "pairs_step" in en:
        p = en["pairs_step"]
        out.print(f"pairs step: {p['pairs']:,} pairs in {p['shards']} shards, {p['bytes'] / 1e6:,.0f} MB, {p['seconds']} s")
    ru = result.get("russian") or {}
    if ru:
        t = Table(title=f"ruslit ({ru['corpus']['raw_tokens']:,} tokens, {ru['corpus']['vocab_size']:,} words), "
                        f"{ru['epochs']} epochs, {result['threads']} threads")
        for col in ("run", "train s", "raw words/s", "ru_hj", "ru_simlex999", "москва: 10 neighbours", "load"):
            t.add_column(col, justify="left" if col in ("run", "москва: 10 neighbours") else "right")
        for r in ru["runs"]:
            t.add_row(r["label"], f"{r['train_s']:.1f}", f"{r['raw_words_per_s']:,}", _num(r.get("ru_hj.tsv")),
                      _num(r.get("ru_simlex999.tsv")), ", ".join(w for w, _ in r["neighbors"].get("москва", [])),
                      f"{r['load_start']}→{r['load_end']}")
        out.print(t)
        out.print(f"speed ratio textlab/gensim on ruslit: [bold]{ru['speed_ratio']:.2f}[/bold]")
    out.print(f"written: {path} ({result['minutes']} min)")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(d: dict | None) -> str:
    return "-" if not d or d.get("spearman") is None else f"{d['spearman']:.3f}"


if __name__ == "__main__":
    main()
