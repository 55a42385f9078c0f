"""How each task's time and memory grow with its data: every stage at 1x, 4x, 16x (64x) data.

    flock /work/bench.lock python benchmarks/scale.py                  # full (about an hour)
    flock /work/bench.lock python benchmarks/scale.py --quick          # small bases, a few minutes
    flock /work/bench.lock python benchmarks/scale.py --tasks gla --sizes 1 4 16 64
    python benchmarks/scale.py --seed-size word2vec --data-dir /tmp/w2v-seed --make-only   # the data (17 min)
    flock /work/bench.lock python benchmarks/scale.py --seed-size word2vec --data-dir /tmp/w2v-seed  # 1B tokens
    flock /work/bench.lock python benchmarks/scale.py --seed-size gla        # 540M characters (WikiText-103 size)

For each task, its pipeline runs through the real CLI (`python -m textlab VERB ... --json`), each
stage a process of its own, with a fresh TEXTLAB_HOME per size (so no stage finds a cache):

    word2vec  prep, vocab (--min-count 5), train (one epoch: work in proportion to the data), eval
    gla       prep, vocab, train (--steps, a fixed amount of work), eval (--max-chars, fixed)
    agnews    prep (tokenise train + test), vocab, train (--steps, fixed), eval (the test split, fixed)
    ai4code   train (the ranker, --trees fixed: work in proportion to the data), eval (the valid 20%)

For every stage it records the wall time, the CPU time, the peak resident memory (`wait4` of the
child: its largest process), the peak anonymous memory (RssAnon of the process tree, polled every
0.1 s: memory that is not a file mapped from disk), and the 1-minute load average before and
after. The growth exponent between two sizes a < b is log(value_b / value_a) / log(b / a): 1 is
linear, 0 flat; "fit" is the least-squares slope over all sizes.

Larger data is made from the real data in ../shared/data, in a temporary folder (never in the
repository), deleted at the end (`--keep` keeps it):

    word2vec  ruslit (6.06M tokens) as the 1x copy; copy r > 0 has its lines shuffled, every word
              outside the 5,000 most frequent spelled as one of G variants (G = round(n^0.45) for n
              copies: the vocabulary grows as it does in real text, about as the square root of the
              tokens, and reaches 2.5M words at 1B tokens), and 0.5% of its tokens misspelt (a long
              tail of rare words, as in real corpora)
    gla       WikiText-2 train (10.8M characters) as the 1x copy; copy r > 0 has its articles shuffled;
              valid and test are WikiText-2's (as WikiText-103's are)
    agnews    the 74,620 train rows as the 1x copy; copy r > 0 shuffled; test unchanged
    ai4code   the 2,259 notebooks as the 1x copy; copy r > 0 with new notebook, cell and ancestor ids,
              markdown cells reshuffled and 30% of the cells perturbed (a token appended)

Writes benchmarks/results/scale.json (scale-quick.json) and scale.png, and prints a rich table;
`--seed-size` writes scale-word2vec-seed.json / scale-gla-seed.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
RESULTS = REPO / "benchmarks" / "results"
TASKS = ("word2vec", "gla", "agnews", "ai4code")
SIZES = {"word2vec": [1, 4, 16], "gla": [1, 4, 16, 64], "agnews": [1, 4, 16], "ai4code": [1, 4, 16]}
QUICK_SIZES = {"word2vec": [1, 4, 16], "gla": [1, 4, 16], "agnews": [1, 4, 16], "ai4code": [1, 4]}
console = Console(stderr=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ============================================================================ measuring one stage
def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def _status_kb(pid: int) -> dict:
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "RssShmem:")):
                    k, v = line.split(":")
                    vals[k] = int(v.split()[0])
    except OSError:
        pass
    return vals


class Poller(threading.Thread):
    """Peak anonymous and total resident memory of a process tree, sampled every `every` s."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_anon = self.peak_rss = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            anon = rss = 0
            for p in _tree(self.pid):
                s = _status_kb(p)
                anon += s.get("RssAnon", 0) + s.get("RssShmem", 0)
                rss += s.get("VmRSS", 0)
            self.peak_anon, self.peak_rss = max(self.peak_anon, anon), max(self.peak_rss, rss)
            self.done.wait(self.every)


