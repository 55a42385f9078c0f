"""GLA vs a same-size softmax Transformer (d 256, 4 layers) on the same CPU cores.

    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/gla.py            # full (≈ 30 min)
    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/gla.py --quick    # a few minutes

1. Training throughput (characters/s): forward + backward + clip + AdamW step on 16,384
   characters per step at sequence lengths 256, 512, 1024 and 4096 (batch 64, 32, 16, 4), each
   model eager and compiled (`torch.compile(model, dynamic=False)`, the same call for both; GLA's
   own chunk-form operator stays one opaque call, as SDPA is for the Transformer); one warm-up
   step (for compiled models: the compilation, reported as "first step"), then the median of
   --repeats steps; the four alternate step by step so that load changes hit all alike.
   Then one training step of each profiled at --profile-len (512): its self CPU time over the time
   of its matrix products (mm and bmm), the issue's "step / dense matrix products".
2. Bits per character on the valid split after the same wall-clock budget each: `textlab train
   gla --model M --time-budget B` (seq-len 512, batch 16, the default recipe; with --compile for
   both unless --quality-mode eager: the compilation counts in the budget), then `textlab
   eval RUN --split valid` (every valid character, 512-character windows, no carried state).
3. Generation with the trained checkpoints: batch 1, prompt "The history of", 256 / 1024 /
   4096 new characters (temperature 0.8, top-k 20), one thread (batch-1 decoding is faster on
   one thread on this class of machine). GLA: chunk-form prefill, then one recurrent step per
   character. Transformer: causal SDPA prefill, then a preallocated key/value cache. Each run
   is a fresh process; peak memory is the process's peak RSS during generation (VmHWM after
   resetting it through /proc/self/clear_refs) and the exact size of the state / KV cache.

Every timing is stored with the load average (1, 5, 15 min) before and after it. The table is
printed and everything goes to benchmarks/results/gla.json (+ learning-curve PNGs); `--quick` writes
gla-quick.json, gla-quick-curves/ and gla-quick-generation.png instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "wikitext"
PROMPT = "The history of"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def textlab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "textlab", *args]


def run(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return proc


# ============================================================================ 1. throughput
MODES = ("eager", "compiled")


def _models(vocab_size: int, modes: tuple[str, ...]) -> dict:
    """GLA and the Transformer, fresh (seed 0), each eager and/or compiled (the same torch.compile call
    for both; GLA's own chunk-form operator stays one opaque call, as SDPA is for the Transformer)."""
    import torch

    from textlab import adamw
    from textlab_gla.config import GLAConfig, TransformerConfig
    from textlab_gla.model import build_gla, build_transformer, opaque_to_compiler

    if "compiled" in modes:
        opaque_to_compiler()
        torch._dynamo.reset()  # a new length compiles afresh (static shapes), not as a dynamic-shape recompile
    out = {}
    for mode in modes:
        for name, build, cfg in (("gla", build_gla, GLAConfig), ("transformer", build_transformer, TransformerConfig)):
            torch.manual_seed(0)
            net = build(cfg(vocab_size=vocab_size), None)
            fwd = torch.compile(net, dynamic=False) if mode == "compiled" else net
            out[(name, mode)] = (net, fwd, adamw(net, 1e-3, 0.1))
    return out


def _train_step(net, fwd, opt, x, y, vocab_size: int) -> float:
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    loss = F.cross_entropy(fwd(x).reshape(-1, vocab_size), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return time.perf_counter() - t0


def throughput(data: str, seq_lens: list[int], tokens: int, repeats: int, threads: int,
               modes: tuple[str, ...] = MODES) -> list[dict]:
    """Characters/s of a training step of each model, eager and compiled, the four alternating step by
    step (load changes hit all alike); the first step of each is the warm-up (and the compilation)."""
    import torch

    from textlab_gla import data as gdata

    torch.set_num_threads(threads)
    vocab, _ = gdata.vocab_for(data)
    ids = gdata.load_ids(data, vocab, "train")
    rows = []
    for T in seq_lens:
        B = max(1, tokens // T)
        starts = torch.randint(0, len(ids) - T - 1, (repeats + 1, B), generator=torch.Generator().manual_seed(T))
        models = _models(len(vocab), modes)
        times = {key: [] for key in models}
        warmup = {}
        before = load()
        for r in range(repeats + 1):  # step 0 is the warm-up
            x, y = gdata.gather_windows(ids, starts[r], T)
            for key, (net, fwd, opt) in models.items():
                t = _train_step(net, fwd, opt, x, y, len(vocab))
                (times[key].append(t) if r else warmup.__setitem__(key, t))
        after = load()
        for (name, mode), ts in times.items():
            med = statistics.median(ts)
            rows.append({"model": name, "mode": mode, "seq_len": T, "batch": B, "chars_per_step": B * T,
                         "chars_per_s": round(B * T / med), "step_s": [round(t, 3) for t in ts],
                         "first_step_s": round(warmup[(name, mode)], 1), "load_before": before, "load_after": after})
            print(f"  throughput T={T:5d} {name:11s} {mode:8s} {B * T / med:8,.0f} chars/s  (first step "
                  f"{warmup[(name, mode)]:.1f} s; load {before[0]} -> {after[0]})", flush=True)
        del models
    return rows


# ============================================================================ 2. quality after a budget
def train_and_eval(model: str, data: str, budget: str, threads: int, runs_dir: Path, env: dict,
                   extra: list[str], eval_extra: list[str]) -> dict:
    before = load()
    t0 = time.time()
    proc = run(textlab_cmd("train", "gla", "--data", data, "--model", model, "--time-budget", budget,
                           "--threads", str(threads), "--runs-dir", str(runs_dir), "--json", *extra), env=env)
    wall = time.time() - t0
    after = load()
    result = json.loads(proc.stdout)
    run_dir = result["run"]
    ev = json.loads(run(textlab_cmd("eval", run_dir, "--split", "valid", "--threads", str(threads), "--json",
                                    *eval_extra), env=env).stdout)
    row = {"model": model, "run": run_dir, "budget": budget, "steps": result["result"]["steps"],
           "train_chars": result["result"]["train_chars"], "chars_per_s": result["result"]["chars_per_s"],
           "params": result["result"]["params"], "valid_bpc": ev["splits"]["valid"]["bpc"],
           "valid_chars": ev["splits"]["valid"]["chars"], "wall_s": round(wall, 1),
           "load_before": before, "load_after": after}
    if model == "gla":
        st = json.loads(run(textlab_cmd("eval", run_dir, "--split", "valid", "--context", "stream", "--threads",
                                         str(threads), "--json", *eval_extra), env=env).stdout)
        row["valid_bpc_stream"] = st["splits"]["valid"]["bpc"]
    print(f"  quality {model:11s} {row['steps']} steps, {row['train_chars']:,} chars, valid bpc {row['valid_bpc']:.4f}"
          f"  (load {before[0]} -> {after[0]})", flush=True)
    return row


# ============================================================================ 3. generation (one process each)
def generation_child(ckpt: str, n: int, threads: int) -> dict:
    """Runs in a fresh process: prefill, reset the peak RSS, generate n characters."""
    import torch

    import textlab
    from textlab_gla import data as gdata
    from textlab_gla.generate import generate_ids

    torch.set_num_threads(threads)
    art = textlab.open_artifact(ckpt)
    vocab = textlab.Vocab.from_dict(art.vocab)
    model = art.build_model()
    prompt = gdata.encode(gdata.normalize(PROMPT), vocab).long()
    generate_ids(model, prompt, 8, generator=torch.Generator().manual_seed(0))  # warm-up
    rss0 = _proc_kb("VmRSS")
    reset = _reset_peak()
    before = load()
    out, stats = generate_ids(model, prompt, n, temperature=0.8, top_k=20, generator=torch.Generator().manual_seed(0))
    after = load()
    peak = _proc_kb("VmHWM") if reset else None
    w = min(256, n)
    first, last = stats.rate(first=w), stats.rate(last=w)
    return {"model": art.model_name, "new_chars": n, "threads": threads, "chars_per_s": round(stats.rate(), 1),
            "first_chars_per_s": round(first, 1), "last_chars_per_s": round(last, 1),
            "last_vs_first_time": round(first / last, 3), "prefill_ms": round(stats.prefill_s * 1000, 1),
            "cache_kib": round(stats.cache_bytes / 1024, 1), "rss_before_mib": round(rss0 / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1) if peak else None,
            "peak_growth_mib": round((peak - rss0) / 1024, 1) if peak else None,
            "sample": gdata.decode(out[:300], vocab), "load_before": before, "load_after": after,
            "ms_per_char_by_32": [round(1000 * sum(stats.step_times[i:i + 32]) / len(stats.step_times[i:i + 32]), 3)
                                  for i in range(0, len(stats.step_times), 32)]}


def _proc_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def generation(ckpts: dict[str, str], lengths: list[int], threads: int, env: dict) -> list[dict]:
    rows = []
    for n in lengths:
        for model, ckpt in ckpts.items():
            proc = run([sys.executable, __file__, "--_child", ckpt, str(n), str(threads)], env=env)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  generate {model:11s} {n:5d} chars: {row['chars_per_s']:7,.0f} chars/s, first/last 256: "
                  f"{row['first_chars_per_s']:,.0f}/{row['last_chars_per_s']:,.0f}, cache {row['cache_kib']:,.0f} KiB, "
                  f"peak growth {row['peak_growth_mib']} MiB (load {row['load_before'][0]})", flush=True)
    return rows


# ============================================================================ profile (--profile T)
CATEGORIES = [  # first match wins; by the profiler's top-level op names
    ("dense matmuls (projections, MLP, head)", ("aten::mm", "aten::addmm", "aten::linear")),
    ("GLA operator (chunk form)", ("_FastChunk", "aten::bmm", "aten::matmul", "aten::cumsum", "aten::addcmul")),
    ("softmax attention (SDPA)", ("aten::_scaled_dot_product", "aten::scaled_dot_product")),
    ("copies / layout", ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous")),
    ("fused by torch.compile (elementwise, norms, gates)", ("## Call CompiledFxGraph", "## Call Compiled")),
]
OTHER = "other (elementwise, norms, gates, RoPE, loss, optimizer)"
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")  # every matrix product a step does


def profile(data: str, T: int, threads: int, modes: tuple[str, ...] = MODES) -> dict:
    """Self CPU time of one training step (forward, backward, AdamW) of each model, eager and compiled,
    by operator and by category, and the step's time over its matrix products' (mm and bmm: GLA's
    own operator's are matrix products too). Run it under the benchmark lock: it is a timing."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from textlab_gla import data as gdata

    torch.set_num_threads(threads)
    vocab, _ = gdata.vocab_for(data)
    V = len(vocab)
    B = max(1, 16384 // T)
    x = torch.randint(0, V, (B, T + 1), generator=torch.Generator().manual_seed(0))
    out = {"seq_len": T, "batch": B, "threads": threads, "models": {}}
    for (name, mode), (net, fwd, opt) in _models(V, modes).items():
        for _ in range(2):  # warm-up (and compilation)
            _train_step(net, fwd, opt, x[:, :-1], x[:, 1:], V)
        before = load()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            _train_step(net, fwd, opt, x[:, :-1], x[:, 1:], V)
        after = load()
        ops = sorted(((e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()), key=lambda r: -r[1])
        total = sum(t for _, t, _ in ops)
        matmul = sum(t for k, t, _ in ops if k in MATMULS)
        cats = {c: 0.0 for c, _ in CATEGORIES}
        cats[OTHER] = 0.0
        for key, t, _ in ops:
            cats[next((c for c, names in CATEGORIES if key.startswith(names)), OTHER)] += t
        out["models"][f"{name} {mode}"] = {
            "total_s": round(total, 3), "matmul_s": round(matmul, 3), "step_over_matmuls": round(total / matmul, 2),
            "load_before": before, "load_after": after, "categories_s": {k: round(v, 3) for k, v in cats.items()},
            "top_ops": [[k, round(t, 3), n] for k, t, n in ops[:15]]}
        print(f"  profile T={T} {name:11s} {mode:8s} {total:.2f} s self CPU, matmuls {matmul:.2f} s: step = "
              f"{total / matmul:.2f}x its matmuls  (load {before[0]} -> {after[0]})", flush=True)
    return out


# ============================================================================ report
# issue #25: GLA over the Transformer, both compiled the same way, per sequence length
COMPILED_NEEDED = {256: 1.0, 512: 1.1, 1024: 1.4, 4096: 2.8}
STEP_OVER_MATMULS = 1.2  # issue #25: GLA's step at most this many times its own matrix products


# What was done for the compiled targets, and what is left (plugins/textlab_gla/README.md, "Eager and
# compiled, 256 to 4096 characters", has the measurements); shown beside a target that is not met.
TRIED_COMPILED = (
    "under --compile the chunk-form operator is one opaque call and everything around it is fused; q, k, v, "
    "the output gate and the gate's first stage come out of one matmul each, laid out as the operator writes "
    "its gradients; SwiGLU's halves are two matmuls; the operator's backward is written out by hand. Left: "
    "the operator's own bmm and cumulative sums and the gates' elementwise backward, which a fused kernel of "
    "the operator would remove (none on a CPU: plain PyTorch); at 256 the chunked form's per-chunk work is "
    "barely paid back by the shorter attention (chunks of 32, 64 or 128: the same speed)")


def targets(tp: list[dict], quality: list[dict], gen: list[dict], prof: dict | None = None) -> dict:
    def rate(model, T, mode):
        return next((r["chars_per_s"] for r in tp if r["model"] == model and r["seq_len"] == T
                     and r.get("mode", "eager") == mode), None)

    out = {}
    for T, need in ((1024, 1.0), (4096, 2.0)):  # issue #6, eager
        g, t = rate("gla", T, "eager"), rate("transformer", T, "eager")
        if g and t:
            out[f"train_speed_{T}"] = {"gla_over_transformer": round(g / t, 2), "needed": need, "met": g / t >= need}
    for T, need in COMPILED_NEEDED.items():
        g, t = rate("gla", T, "compiled"), rate("transformer", T, "compiled")
        if g and t:
            out[f"compiled_train_speed_{T}"] = {"gla_over_transformer": round(g / t, 2), "needed": need,
                                                "met": g / t >= need,
                                                **({} if g / t >= need else {"tried": TRIED_COMPILED})}
    for key, info in ((prof or {}).get("models") or {}).items():
        if key.startswith("gla"):
            out[f"step_over_matmuls_{key.split()[1]}_{prof['seq_len']}"] = {
                "step_over_matmuls": info["step_over_matmuls"], "needed": f"<= {STEP_OVER_MATMULS}",
                "met": info["step_over_matmuls"] <= STEP_OVER_MATMULS,
                **({} if info["step_over_matmuls"] <= STEP_OVER_MATMULS else {"tried": TRIED_COMPILED})}
    glag = [r for r in gen if r["model"] == "gla"]
    if glag:
        longest = max(glag, key=lambda r: r["new_chars"])
        out["generation_flat"] = {"new_chars": longest["new_chars"], "last_vs_first_time": longest["last_vs_first_time"],
                                  "needed": "<= 1.10", "met": longest["last_vs_first_time"] <= 1.10}
    q = {r["model"]: r["valid_bpc"] for r in quality}
    if len(q) == 2:
        out["bpc_same_budget"] = {"gla": round(q["gla"], 4), "transformer": round(q["transformer"], 4),
                                  "met": q["gla"] <= q["transformer"]}
    return out


def plot_generation(result: dict, path: Path) -> str | None:
    """Milliseconds per new character against position, the longest run of each model."""
    rows = [r for r in result.get("generation", []) if r.get("ms_per_char_by_32")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for model, colour in (("gla", "tab:blue"), ("transformer", "tab:orange")):
        runs = [r for r in rows if r["model"] == model]
        if not runs:
            continue
        r = max(runs, key=lambda r: r["new_chars"])
        ys = r["ms_per_char_by_32"]
        label = {"gla": "GLA (recurrent state)", "transformer": "Transformer (KV cache)"}[model]
        ax.plot([32 * i + 16 for i in range(len(ys))], ys, color=colour, label=f"{label}, {r['cache_kib']:,.0f} KiB at the end")
    ax.set_xlabel("position of the new character")
    ax.set_ylabel("ms per character (mean of 32)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"generation, batch 1, {result['gen_threads']} thread(s); load ≈ {rows[-1]['load_before'][0]}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(REPO))


def show(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 150))
    t = Table(title=f"training throughput, chars/s ({result['threads']} threads, "
                    f"{result['tokens_per_step']:,} characters per step)")
    for col in ("seq len", "batch", "mode", "GLA", "Transformer", "GLA / Transformer", "first step GLA / Tr. s",
                "load (1 min) before → after"):
        t.add_column(col, justify="right")
    tp = result["throughput"]
    for T, mode in sorted({(r["seq_len"], r.get("mode", "eager")) for r in tp}):
        g, tr = (next(r for r in tp if r["model"] == m and r["seq_len"] == T and r.get("mode", "eager") == mode)
                 for m in ("gla", "transformer"))
        t.add_row(str(T), str(g["batch"]), mode, f"{g['chars_per_s']:,}", f"{tr['chars_per_s']:,}",
                  f"{g['chars_per_s'] / tr['chars_per_s']:.2f}×", f"{g.get('first_step_s', '-')} / {tr.get('first_step_s', '-')}",
                  f"{g['load_before'][0]} → {g['load_after'][0]}")
    con.print(t)
    prof = result.get("profile")
    if prof:
        t = Table(title=f"one training step profiled (T = {prof['seq_len']}, self CPU s)")
        for col in ("model", "total", "matrix products", "step / matrix products", "load"):
            t.add_column(col, justify="right")
        for key, info in prof["models"].items():
            t.add_row(key, f"{info['total_s']:.2f}", f"{info['matmul_s']:.2f}", f"{info['step_over_matmuls']:.2f}×",
                      str(info["load_before"][0]))
        con.print(t)
    if result["quality"]:
        t = Table(title=f"valid bits per character after the same budget ({result['budget']} each)")
        for col in ("model", "params", "steps", "train chars", "chars/s", "valid bpc", "load before → after"):
            t.add_column(col, justify="right")
        for r in result["quality"]:
            bpc = f"{r['valid_bpc']:.4f}" + (f" (stream {r['valid_bpc_stream']:.4f})" if "valid_bpc_stream" in r else "")
            t.add_row(r["model"], f"{r['params'] / 1e6:.2f} M", f"{r['steps']:,}", f"{r['train_chars']:,}",
                      f"{r['chars_per_s']:,}", bpc, f"{r['load_before'][0]} → {r['load_after'][0]}")
        con.print(t)
    if result["generation"]:
        t = Table(title=f"generation, batch 1, {result['gen_threads']} thread(s)")
        for col in ("model", "new chars", "chars/s", "first 256", "last 256", "last/first time", "state / KV cache",
                    "peak RSS growth", "load"):
            t.add_column(col, justify="right")
        for r in result["generation"]:
            t.add_row(r["model"], f"{r['new_chars']:,}", f"{r['chars_per_s']:,.0f}", f"{r['first_chars_per_s']:,.0f}",
                      f"{r['last_chars_per_s']:,.0f}", f"{r['last_vs_first_time']:.2f}", f"{r['cache_kib']:,.0f} KiB",
                      f"{r['peak_growth_mib']} MiB", str(r["load_before"][0]))
        con.print(t)
    t = Table(title="targets of the issue")
    for col in ("target", "measured", "met"):
        t.add_column(col)
    for name, info in result["targets"].items():
        shown = {k: v for k, v in info.items() if k not in ("met", "tried")}
        t.add_row(name, json.dumps(shown), "[green]yes[/green]" if info["met"] else "[red]no[/red]")
    con.print(t)
    unmet: dict[str, list[str]] = {}
    for name, info in result["targets"].items():
        if info.get("tried"):
            unmet.setdefault(info["tried"], []).append(name)
    for text, names in unmet.items():
        con.print(f"[red]not met[/red]: {', '.join(names)}. Tried: {text}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short check that everything runs (a few minutes)")
    ap.add_argument("--budget", default=None, help="training budget per model (default 10m; --quick 45s)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="train/valid/test text (default: ../shared/data/wikitext)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training and throughput")
    ap.add_argument("--gen-threads", type=int, default=1, help="torch threads for batch-1 generation")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per model and length (default 3; quick 1)")
    ap.add_argument("--seq-lens", default="256,512,1024,4096")
    ap.add_argument("--modes", default="eager,compiled", help="throughput and profile: eager and/or compiled "
                                                                 "(torch.compile, the same for both models)")
    ap.add_argument("--quality-mode", default="compiled", choices=MODES,
                    help="the budget runs: `textlab train gla` with or without --compile (both models alike)")
    ap.add_argument("--profile-len", type=int, default=512, help="the full run profiles one step at this length")
    ap.add_argument("--gen-lengths", default=None, help="default 256,1024,4096 (quick: 256,1024)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: throughput, profile, quality, generation")
    ap.add_argument("--out", default=None, help="default benchmarks/results/gla.json (--quick: gla-quick.json)")
    ap.add_argument("--profile", type=int, default=None, metavar="T",
                    help="only profile one training step of each model at sequence length T "
                         "(writes benchmarks/results/gla-profile-T.json)")
    args = ap.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    if args.profile:
        res = profile(args.data, args.profile, args.threads, modes)
        res["command"] = " ".join(["benchmarks/gla.py", *(argv if argv is not None else sys.argv[1:])])
        path = RESULTS / f"gla-profile-{args.profile}.json"
        path.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        print(f"written: {path}")
        return
    stem = "gla-quick" if args.quick else "gla"  # a quick check never replaces the full results
    args.out = args.out or str(RESULTS / f"{stem}.json")
    budget = args.budget or ("45s" if args.quick else "10m")
    repeats = args.repeats or (1 if args.quick else 3)
    gen_lengths = [int(x) for x in (args.gen_lengths or ("256,1024" if args.quick else "256,1024,4096")).split(",")]
    skip = set(filter(None, args.skip.split(",")))
    env = dict(os.environ, TEXTLAB_PROGRESS="0")
    result = {"command": " ".join(["benchmarks/gla.py", *(argv if argv is not None else sys.argv[1:])]),
              "quick": args.quick, "budget": budget, "threads": args.threads, "gen_threads": args.gen_threads,
              "tokens_per_step": 16384, "data": args.data, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"cpu": _cpu(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": __import__("torch").__version__},
              "modes": list(modes), "quality_mode": args.quality_mode,
              "throughput": [], "quality": [], "generation": []}
    print(f"gla benchmark ({'quick' if args.quick else 'full'}), load {load()}", flush=True)
    if "throughput" not in skip:
        result["throughput"] = throughput(args.data, [int(x) for x in args.seq_lens.split(",")], 16384, repeats,
                                          args.threads, modes)
        import gc

        gc.collect()
    if "profile" not in skip:
        result["profile"] = profile(args.data, args.profile_len, args.threads, modes)
    ckpts = {}
    with tempfile.TemporaryDirectory(prefix="gla-bench-") as tmp:
        runs_dir = Path(tmp) / "runs"
        if "quality" not in skip or "generation" not in skip:
            extra = ["--eval-every", "250", "--eval-chars", "65536", "--warmup", "30"]
            if args.quick:
                extra = ["--eval-every", "50", "--eval-chars", "16384", "--warmup", "20"]
            eval_extra = ["--max-chars", "65536"] if args.quick else []
            if args.quality_mode == "compiled":
                extra.append("--compile")
            for model in ("gla", "transformer"):
                row = train_and_eval(model, args.data, budget, args.threads, runs_dir, env, extra, eval_extra)
                result["quality"].append(row)
                ckpts[model] = str(Path(row["run"]) / "checkpoints" / "best.pt")
            curves = RESULTS / f"{stem}-curves"
            subprocess.run(textlab_cmd("analyze", *(r["run"] for r in result["quality"]), "--x", "time",
                                       "--out", str(curves)), capture_output=True, text=True, env=env)
            result["curves"] = sorted(str(p.relative_to(REPO)) for p in curves.glob("*.png"))
        if "generation" not in skip and ckpts:
            result["generation"] = generation(ckpts, gen_lengths, args.gen_threads, env)
        for row in result["quality"]:
            row["run"] = Path(row["run"]).name  # the temporary folder is gone afterwards
    result["targets"] = targets(result["throughput"], result["quality"], result["generation"], result.get("profile"))
    result["generation_plot"] = plot_generation(result, RESULTS / f"{stem}-generation.png")
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    show(result)
    print(f"written: {args.out}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        print(json.dumps(generation_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])), ensure_ascii=False))
    else:
        main()
