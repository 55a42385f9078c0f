#!/bin/bash
# word2vec training speed of two versions of textlab, side by side, on the small corpus (ruslit, x1: a
# whole epoch, twice each) and on the seed-size corpus (x165: 1B tokens, 2.5M words; 5 minutes each),
# 2 threads, one run after another on a quiet machine; then the load time of each version's checkpoint.
#
#   python benchmarks/scale.py --seed-size word2vec --data-dir /tmp/w2v-seed --make-only   # the corpora (10 min)
#   git worktree add /tmp/textlab-old 2fa4f03                                               # the version to compare
#   bash benchmarks/word2vec_seed_compare.sh /tmp/w2v-seed /tmp/textlab-old /tmp/w2v-compare
#
# prep and vocab of the 1B-token corpus take about 30 minutes (once; both versions read the same
# prepared data). Writes benchmarks/results/word2vec-seed-compare.json.
set -euo pipefail
DATA=$1; OLD=$(cd "$2" && pwd); WORK=$3
NEW=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$NEW/.venv/bin/python}
mkdir -p "$WORK" && cd "$WORK"
run() {  # run CODE ARGS...: textlab of that tree
  local tree=$NEW; [ "$1" = old ] && tree=$OLD; shift
  PYTHONPATH=$tree:$tree/plugins "$PY" -m textlab "$@"
}
export TEXTLAB_HOME=$WORK/home-x1
run new prep word2vec --data "$DATA/word2vec-x1/corpus.txt" > /dev/null 2>&1
run new vocab word2vec --min-count 5 > /dev/null 2>&1
for round in 1 2; do for code in old new; do
  echo "x1 $code round $round load $(cut -d' ' -f1 /proc/loadavg)" | tee -a loads.txt
  run $code train word2vec --min-count 5 --epochs 1 --threads 2 --save-every 0 --out "$WORK/x1-$code.pt" --json > "x1-$code-$round.json" 2> "x1-$code-$round.err"
done; done
export TEXTLAB_HOME=$WORK/home
[ -f prep.done ] || { run new prep word2vec --data "$DATA/word2vec-x165/corpus.txt" > prep.log 2>&1 && touch prep.done; }
[ -f vocab.done ] || { run new vocab word2vec --min-count 5 > vocab.log 2>&1 && touch vocab.done; }
for code in new old; do
  echo "x165 $code load $(cut -d' ' -f1 /proc/loadavg)" | tee -a loads.txt
  run $code train word2vec --min-count 5 --epochs 1 --threads 2 --save-every 0 --time-budget 300 --out "$WORK/x165-$code.pt" --json > "x165-$code.json" 2> "x165-$code.err"
done
echo "end load $(cut -d' ' -f1 /proc/loadavg)" | tee -a loads.txt
PYTHONPATH=$NEW:$NEW/plugins "$PY" - "$WORK" "$NEW/benchmarks/results/word2vec-seed-compare.json" <<'PYEOF'
import json, sys, time
from pathlib import Path
import textlab
work, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for f in sorted(work.glob("x*.json")):
    r = json.loads(f.read_text())["result"]
    s = r.get("summary", r)
    row = {"run": f.stem, "raw_words_per_s": s["raw_words_per_s"], "seconds": s["seconds"], "epochs_done": s["epochs_done"]}
    if f.stem.startswith("x165"):
        t0 = time.perf_counter()
        ckpt = textlab.load_checkpoint(Path(f.parent, r["checkpoint"]) if not Path(r["checkpoint"]).is_absolute() else r["checkpoint"])
        row.update(checkpoint_format=ckpt["version"], vocab_words=len(ckpt["vocab"]["itos"]),
                   checkpoint_load_s=round(time.perf_counter() - t0, 2))
    rows.append(row)
rate = lambda p: sum(x["raw_words_per_s"] for x in rows if x["run"].startswith(p)) / len([x for x in rows if x["run"].startswith(p)])
summary = {k: round(rate(k)) for k in ("x1-old", "x1-new", "x165-old", "x165-new")}
summary.update(new_over_old_x1=round(summary["x1-new"] / summary["x1-old"], 2),
               new_over_old_x165=round(summary["x165-new"] / summary["x165-old"], 2),
               x165_over_x1_new=round(summary["x165-new"] / summary["x1-new"], 2),
               x165_over_x1_old=round(summary["x165-old"] / summary["x1-old"], 2))
result = {"rows": rows, "mean_raw_words_per_s": summary, "loads": (work / "loads.txt").read_text().splitlines(),
          "threads": 2, "note": "x1: ruslit, 6.06M tokens, 71,386 words, whole epoch; x165: 1.00B tokens, 2,510,756 words, 5 minutes"}
out.write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(summary, indent=1))
PYEOF