def stage(name: str, args: list[str], env: dict, *, json_out: bool = True) -> dict:
    """Run `python -m textlab ARGS --json` as a child: wall and CPU time, peak memory, load, its JSON."""
    cmd = [sys.executable, "-m", "textlab", *args] + (["--json"] if json_out else [])
    l0 = load()
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        poll = Poller(proc.pid)
        poll.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        poll.done.set()
        poll.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        console.print(stderr[-4000:])
        raise SystemExit(f"{name} failed ({proc.returncode}): textlab {' '.join(args)}")
    result = json.loads(stdout) if json_out and stdout.strip() else {}
    row = {"stage": name, "command": "textlab " + " ".join(args), "wall_s": round(wall, 2),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
           "peak_anon_mb": round(poll.peak_anon / 1024, 1), "load_start": l0, "load_end": load()}
    console.print(f"  {name:<6} {row['wall_s']:>8.1f} s  cpu {row['cpu_s']:>8.1f} s  rss {row['peak_rss_mb']:>8.0f} MB  "
                  f"anon {row['peak_anon_mb']:>8.0f} MB  load {l0}->{row['load_end']}")
    return {**row, "result": result}


def env_for(tmp: Path, threads: int) -> dict:
    """A fresh cache and runs folder: no stage finds the work of another size."""
    home, runs = tmp / "home", tmp / "runs"
    for p in (home, runs):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    return dict(os.environ, TEXTLAB_HOME=str(home), TEXTLAB_RUNS=str(runs), TEXTLAB_PROGRESS="0", COLUMNS="160",
                OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "plugins"),
                                                                         os.environ.get("PYTHONPATH", "")]))


def run_dir(result: dict) -> str:
    """The run directory a `train --json` result names."""
    for key in ("run", "run_dir", "path"):
        if isinstance(result.get(key), str):
            return result[key]
    raise SystemExit(f"no run directory in the train result: {sorted(result)}")


# ============================================================================ data: word2vec
W2V_TOP = 5000  # the most frequent words keep their spelling in every copy
W2V_TYPO = 0.005  # share of a copy's tokens misspelt (new rare words)
_CYR = "абвгдежзийклмнопрстуфхцчшщыьэюя"


def w2v_variants(copies: int) -> int:
    """How many spellings a rare word has over `copies` copies: Heaps-like growth of the vocabulary."""
    return max(1, round(copies ** 0.45))


def w2v_base(lines: int | None) -> list[str]:
    with gzip.open(SHARED / "word2vec" / "ruslit.txt.gz", "rt", encoding="utf-8") as fh:
        out = []
        for line in fh:
            out.append(line.rstrip("\n"))
            if lines is not None and len(out) >= lines:
                break
    return out


def write_w2v_corpus(base: list[str], copies: int, path: Path) -> dict:
    """`copies` copies of the base corpus (see the module help); copy 0 is the base itself."""
    counts = Counter(w for line in base for w in line.split())
    top = {w for w, _ in counts.most_common(W2V_TOP)}
    rare = [w for w in counts if w not in top]
    n_tok = sum(counts.values())
    variants = w2v_variants(copies)
    suffixes = [""] + ["ъ" + a + b for a in _CYR for b in _CYR]
    tokens = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in range(copies):
            if r == 0:
                for line in base:
                    fh.write(line + "\n")
                tokens += n_tok
                continue
            rng = random.Random(r)
            suffix = suffixes[r % variants]
            spell = {w: w + suffix for w in rare} if suffix else {}
            order = list(range(len(base)))
            rng.shuffle(order)
            typos = sorted(rng.sample(range(n_tok), int(W2V_TYPO * n_tok)))
            pos = k = 0
            for i in order:
                toks = base[i].split()
                if spell:
                    toks = list(map(spell.get, toks, toks))
                end = pos + len(toks)
                while k < len(typos) and typos[k] < end:
                    j = typos[k] - pos
                    toks[j] = toks[j] + rng.choice(_CYR) + rng.choice(_CYR) + rng.choice(_CYR)
                    k += 1
                pos = end
                fh.write(" ".join(toks) + "\n")
            tokens += n_tok
    return {"tokens": tokens, "copies": copies, "variants": variants, "bytes": path.stat().st_size}


