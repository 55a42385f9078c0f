#!/usr/bin/env bash
# The main job on embedded data (`make demo`, a few minutes on 2 CPU cores): AG News topic
# classification end to end on the agnews sample, then a glance at word2vec and gla.
# Runs go to $TEXTLAB_RUNS (default runs/), caches to $TEXTLAB_HOME (default: platformdirs).
set -euo pipefail
BIN=${BIN:-.venv/bin}
TL="$BIN/textlab"
RUNS=${TEXTLAB_RUNS:-runs}
THREADS=${THREADS:-2}
run_of() { "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["run"])'; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "installed plugins"
"$TL" plugins

step "agnews: the data (embedded sample: 1,600 train / 400 test news items, 4 topics)"
"$TL" analyze agnews --data sample --out "$RUNS/demo-analysis"

step "agnews: a plain RNN and an LSTM, 4 epochs each, learning curves every half epoch"
rnn=$("$TL" train agnews --data sample --rnn rnn --epochs 4 --runs-dir "$RUNS" --threads "$THREADS" --json | run_of)
lstm=$("$TL" train agnews --data sample --rnn lstm --epochs 4 --runs-dir "$RUNS" --threads "$THREADS" --json | run_of)

step "agnews: evaluate the LSTM on the test split (accuracy, per-class report, confusion matrix)"
"$TL" eval "$lstm" --threads "$THREADS"

step "agnews: compare the two runs (table + PNG learning curves)"
"$TL" analyze "$rnn" "$lstm"

step "word2vec: skip-gram with negative sampling on the embedded sample, then nearest neighbours"
"$TL" prep word2vec --data sample
w2v=$("$TL" train word2vec --dim 32 --epochs 3 --runs-dir "$RUNS" --threads "$THREADS" --json | run_of)
"$TL" neighbors "$w2v" москва -k 5

step "gla: a tiny Gated Linear Attention character LM (150 steps), then generation"
gla=$("$TL" train gla --data sample --d-model 64 --layers 2 --seq-len 64 --batch-size 8 --steps 150 --warmup 10 \
      --lr 3e-3 --runs-dir "$RUNS" --threads "$THREADS" --json | run_of)
"$TL" generate "$gla" "The " --max-new 120 --sampling-seed 0

step "all runs"
"$TL" runs --runs-dir "$RUNS"
printf '\nrun directories, metrics.jsonl and plots are under %s/\n' "$RUNS" >&2
