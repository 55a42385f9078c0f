"""Where the time of SGNS training goes: CPU time per (target, context) pair, one thread.

    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/word2vec_profile.py [--lines 600]

On the first --lines lines of text8like (600 lines = 1.65M words): the same vocabulary, the
same subsampling and windows, one thread each, CPU time (time.process_time) so that other
processes on the machine disturb the figures less than wall time would:

  gensim             gensim's Word2Vec (sg=1, negative=5), 1 worker: its Cython loop + BLAS
  torch-batched      textlab's torch backend: batches of 4096 pairs, index_select / bmm /
                     index_add_ (a torch.profiler breakdown is printed)
  numba-per-pair     textlab's kernel with word2vec.c's loop: fresh negatives for every pair
  numba-shared       textlab's default kernel: negatives shared by a target's window, the next
                     target's rows prefetched
  numba-shared-nopf  the same without prefetching (the same numbers, more waiting on memory)
  numba-shared+loss  the same, computing the loss of every pair (default: one target in 8)
  make-pairs         only generating the pairs (subsampling + shrunk windows), no training
  shard-read         reading the same pairs back from a parquet shard

Writes benchmarks/results/word2vec-profile.json and prints a table.

    .venv/bin/python benchmarks/word2vec_profile.py --large-vocab 2500000

instead times the default kernel with and without its prefetch hints on a synthetic corpus with
a vocabulary of that size (Zipf-distributed words, 6M tokens, sentences of 1,000, word2vec's
subsampling and unigram^0.75 negatives, the matrices on huge pages in both; wall time of one
thread, two rounds): the seed's vocabulary without the hour of making its 1B-token corpus.
Writes benchmarks/results/word2vec-prefetch.json.

    .venv/bin/python benchmarks/word2vec_profile.py --vocab-sweep 0,250000,1000000,2440000 --threads 2

times the default kernel on ruslit (6.06M tokens, its 71,386 words at min-count 5) with its
negatives drawn from a vocabulary grown by that many rare words (counts drawn from the corpus's
own words past the 5,000 most frequent, unigram^0.75 as always), the matrices grown with it;
`--seed-vocab DIR/vocab.json` adds a run with the negatives drawn from that vocabulary's counts
(the seed-size corpus's, from `textlab vocab`); the largest matrices once more with the corpus's
own negatives (their size alone), and with those negatives drawn through an alias table of the
largest size (its entries past the corpus's words never chosen: the table's size alone). The
same tokens, the same subsampling and windows, the same number of pairs: what a seed-size
vocabulary costs at a fixed corpus size. Writes
benchmarks/results/word2vec-vocab-sweep-{threads}thread.json.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data" / "word2vec").resolve()
OUT = REPO / "benchmarks" / "results" / "word2vec-profile.json"


def cpu() -> float:
    return time.process_time()


def vocab_of(tmp: Path, source: str, lines: int | None = None) -> Any:
    """The vocabulary step (min-count 5) of the first `lines` lines (None: all) of ../shared's
    `source` (a .txt.gz), written as plain text into `tmp` once; textlab's cache in tmp too."""
    from textlab_word2vec import data as D

    tmp.mkdir(parents=True, exist_ok=True)
    corpus_file = tmp / (source.removesuffix(".txt.gz") + (f"-{lines}" if lines else "") + ".txt")
    if not corpus_file.exists():
        with gzip.open(DATA / source, "rt", encoding="utf-8") as src, open(corpus_file, "w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice(src, lines))
    os.environ["TEXTLAB_HOME"] = str(tmp / "profile-home")
    os.environ["TEXTLAB_PROGRESS"] = "0"
    return D.resolve_vocab(str(corpus_file), min_count=5)


def large_vocab(words: int, *, write: bool, tokens: int = 6_000_000, dim: int = 100) -> None:
    """The default kernel with and without prefetch hints, one thread, on a synthetic Zipf corpus."""
    from textlab_word2vec import data as D
    from textlab_word2vec import kernels as K
    from textlab_word2vec.model import init_vectors

    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, words + 1)
    ids = rng.choice(words, size=tokens, p=p / p.sum()).astype(np.int32)
    counts = np.bincount(ids, minlength=words)
    offsets = np.arange(0, tokens + 1, 1000, dtype=np.int64)
    keep, (threshold, alias) = D.keep_thresholds(counts, 1e-3), D.alias_table(counts ** 0.75)
    load0, rows = os.getloadavg()[0], []
    for rnd in range(2):
        for prefetch in (False, True):
            syn0, syn1 = init_vectors(words, dim, rnd)
            args = (keep, threshold, alias, syn0, syn1, 5, 5, 0.025, 0.0001, 1, True, 1000, prefetch)
            K.train_window(ids, offsets, 0, 1, *args)  # compile / load
            t0 = time.perf_counter()
            K.train_window(ids, offsets, 0, len(offsets) - 1, *args)
            rows.append({"round": rnd, "prefetch": prefetch, "raw_words_per_s": round(tokens / (time.perf_counter() - t0))})
    mean = {pf: np.mean([r["raw_words_per_s"] for r in rows if r["prefetch"] == pf]) for pf in (False, True)}
    result = {"vocab_size": words, "tokens": tokens, "dim": dim, "rows": rows, "speedup": round(mean[True] / mean[False], 2),
              "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2)}
    t = Table(title=f"default kernel, 1 thread, synthetic corpus: {words:,} words, {tokens:,} tokens "
                    f"(load {result['load_start']}→{result['load_end']})")
    for col in ("round", "prefetch", "raw words / s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["round"]), str(r["prefetch"]), f"{r['raw_words_per_s']:,}")
    Console().print(t)
    Console().print(f"prefetch: {result['speedup']}x")
    if write:
        path = OUT.with_name("word2vec-prefetch.json")
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        Console().print(f"written: {path}")


def vocab_sweep(extras: list[int], *, write: bool, tmp: Path, threads: int = 1, seed_vocab: Path | None = None) -> None:
    """The same corpus (ruslit, 6.06M tokens, its 71k words), its negatives drawn from a vocabulary
    grown by `extras` rare words, or from the counts of `seed_vocab` (a vocab.json, e.g. the
    seed-size corpus's): what a larger vocabulary alone costs, at a fixed corpus size. `threads`
    threads take the jobs in turn (Hogwild, as `textlab train` does)."""
    from concurrent.futures import ThreadPoolExecutor

    import textlab
    from textlab_word2vec import data as D
    from textlab_word2vec import kernels as K
    from textlab_word2vec.model import init_vectors

    c = D.open_corpus(vocab_of(tmp, "ruslit.txt.gz"))
    ids, offs, cuts, V, dim = np.asarray(c.ids), np.asarray(c.offsets), c.jobs(), len(c.itos), 100
    keep = D.keep_thresholds(c.counts, 1e-3)  # the corpus's own subsampling in every variant: the same work
    tail = c.counts[5000:]  # the counts added words are drawn from: the corpus's own rare words
    rng = np.random.default_rng(0)
    # (label, rows of the matrices, counts the negatives are drawn from: zeros are words never drawn,
    # but entries of the alias table); ruslit's ids are the first V rows
    variants = [(f"+{x:,} rare words" if x else "its own words", V + x,
                 np.concatenate([c.counts, rng.choice(tail, size=x)]) if x else c.counts) for x in extras]
    if seed_vocab is not None:
        counts = np.asarray(textlab.Vocab.load(seed_vocab).counts, dtype=np.int64)
        variants.append((f"the given vocabulary ({len(counts):,} words)", len(counts), counts))
    if len(variants) > 1:  # the corpus's own negatives with the largest matrices, then also through the largest table
        most = max(w for _, w, _ in variants)
        variants.append(("its own words, largest matrices", most, c.counts))
        variants.append(("its own words, largest matrices and alias table", most, np.pad(c.counts, (0, most - V))))
    load0, rows = os.getloadavg()[0], []
    for rnd in range(2):
        for label, words, counts in variants:
            threshold, alias = D.alias_table(counts.astype(np.float64) ** 0.75)
            syn0, syn1 = init_vectors(words, dim, rnd)
            args = (keep, threshold, alias, syn0, syn1, 5, 5)
            K.train_window(ids, offs, 0, 1, *args, 0.025, 0.025, 1, True, 8, True)  # compile / load

            def job(j: int) -> tuple[int, int]:
                lr = 0.025 * (1 - j / (len(cuts) - 1))
                return K.train_window(ids, offs, int(cuts[j]), int(cuts[j + 1]), *args, lr, lr, D.job_seed(1, 0, j),
                                      True, 8, True)[:2]

            t0 = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                done = list(pool.map(job, range(len(cuts) - 1)))
            seconds = time.perf_counter() - t0
            w = counts.astype(np.float64) ** 0.75
            rows.append({"round": rnd, "negatives_from": label, "rows": words, "alias_entries": len(counts),
                         "matrices_mb": round(2 * words * dim * 4 / 2**20),
                         "negatives_past_own_words": round(float(w[V:].sum() / w.sum()), 3),
                         "raw_words_per_s": round(c.raw_tokens / seconds), "pairs_per_s": round(sum(n for _, n in done) / seconds),
                         "kept_words": sum(k for k, _ in done), "pairs": sum(n for _, n in done)})
            del syn0, syn1
    summary = []
    for label, *_ in variants:
        mine = [r for r in rows if r["negatives_from"] == label]
        summary.append({**{k: mine[0][k] for k in ("negatives_from", "rows", "alias_entries", "matrices_mb",
                                                   "negatives_past_own_words")},
                        **{k: round(float(np.mean([r[k] for r in mine]))) for k in ("raw_words_per_s", "pairs_per_s")}})
    base = next((r["pairs_per_s"] for r in summary if r["negatives_from"] == "its own words"), None)
    for r in summary:
        r["vs_own_words"] = round(r["pairs_per_s"] / base, 3) if base else None
    result = {"corpus": "ruslit", "tokens": c.raw_tokens, "own_words": V, "threads": threads, "dim": dim, "rows": rows,
              "summary": summary, "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2)}
    t = Table(title=f"the same {c.raw_tokens:,} tokens (ruslit, {V:,} words), {threads} thread(s), negatives drawn "
                    f"from a larger vocabulary (load {result['load_start']}→{result['load_end']})")
    for col in ("negatives from", "matrix rows", "MB", "alias entries", "negatives past ruslit's words", "raw words / s",
                "pairs / s", "vs its own words"):
        t.add_column(col, justify="right")
    for r in summary:
        t.add_row(r["negatives_from"], f"{r['rows']:,}", f"{r['matrices_mb']:,}", f"{r['alias_entries']:,}",
                  f"{100 * r['negatives_past_own_words']:.0f}%",
                  f"{r['raw_words_per_s']:,}", f"{r['pairs_per_s']:,}", f"{r['vs_own_words']:.2f}x" if r["vs_own_words"] else "-")
    Console(width=150).print(t)
    if write:
        path = OUT.with_name(f"word2vec-vocab-sweep-{threads}thread.json")
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        Console().print(f"written: {path}")


def _counts(text: str) -> list[int]:
    """--vocab-sweep's list: whole numbers >= 0, comma-separated."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers >= 0")
    return values


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=600)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/textlab-word2vec-bench"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--large-vocab", type=int, default=None, metavar="WORDS",
                    help="time prefetching on a synthetic corpus with this many words instead")
    ap.add_argument("--vocab-sweep", type=_counts, default=None, metavar="N,N,...",
                    help="time ruslit with its negatives drawn from a vocabulary grown by these many rare words")
    ap.add_argument("--threads", type=int, default=1, help="--vocab-sweep: threads (Hogwild)")
    ap.add_argument("--seed-vocab", type=Path, default=None, metavar="VOCAB_JSON",
                    help="--vocab-sweep: also draw the negatives from this vocabulary's counts (its vocab.json)")
    a = ap.parse_args()
    if not a.vocab_sweep and (a.threads != 1 or a.seed_vocab):
        ap.error("--threads and --seed-vocab apply to --vocab-sweep only")
    if a.vocab_sweep:
        return vocab_sweep(a.vocab_sweep, write=not a.no_write, tmp=a.tmp, threads=a.threads,
                           seed_vocab=a.seed_vocab)
    if a.large_vocab:
        return large_vocab(a.large_vocab, write=not a.no_write)
    import torch

    torch.set_num_threads(1)
    from textlab_word2vec import data as D
    from textlab_word2vec import kernels as K
    from textlab_word2vec.model import init_vectors, torch_negatives, torch_step

    vocab_step = vocab_of(a.tmp, "text8like.txt.gz", a.lines)
    c = D.open_corpus(vocab_step)
    ids, offs = np.asarray(c.ids), np.asarray(c.offsets)
    keep = D.keep_thresholds(c.counts, 1e-3)
    cuts = c.jobs()
    V, dim, window, negative = len(c.itos), 100, 5, 5
    load0 = os.getloadavg()[0]
    rows = []

    def kernel(label: str, shared: bool, loss_every: int, prefetch: bool = True) -> None:
        syn0, syn1 = init_vectors(V, dim, 1)
        K.train_window(ids, offs, 0, 0, keep, c.neg_threshold, c.neg_alias, syn0, syn1, window, negative, 0.0, 0.0, 1,
                       shared, loss_every, prefetch)  # compile / load
        t0 = cpu()
        pairs = 0
        for j in range(len(cuts) - 1):
            lr0 = 0.025 * (1 - j / (len(cuts) - 1))
            _, n, _, _ = K.train_window(ids, offs, int(cuts[j]), int(cuts[j + 1]), keep, c.neg_threshold, c.neg_alias,
                                        syn0, syn1, window, negative, lr0, lr0, D.job_seed(1, 0, j), shared, loss_every,
                                        prefetch)
            pairs += n
        rows.append({"variant": label, "cpu_s": cpu() - t0, "pairs": pairs})

    # pairs of the whole slice, generated once (also the input of the torch and shard variants)
    cap = 2 * window * c.tokens + 1
    tg, ct = np.empty(cap, np.int32), np.empty(cap, np.int32)
    K.make_pairs(ids, offs, 0, 0, keep, window, 1, tg, ct)
    t0 = cpu()
    n = 0
    for j in range(len(cuts) - 1):
        m, _ = K.make_pairs(ids, offs, int(cuts[j]), int(cuts[j + 1]), keep, window, D.job_seed(1, 0, j), tg[n:], ct[n:])
        n += m
    rows.append({"variant": "make-pairs", "cpu_s": cpu() - t0, "pairs": n})
    tg, ct = tg[:n], ct[:n]

    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = Path(tempfile.mkdtemp(dir=a.tmp)) / "pairs.parquet"
    pq.write_table(pa.table({"target": tg, "context": ct}), shard)
    t0 = cpu()
    D.read_shard(shard)
    rows.append({"variant": "shard-read", "cpu_s": cpu() - t0, "pairs": n, "bytes": shard.stat().st_size})

    kernel("numba-shared", True, 8)
    kernel("numba-shared-nopf", True, 8, prefetch=False)
    kernel("numba-shared+loss", True, 1)
    kernel("numba-per-pair", False, 8)

    # torch batched: the same pairs, batches of 4096
    syn0, syn1 = (torch.from_numpy(x) for x in init_vectors(V, dim, 1))
    thr = torch.from_numpy(c.neg_threshold.astype(np.int64))
    alias = torch.from_numpy(c.neg_alias.astype(np.int64))
    t_all, c_all = torch.from_numpy(tg.astype(np.int64)), torch.from_numpy(ct.astype(np.int64))
    gen = torch.Generator().manual_seed(1)
    limit = min(n, 2_000_000)  # enough for a stable rate
    t0 = cpu()
    for i in range(0, limit, 4096):
        tb, cb = t_all[i:i + 4096], c_all[i:i + 4096]
        torch_step(syn0, syn1, tb, cb, torch_negatives(thr, alias, (len(tb), negative), gen), 0.025)
    rows.append({"variant": "torch-batched", "cpu_s": cpu() - t0, "pairs": limit})
    with torch.profiler.profile() as prof:
        for i in range(0, 200_000, 4096):
            tb, cb = t_all[i:i + 4096], c_all[i:i + 4096]
            torch_step(syn0, syn1, tb, cb, torch_negatives(thr, alias, (len(tb), negative), gen), 0.025)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    breakdown = [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in ops[:6]]

    # gensim, 1 worker, same slice (its pair count equals ours up to the random draws)
    from gensim.models import Word2Vec

    sents = [line.split() for line in open(Path(vocab_step.info["parent_dir"]) / "corpus.txt", encoding="utf-8")]
    model = Word2Vec(sg=1, negative=5, window=5, vector_size=100, min_count=5, sample=1e-3, workers=1, epochs=1)
    model.build_vocab(sents)
    t0 = cpu()
    model.train(sents, total_examples=len(sents), epochs=1)
    rows.append({"variant": "gensim", "cpu_s": cpu() - t0, "pairs": n, "note": "pairs: textlab's count for the slice"})

    g = next(r for r in rows if r["variant"] == "gensim")
    g_ns = g["cpu_s"] / g["pairs"] * 1e9
    for r in rows:
        r["ns_per_pair"] = round(r["cpu_s"] / r["pairs"] * 1e9, 1)
        r["pairs_per_cpu_s"] = round(r["pairs"] / r["cpu_s"])
        r["vs_gensim"] = round(g_ns / r["ns_per_pair"], 2)
        r["cpu_s"] = round(r["cpu_s"], 3)
    result = {"corpus": f"text8like-{a.lines}.txt", "tokens": c.tokens, "vocab_size": V, "pairs": n, "load_start": round(load0, 2),
              "load_end": round(os.getloadavg()[0], 2), "rows": rows, "torch_breakdown": breakdown}
    out = Console(width=140)
    t = Table(title=f"CPU time per pair, 1 thread, {c.tokens:,} words of text8like, {n:,} pairs "
                    f"(load {result['load_start']}→{result['load_end']})")
    for col in ("variant", "ns/pair", "pairs per CPU s", "speed vs gensim"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        t.add_row(r["variant"], f"{r['ns_per_pair']:,.0f}", f"{r['pairs_per_cpu_s']:,}", f"{r['vs_gensim']:.2f}x")
    out.print(t)
    out.print("torch-batched, share of CPU time by op: " + ", ".join(f"{b['op']} {100 * b['share']:.0f}%" for b in breakdown))
    if not a.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        out.print(f"written: {OUT}")


if __name__ == "__main__":
    sys.exit(main())