def word2vec_pipeline(data: Path, env: dict, threads: int, *, train: bool = True, extra_train: list[str] = ()) -> list[dict]:
    ev = SHARED / "word2vec" / "eval"
    ckpt = data.parent / "w2v.pt"
    rows = [stage("prep", ["prep", "word2vec", "--data", str(data)], env),
            stage("vocab", ["vocab", "word2vec", "--data", str(data), "--min-count", "5"], env)]
    if train:
        rows.append(stage("train", ["train", "word2vec", "--data", str(data), "--min-count", "5", "--epochs", "1",
                                    "--threads", str(threads), "--save-every", "0", "--out", str(ckpt), *extra_train], env))
        if ckpt.exists():
            rows.append(stage("eval", ["eval", str(ckpt), "--similarity", str(ev / "ru_hj.tsv"),
                                       "--similarity", str(ev / "ru_simlex999.tsv")], env))
    return rows


def epoch_tenths(run: str | None) -> list | None:
    """In-vocabulary words per second over each tenth of the epoch, from the run's metrics.jsonl
    (a record every 2 s; the first tenth starts at the first record, after the start-up): whether
    the rate holds from the start of the epoch to its end."""
    path = Path(run or "") / "metrics.jsonl"
    if not run or not path.exists():
        return None
    pts = [(rec["step"], rec["time"]) for rec in map(json.loads, path.read_text().splitlines())
           if rec.get("name") == "words_per_s"]
    if len(pts) < 11:
        return None
    total = pts[-1][0]
    out, last = [], pts[0]
    for k in range(1, 11):
        nxt = next((p for p in pts if p[0] >= total * k / 10), pts[-1])
        out.append(round((nxt[0] - last[0]) / (nxt[1] - last[1])) if nxt[1] > last[1] else None)
        last = nxt
    return out


def word2vec_units(rows: list[dict]) -> dict:
    v = next(r for r in rows if r["stage"] == "vocab")["result"]
    units = {"tokens": v.get("raw_tokens"), "vocab_size": v.get("vocab_size")}
    tr = next((r for r in rows if r["stage"] == "train"), None)
    if tr:
        s = (tr["result"].get("result") or {}).get("summary") or {}
        units.update(train_raw_words_per_s=s.get("raw_words_per_s"), train_words_per_s=s.get("words_per_s"),
                     train_effective_words_per_s=s.get("effective_words_per_s"), train_pairs_per_s=s.get("pairs_per_s"),
                     train_pairs=s.get("pairs"), train_s=s.get("seconds"), train_epochs_done=s.get("epochs_done"),
                     train_stopped=s.get("stopped"), train_kernel_load_s=s.get("compile_seconds"),
                     train_peak_rss_mb_before=s.get("peak_rss_mb_before"),
                     train_words_per_s_by_tenth=epoch_tenths(tr["result"].get("run")))
    return units


# ============================================================================ data: gla
def wikitext(split: str) -> str:
    with gzip.open(SHARED / "wikitext" / f"wikitext-2-v1.{split}.txt.gz", "rt", encoding="utf-8") as fh:
        return fh.read()


def articles(text: str) -> list[str]:
    """WikiText -> its articles (each starts with a ' = Title = ' line)."""
    lines = text.splitlines(keepends=True)
    out: list[list[str]] = []
    for line in lines:
        if line.startswith(" = ") and not line.startswith(" = = ") and line.rstrip().endswith(" ="):
            out.append([])
        if not out:
            out.append([])
        out[-1].append(line)
    return ["".join(a) for a in out]


def write_gla_data(folder: Path, copies: int, share: float = 1.0) -> dict:
    """train.txt = `copies` copies of WikiText-2 train (copy r > 0: articles shuffled); valid, test as they are.
    `share` < 1 takes the first articles only (the base of --quick)."""
    folder.mkdir(parents=True, exist_ok=True)
    arts = articles(wikitext("train"))
    arts = arts[:max(1, int(len(arts) * share))]
    chars = 0
    with open(folder / "train.txt", "w", encoding="utf-8") as fh:
        for r in range(copies):
            order = list(range(len(arts)))
            if r:
                random.Random(r).shuffle(order)
            for i in order:
                fh.write(arts[i])
                chars += len(arts[i])
    for split in ("valid", "test"):
        (folder / f"{split}.txt").write_text(wikitext(split), encoding="utf-8")
    return {"train_chars": chars, "copies": copies}


