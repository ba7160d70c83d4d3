#!/usr/bin/env bash
# Synchronous vs one-step off-policy vs asynchronous training, side by side in one run: the nano
# R1-Zero recipe (embedded rollout, THREADS threads), the same pretraining and seed, with
# rollout.max_staleness 0, 1 and 2 (algorithm.is_correction token_tis in all three). Per run: the
# RL steps' wall time (sum of time/step), completion tokens per second of that wall time, the mean
# rollout and learner seconds per step, and the staleness the run logged. Not a test: run it by hand.
#   THREADS=2 NANO_STEPS=6 PRETRAIN_STEPS=100 bash bench/async_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; NANO_STEPS=${NANO_STEPS:-6}; PRETRAIN_STEPS=${PRETRAIN_STEPS:-100}
bazel build -c opt //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-async-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
printf "%-14s %3s %10s %10s %10s %10s %14s %14s\n" max_staleness thr rl_wall_s tok/s rollout_s learn_s staleness_mean staleness_max
for k in 0 1 2; do
  GRPO_NUM_THREADS=$THREADS bazel-bin/cli/grpo train recipes/r1zero-nano.yaml --set run.output_dir="$W/runs" \
    --set run.name=k$k --set pretrain.steps=$PRETRAIN_STEPS --set train.steps=$NANO_STEPS --set train.eval_size=0 \
    --set algorithm.is_correction=token_tis --set rollout.max_staleness=$k --quiet >/dev/null 2>"$W/k$k.err" ||
    { cat "$W/k$k.err"; exit 1; }
  /usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if r['step'] > 0]
tok = sum(r['response_len_mean'] * 16 * 8 for r in rows)  # prompts_per_step x group_size of the recipe
wall = sum(r['time/step'] for r in rows)
n = len(rows)
print('%-14s %3s %10.1f %10.0f %10.2f %10.2f %14.2f %14d' % (sys.argv[2], sys.argv[3], wall, tok / wall,
      sum(r['time/rollout'] for r in rows) / n, sum(r['time/learn'] for r in rows) / n,
      sum(r['staleness/mean'] for r in rows) / n, max(r['staleness/max'] for r in rows)))" \
    "$W/runs/k$k/metrics.jsonl" "$k" "$THREADS"
done
