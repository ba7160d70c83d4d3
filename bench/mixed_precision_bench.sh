#!/usr/bin/env bash
# learner.precision bf16 against f32 on the CPU backend, side by side in one run: the nano
# R1-Zero recipe (recipes/r1zero-nano.yaml, deepseek_v3-shaped, ~1M parameters), shortened, is
# trained with each precision in turn (alternating, REPEATS times each) from the same seed, and
# the script prints per precision the median wall time of the pretraining stage per step and of
# the learner's update per GRPO step (metrics.jsonl time/learn), and the final pretraining
# loss. On the CPU backend bf16 mode computes in f32 over exactly widened bf16 copies of the
# weights, so it measures the copies' cost (refresh after every optimizer step, widening in
# the GEMMs), not a bf16 speedup. Not a test: run it by hand.
#   PRETRAIN=100 STEPS=3 REPEATS=3 bash bench/mixed_precision_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PRETRAIN=${PRETRAIN:-100}; STEPS=${STEPS:-3}; REPEATS=${REPEATS:-3}
bazel build //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-mixed-bench.XXXXXX)
GRPO=$PWD/bazel-bin/cli/grpo
RECIPE=$PWD/recipes/r1zero-nano.yaml
echo "threads: ${GRPO_NUM_THREADS:-<default>}; pretrain.steps=$PRETRAIN train.steps=$STEPS, $REPEATS runs per precision"
for r in $(seq "$REPEATS"); do
  for p in f32 bf16; do
    d="$W/$p.$r"; mkdir -p "$d"; cd "$d"
    start=$(date +%s.%N)
    "$GRPO" train "$RECIPE" --set learner.precision=$p --set pretrain.steps="$PRETRAIN" \
      --set train.steps="$STEPS" --set train.eval_every="$STEPS" --set train.eval_size=16 \
      > out.txt 2> err.txt
    echo "$(date +%s.%N) $start" > wall.txt
    cd - >/dev/null
  done
done
/usr/bin/python3 - "$W" "$REPEATS" "$PRETRAIN" <<'PY'
import json, os, statistics, sys
W, repeats, pretrain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("%-6s %16s %16s %14s %12s" % ("mode", "pretrain ms/step", "GRPO learn s", "run wall s", "final loss"))
res = {}
for p in ("f32", "bf16"):
    pre, learn, wall, loss = [], [], [], []
    for r in range(1, repeats + 1):
        run = os.path.join(W, "%s.%d" % (p, r), "runs", "r1zero-nano")
        rows = [json.loads(l) for l in open(os.path.join(run, "pretrain_metrics.jsonl"))]
        rl = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
        rl = [x for x in rl if "time/learn" in x]
        end, start = map(float, open(os.path.join(W, "%s.%d" % (p, r), "wall.txt")).read().split())
        # The pretraining stage's time: the first GRPO step's timestamp is not logged, so take
        # the run's wall time minus its GRPO steps' timed parts.
        grpo = sum(x.get("time/rollout", 0) + x.get("time/reward", 0) + x.get("time/learn", 0) + x.get("time/sync", 0) for x in rl)
        pre.append(1000 * (end - start - grpo) / pretrain)
        learn.append(statistics.median(x["time/learn"] for x in rl))
        wall.append(end - start)
        loss.append(rows[-1]["loss"])
    res[p] = (statistics.median(pre), statistics.median(learn), statistics.median(wall), loss[-1])
    print("%-6s %16.1f %16.3f %14.1f %12.4f" % ((p,) + res[p]))
print("bf16 / f32: pretrain step %.2fx, GRPO learn %.2fx (pretrain ms/step includes start-up and evaluation, the same for both)"
      % (res["bf16"][0] / res["f32"][0], res["bf16"][1] / res["f32"][1]))
PY