GLA_TRAIN = ["--d-model", "64", "--layers", "2", "--heads", "2", "--seq-len", "256", "--batch-size", "8",
             "--warmup", "5", "--eval-every", "100000", "--eval-chars", "16384"]


GLA_SEED_TRAIN = ["--warmup", "5", "--eval-every", "100000", "--eval-chars", "16384"]  # the default model


def gla_pipeline(data: Path, env: dict, threads: int, steps: int = 40, *, evaluate: bool = True,
                 train_args: list[str] = GLA_TRAIN) -> list[dict]:
    rows = [stage("prep", ["prep", "gla", "--data", str(data)], env),
            stage("vocab", ["vocab", "gla", "--data", str(data)], env),
            stage("train", ["train", "gla", "--data", str(data), "--steps", str(steps), "--threads", str(threads),
                            *train_args], env)]
    if evaluate:
        run = run_dir(rows[-1]["result"])
        rows.append(stage("eval", ["eval", run, "--split", "valid", "--max-chars", "65536", "--threads", str(threads)], env))
    return rows


def gla_units(rows: list[dict]) -> dict:
    p = next(r for r in rows if r["stage"] == "prep")["result"]
    tr = next((r for r in rows if r["stage"] == "train"), None)
    units = {"train_chars": ((p.get("splits") or {}).get("train") or {}).get("chars")}
    if tr:
        res = tr["result"].get("result") or {}
        units.update(train_chars_per_s=res.get("chars_per_s"), train_steps=res.get("steps"))
    return units


# ============================================================================ data: agnews
def write_agnews_data(folder: Path, copies: int, rows: int | None = None) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    train = pq.read_table(SHARED / "agnews" / "train.parquet")
    if rows is not None:
        train = train.slice(0, rows)
    n = train.num_rows
    with pq.ParquetWriter(folder / "train.parquet", train.schema, compression="zstd") as w:
        for r in range(copies):
            if r == 0:
                w.write_table(train)
                continue
            order = list(range(n))
            random.Random(r).shuffle(order)
            w.write_table(train.take(pa.array(order)))
    test = pq.read_table(SHARED / "agnews" / "test.parquet")
    pq.write_table(test, folder / "test.parquet", compression="zstd")
    return {"train_rows": n * copies, "copies": copies}


def agnews_pipeline(data: Path, env: dict, threads: int, steps: int = 60) -> list[dict]:
    rows = [stage("prep", ["prep", "agnews", "--data", str(data)], env),
            stage("vocab", ["vocab", "agnews", "--data", str(data)], env),
            stage("train", ["train", "agnews", "--data", str(data), "--steps", str(steps), "--pretrain", "none",
                            "--threads", str(threads), "--eval-every", str(steps)], env)]
    run = run_dir(rows[-1]["result"])
    rows.append(stage("eval", ["eval", run, "--split", "test", "--threads", str(threads)], env))
    return rows


def agnews_units(rows: list[dict]) -> dict:
    p = next(r for r in rows if r["stage"] == "prep")["result"]
    return {"train_rows": (p.get("train") or {}).get("rows"), "train_tokens": (p.get("train") or {}).get("tokens")}


# ============================================================================ data: ai4code
def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def write_ai4code_data(folder: Path, copies: int, notebooks: int | None = None) -> dict:
    """`copies` copies of the notebooks in Kaggle layout; copy r > 0 with new ids and perturbed cells."""
    import csv

    src = SHARED / "ai4code"
    (folder / "train").mkdir(parents=True, exist_ok=True)
    with open(src / "train_orders.csv", encoding="utf-8") as fh:
        orders = {r["id"]: r["cell_order"].split() for r in csv.DictReader(fh)}
    with open(src / "train_ancestors.csv", encoding="utf-8") as fh:
        ancestors = {r["id"]: r["ancestor_id"] for r in csv.DictReader(fh)}
    ids = sorted(orders)[:notebooks] if notebooks else sorted(orders)
    cells = 0
    with open(folder / "train_orders.csv", "w", encoding="utf-8", newline="") as fo, \
            open(folder / "train_ancestors.csv", "w", encoding="utf-8", newline="") as fa:
        wo, wa = csv.writer(fo), csv.writer(fa)
        wo.writerow(["id", "cell_order"])
        wa.writerow(["id", "ancestor_id", "parent_id"])
        for r in range(copies):
            rng = random.Random(r)
            anc_map: dict[str, str] = {}
            for nb_id in ids:
                nb = json.loads((src / "train" / f"{nb_id}.json").read_text(encoding="utf-8"))
                new_id = nb_id if r == 0 else _hex(rng, 14)
                cmap = {c: (c if r == 0 else _hex(rng, 8)) for c in nb["cell_type"]}
                kinds, source = nb["cell_type"], nb["source"]
                code = [c for c in kinds if kinds[c] == "code"]
                md = [c for c in kinds if kinds[c] != "code"]
                if r:
                    rng.shuffle(md)
                out = {"cell_type": {}, "source": {}}
                for c in code + md:
                    text = source[c]
                    if r and rng.random() < 0.3:
                        text += (f"\n# {_hex(rng, 6)}" if kinds[c] == "code" else f" ({_hex(rng, 6)})")
                    out["cell_type"][cmap[c]] = kinds[c]
                    out["source"][cmap[c]] = text
                cells += len(code) + len(md)
                (folder / "train" / f"{new_id}.json").write_text(json.dumps(out), encoding="utf-8")
                wo.writerow([new_id, " ".join(cmap[c] for c in orders[nb_id])])
                anc = ancestors.get(nb_id, nb_id[:8])
                wa.writerow([new_id, anc if r == 0 else anc_map.setdefault(anc, _hex(rng, 8)), ""])
    return {"notebooks": len(ids) * copies, "cells": cells, "copies": copies}


def ai4code_pipeline(data: Path, env: dict, threads: int, trees: int = 60) -> list[dict]:
    rows = [stage("train", ["train", "ai4code", "--data", str(data), "--model", "ranker", "--trees", str(trees),
                            "--threads", str(threads), "--valid-share", "0.2", "--split-seed", "42"], env)]
    run = run_dir(rows[-1]["result"])
    rows.append(stage("eval", ["eval", run, "--data", str(data), "--split", "valid", "--threads", str(threads)], env))
    return rows


# ============================================================================ one task over sizes
def make_data(task: str, copies: int, tmp: Path, quick: bool) -> tuple[Path, dict]:
    folder = tmp / f"{task}-x{copies}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    if task == "word2vec":
        data = folder / "corpus.txt"
        info = write_w2v_corpus(w2v_base(25_000 if quick else None), copies, data)
    elif task == "gla":
        data = folder / "data"
        info = write_gla_data(data, copies, share=0.125 if quick else 1.0)
    elif task == "agnews":
        data = folder / "data"
        info = write_agnews_data(data, copies, rows=10_000 if quick else None)
    else:
        data = folder / "data"
        info = write_ai4code_data(data, copies, notebooks=150 if quick else None)
    info["seconds_to_make"] = round(time.perf_counter() - t0, 1)
    return data, info


def run_task(task: str, copies: int, tmp: Path, threads: int, quick: bool) -> dict:
    console.rule(f"[bold]{task}[/] x{copies}")
    data, info = make_data(task, copies, tmp, quick)
    console.print(f"  data: {info} (load {load()})")
    env = env_for(tmp / f"{task}-x{copies}", threads)
    if task == "word2vec":
        rows = word2vec_pipeline(data, env, threads)
        units = word2vec_units(rows)
    elif task == "gla":
        rows = gla_pipeline(data, env, threads, steps=20 if quick else 40)
        units = gla_units(rows)
    elif task == "agnews":
        rows = agnews_pipeline(data, env, threads, steps=30 if quick else 60)
        units = agnews_units(rows)
    else:
        rows = ai4code_pipeline(data, env, threads, trees=20 if quick else 60)
        units = {}
    shutil.rmtree(tmp / f"{task}-x{copies}", ignore_errors=True)
    for r in rows:
        r.pop("result", None)
    return {"task": task, "copies": copies, "data": info, "units": units, "stages": rows}


def exponent(a: float, b: float, xa: float, xb: float) -> float | None:
    if a <= 0 or b <= 0 or xa == xb:
        return None
    return round(math.log(b / a) / math.log(xb / xa), 3)


def fit_slope(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / den, 3) if den else None


def growth(runs: list[dict]) -> dict:
    """Per stage: exponents of wall time and peak memory between consecutive sizes, and the fit."""
    out: dict = {}
    runs = sorted(runs, key=lambda r: r["copies"])
    names = [s["stage"] for s in runs[0]["stages"]]
    for name in names:
        pts = [(r["copies"], next(s for s in r["stages"] if s["stage"] == name)) for r in runs
               if any(s["stage"] == name for s in r["stages"])]
        g = {}
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "peak_anon_mb"):
            xs = [c for c, _ in pts]
            ys = [s[key] for _, s in pts]
            g[key] = {"steps": [exponent(ys[i], ys[i + 1], xs[i], xs[i + 1]) for i in range(len(xs) - 1)],
                      "fit": fit_slope(xs, ys)}
        out[name] = g
    return out


# ============================================================================ output
def show(result: dict) -> None:
    out = Console(width=None if sys.stdout.isatty() else 180)
    for task, t in result["tasks"].items():
        runs = sorted(t["runs"], key=lambda r: r["copies"])
        table = Table(title=f"{task}: wall s (CPU s) / peak RSS MB (anon MB) per size; growth exponents of CPU "
                            f"time and anon memory (consecutive sizes; fit)")
        table.add_column("stage")
        for r in runs:
            table.add_column(f"x{r['copies']}", justify="right")
        table.add_column("CPU time exp.", justify="right")
        table.add_column("anon mem exp.", justify="right")
        for name, g in t["growth"].items():
            cells = []
            for r in runs:
                s = next((s for s in r["stages"] if s["stage"] == name), None)
                cells.append(f"{s['wall_s']:.1f} ({s['cpu_s']:.1f}) / {s['peak_rss_mb']:,.0f} ({s['peak_anon_mb']:,.0f})"
                             if s else "-")
            fmt = lambda d: " ".join("-" if v is None else f"{v:.2f}" for v in d["steps"]) + f" ({d['fit']})"  # noqa: E731
            table.add_row(name, *cells, fmt(g["cpu_s"]), fmt(g["peak_anon_mb"]))
        out.print(table)
        for r in runs:
            out.print(f"  x{r['copies']}: data {r['data']}  {r['units']}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result["tasks"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 7.5), squeeze=False)
    for j, task in enumerate(tasks):
        runs = sorted(result["tasks"][task]["runs"], key=lambda r: r["copies"])
        xs = [r["copies"] for r in runs]
        for name in result["tasks"][task]["growth"]:
            pts = [(r["copies"], next((s for s in r["stages"] if s["stage"] == name), None)) for r in runs]
            pts = [(x, s) for x, s in pts if s]
            line, = axes[0][j].plot([x for x, _ in pts], [s["wall_s"] for _, s in pts], "o-", label=f"{name} wall")
            axes[0][j].plot([x for x, _ in pts], [max(s["cpu_s"], 0.01) for _, s in pts], "x:", color=line.get_color(),
                            alpha=0.7, label=f"{name} CPU")
            line, = axes[1][j].plot([x for x, _ in pts], [s["peak_rss_mb"] for _, s in pts], "o-", label=f"{name} RSS")
            axes[1][j].plot([x for x, _ in pts], [max(s["peak_anon_mb"], 1) for _, s in pts], "x:",
                            color=line.get_color(), alpha=0.7, label=f"{name} anon")
        base = [r["stages"][0]["wall_s"] for r in runs]
        if len(xs) > 1:
            axes[0][j].plot(xs, [base[0] * x / xs[0] for x in xs], "k--", lw=0.8, label="linear")
        for i, ylabel in enumerate(("time (s): wall o-, CPU x:", "peak memory (MB): RSS o-, anonymous x:")):
            ax = axes[i][j]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("data size (copies of the base)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        axes[0][j].set_title(task)
    fig.suptitle(f"textlab scale{' (quick)' if result['quick'] else ''}: {result['threads']} threads, "
                 f"{result['started']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ============================================================================ seed-size modes
def seed_data(task: str, n: int, data_dir: Path) -> tuple[Path, dict]:
    """The data of `n` copies for a seed-size run, made in `data_dir` (or found there: made.json)."""
    folder = data_dir / f"{task}-x{n}"
    data = folder / ("corpus.txt" if task == "word2vec" else "data")
    marker = folder / "made.json"
    if marker.exists():
        return data, json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    info = write_w2v_corpus(w2v_base(None), n, data) if task == "word2vec" else write_gla_data(data, n)
    info["seconds_to_make"] = round(time.perf_counter() - t0, 1)
    marker.write_text(json.dumps(info))
    return data, info


def seed_run(task: str, copies: int, tmp: Path, data_dir: Path, threads: int, *, share: float | None = None,
             steps: int = 30) -> dict:
    """The 1x data, then the seed-size data (`copies` copies), through the task's pipeline.

    word2vec: 165 copies = 1B tokens and 2.5M words; prep, vocab, one epoch of train (or its first
    `share` seconds, by --time-budget), eval on the 1x data only (its cost does not depend on the
    corpus). gla: 50 copies = 540M characters (WikiText-103's size); prep, vocab, train (--steps,
    the default model: d_model 256, 4 layers, 16 windows of 512); no eval (it reads valid only)."""
    result: dict = {"mode": f"seed-size {task}", "runs": []}
    for n in (1, copies):
        console.rule(f"[bold]{task}[/] x{n}")
        data, info = seed_data(task, n, data_dir)
        console.print(f"  data: {info} (load {load()})")
        env = env_for(tmp / f"{task}-x{n}-work", threads)
        if task == "word2vec":
            extra = ["--time-budget", str(int(share))] if n > 1 and share else []
            rows = word2vec_pipeline(data, env, threads, extra_train=extra)
            units = word2vec_units(rows)
        else:
            rows = gla_pipeline(data, env, threads, steps=steps, evaluate=False, train_args=GLA_SEED_TRAIN)
            units = gla_units(rows)
        for r in rows:
            r.pop("result", None)
        result["runs"].append({"copies": n, "data": info, "units": units, "stages": rows})
        shutil.rmtree(tmp / f"{task}-x{n}-work", ignore_errors=True)
    return result


def show_seed(result: dict) -> None:
    out = Console(width=None if sys.stdout.isatty() else 180)
    t = Table(title=result["mode"] + ": wall s / peak RSS MB (anon MB)")
    t.add_column("stage")
    for r in result["runs"]:
        t.add_column(f"x{r['copies']}", justify="right")
    for name in dict.fromkeys(s["stage"] for r in result["runs"] for s in r["stages"]):
        cells = []
        for r in result["runs"]:
            s = next((s for s in r["stages"] if s["stage"] == name), None)
            cells.append(f"{s['wall_s']:.1f} / {s['peak_rss_mb']:,.0f} ({s['peak_anon_mb']:,.0f})" if s else "-")
        t.add_row(name, *cells)
    out.print(t)
    for r in result["runs"]:
        out.print(f"  x{r['copies']}: {r['data']} {r['units']}")


def markdown(result: dict) -> str:
    """The tables of a scale.json (or a --seed-size JSON) in Markdown, for benchmarks/SCALE.md."""
    lines = []
    tasks = result.get("tasks") or {result["mode"]: {"runs": result["runs"], "growth": growth(result["runs"])}}
    for task, t in tasks.items():
        runs = sorted(t["runs"], key=lambda r: r["copies"])
        lines += [f"**{task}**", "", "| stage | " + " | ".join(f"x{r['copies']}" for r in runs)
                  + " | CPU time exponent | anon memory exponent |",
                  "|---|" + "---:|" * len(runs) + "---:|---:|"]
        for name, g in t["growth"].items():
            cells = []
            for r in runs:
                st = next((s for s in r["stages"] if s["stage"] == name), None)
                cells.append(f"{st['wall_s']:,.1f} s ({st['cpu_s']:,.1f}) / {st['peak_rss_mb']:,.0f} "
                             f"({st['peak_anon_mb']:,.0f}) MB" if st else "-")
            exps = [" ".join("-" if v is None else f"{v:.2f}" for v in g[k]["steps"]) + f" (fit {g[k]['fit']})"
                    for k in ("cpu_s", "peak_anon_mb")]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {exps[0]} | {exps[1]} |")
        loads = [s["load_start"] for r in runs for s in r["stages"]]
        lines += ["", f"load average (1 min) at the start of the stages: {min(loads)} to {max(loads)}", ""]
    return "\n".join(lines)


# ============================================================================ main
def add_runs(extra_path: Path, out: Path) -> int:
    """Merge the task runs of `extra_path` into `out` (a run of the same size replaces the old one)."""
    base, extra = (json.loads(p.read_text(encoding="utf-8")) for p in (out, extra_path))
    if extra.get("threads") != base.get("threads"):
        raise SystemExit(f"{extra_path} ran with {extra.get('threads')} threads, {out} with {base.get('threads')}")
    for task, t in extra["tasks"].items():
        runs = {r["copies"]: r for r in base["tasks"].get(task, {}).get("runs", [])}
        runs.update({r["copies"]: r for r in t["runs"]})
        merged = [runs[k] for k in sorted(runs)]
        base["tasks"][task] = {"runs": merged, "growth": growth(merged)}
    base.setdefault("added", []).append({k: extra.get(k) for k in ("command", "commit", "started", "minutes")})
    out.write_text(json.dumps(base, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(base, out.with_suffix(".png"))
    show(base)
    console.print(f"written: {out} and {out.with_suffix('.png')}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small bases (a slice of each data set), sizes 1 4 16")
    ap.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    ap.add_argument("--sizes", nargs="+", type=int, default=None,
                    help="copies of the base, for every task (default: 1 4 16, and 64 for gla; --quick: 1 4 16, "
                         "ai4code 1 4)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of the train and eval stages (default 1: the growth with the data is what is "
                         "measured, and one thread is least disturbed by other work on the machine; --seed-size: 2)")
    ap.add_argument("--tmp", type=Path, default=None, help="where the data is made (default: a new folder under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/scale[-quick].json)")
    ap.add_argument("--seed-size", choices=("word2vec", "gla"), default=None,
                    help="the seed's data size instead: word2vec 1B tokens, gla 540M characters")
    ap.add_argument("--copies", type=int, default=None, help="--seed-size: copies (word2vec 165, gla 50)")
    ap.add_argument("--epoch-share", type=float, default=None,
                    help="--seed-size word2vec: stop training after this many seconds (--time-budget), when a full "
                         "epoch does not fit in the time there is")
    ap.add_argument("--steps", type=int, default=30, help="--seed-size gla: training steps")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="--seed-size: make the data here (or use what an earlier --make-only made) and keep it")
    ap.add_argument("--make-only", action="store_true", help="--seed-size: only make the data in --data-dir")
    ap.add_argument("--markdown", type=Path, default=None, help="print the tables of this results JSON as Markdown")
    ap.add_argument("--add", type=Path, default=None,
                    help="merge the runs of this results JSON (a size run on its own, e.g. --tasks ai4code --sizes 64) "
                         "into --out (default scale.json): growth and plot redone")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads(a.markdown.read_text(encoding="utf-8"))))
        return 0
    if a.add:
        return add_runs(a.add, a.out or RESULTS / "scale.json")
    a.threads = a.threads or (2 if a.seed_size else 1)
    tmp = Path(tempfile.mkdtemp(prefix="textlab-scale-", dir=a.tmp))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.time()
    meta = {"started": started, "threads": a.threads, "cpu_count": os.cpu_count(), "load_start": load(),
            "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]), "tmp": str(tmp),
            "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()}
    try:
        if a.seed_size:
            copies = a.copies or (165 if a.seed_size == "word2vec" else 50)
            data_dir = a.data_dir or tmp
            if a.make_only:
                for n in (1, copies):
                    console.print(seed_data(a.seed_size, n, data_dir))
                return 0
            result = seed_run(a.seed_size, copies, tmp, data_dir, a.threads, share=a.epoch_share, steps=a.steps)
            result.update(meta, load_end=load(), minutes=round((time.time() - t0) / 60, 1))
            out = a.out or RESULTS / f"scale-{a.seed_size}-seed.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            show_seed(result)
            console.print(f"written: {out}")
            return 0
        result = {"quick": a.quick, **meta, "tasks": {}, "complete": False}
        out = a.out or RESULTS / ("scale-quick.json" if a.quick else "scale.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        for task in a.tasks:  # written after each task: a later failure keeps what was measured
            sizes = a.sizes or (QUICK_SIZES if a.quick else SIZES)[task]
            runs = [run_task(task, n, tmp, a.threads, a.quick) for n in sizes]
            result["tasks"][task] = {"runs": runs, "growth": growth(runs)}
            result.update(load_end=load(), minutes=round((time.time() - t0) / 60, 1))
            out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        result["complete"] = True
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        plot(result, out.with_suffix(".png"))
        show(result)
        console.print(f"written: {out} and {out.with_suffix('.png')} ({result['minutes']} min)")
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
