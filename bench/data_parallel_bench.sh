#!/usr/bin/env bash
# Data-parallel learner step time, side by side in one run: the same recipe, seed and steps with
# 1 rank x 2 threads (GRPO_NUM_THREADS=2) and 2 ranks x 1 thread (--nproc 2, Gloo on loopback),
# for the nano R1-Zero model and a ~20M-parameter variant of it (hidden 384, 6 layers). Per run:
# the mean learner seconds per RL step (time/learn: forward, backward, gradient reduction and
# the AdamW step; rank 0's view) and the mean whole-step seconds (time/step, which includes rank
# 0's embedded rollout: with 2 ranks it generates with 1 thread). The first RL step is left out
# (warm-up). Not a test: run it by hand, on an otherwise idle machine if the numbers are to mean
# anything; it prints the load average before and after. The third layout, 2rank-x-1thr-sync,
# is 2 ranks with the gradient reduction after the backward (learner.overlap_grad_reduce=false)
# instead of overlapped with it (the default; learner.bucket_mb sets the buckets, BUCKET_MB here).
# Traffic and memory, per run with ranks: sent_MiB/step is the mean of metrics' comm/sent_mib
# (what rank 0 sent during the update, as the collective counts it: ZeRO-1's bucketed
# reduce-scatter and all-gather plus the step's groups and token gathers); old_MiB/step adds what
# the earlier scheme sent on top (its reduce-scatter was a ring all-reduce: another (N-1)/N of the
# f32 gradients per optimizer step; OPT_STEPS optimizer steps per RL step, the recipe's
# mini_batches x epochs, default 1); staging_MiB is rank 0's host staging (its start-of-RL line).
# 4rank-x-1thr-mem (not in the default LAYOUTS) adds 4 ranks for the traffic and memory columns.
#   STEPS=5 bash bench/data_parallel_bench.sh
#   MODELS=mid LAYOUTS="2rank-x-1thr 2rank-x-1thr-sync" STEPS=3 bash bench/data_parallel_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-5}
MODELS=${MODELS:-"nano mid"}
LAYOUTS=${LAYOUTS:-"1rank-x-2thr 2rank-x-1thr 2rank-x-1thr-sync"}
BUCKET_MB=${BUCKET_MB:-25}
OPT_STEPS=${OPT_STEPS:-1}
GRPO=${GRPO:-bazel-bin/cli/grpo}
[ -x "$GRPO" ] || bazel build //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-dp-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
COMMON=(--set run.output_dir="$W/runs" --set pretrain.steps=0 --set train.steps="$STEPS" --set train.eval_size=0
        --set train.eval_every=0 --set train.checkpoint_every=0 --set learner.bucket_mb="$BUCKET_MB")
MID=(--set model.init.config.hidden_size=384 --set model.init.config.intermediate_size=1536
     --set model.init.config.moe_intermediate_size=384 --set model.init.config.num_hidden_layers=6)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
printf "%-6s %-18s %12s %12s %8s %14s %13s %12s\n" model layout learn_s/step step_s/step params sent_MiB/step \
  old_MiB/step staging_MiB
run() {  # run MODEL LAYOUT [args]...
  local model="$1" layout="$2" ranks="$3"; shift 3
  local name="$model-$layout"
  "$@" recipes/r1zero-nano.yaml "${COMMON[@]}" "${EXTRA[@]}" --set run.name="$name" $([ "$model" = mid ] && echo "${MID[@]}") \
    > "$W/$name.out" 2> "$W/$name.err" || { tail -5 "$W/$name.err"; exit 1; }
  local staging
  staging=$(sed -n 's/.*host staging: \([0-9.]*\) MiB.*/\1/p' "$W/$name.err" | head -1)
  local params
  params=$(/usr/bin/python3 -c "
import json, struct, sys
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n))
total = 0
for k, v in h.items():
    if k == '__metadata__': continue
    c = 1
    for d in v['shape']: c *= d
    total += c
print(total)" "$W/runs/$name/checkpoints/$(cat "$W/runs/$name/checkpoints/latest")/model.safetensors")
  /usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if r['step'] > 1]
n, params, ranks, opt_steps = len(rows), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
sent = old = staging = '-'
if ranks > 1:
    mib = sum(r['comm/sent_mib'] for r in rows) / n
    sent, old = '%.2f' % mib, '%.2f' % (mib + opt_steps * (ranks - 1) / ranks * 4 * params / 2**20)
    staging = sys.argv[7]
print('%-6s %-18s %12.3f %12.3f %8s %14s %13s %12s' % (sys.argv[2], sys.argv[3], sum(r['time/learn'] for r in rows) / n,
      sum(r['time/step'] for r in rows) / n, '%.1fM' % (params / 1e6), sent, old, staging))" \
    "$W/runs/$name/metrics.jsonl" "$model" "$layout" "$params" "$ranks" "$OPT_STEPS" "${staging:--}"
}
for model in $MODELS; do
  for layout in $LAYOUTS; do
    EXTRA=()
    case "$layout" in
      1rank-x-2thr) run "$model" "$layout" 1 env GRPO_NUM_THREADS=2 "$GRPO" train ;;
      2rank-x-1thr) run "$model" "$layout" 2 env GRPO_NUM_THREADS=1 "$GRPO" train --nproc 2 ;;
      2rank-x-1thr-sync) EXTRA=(--set learner.overlap_grad_reduce=false)
                         run "$model" "$layout" 2 env GRPO_NUM_THREADS=1 "$GRPO" train --nproc 2 ;;
      4rank-x-1thr-mem) run "$model" "$layout" 4 env GRPO_NUM_THREADS=1 "$GRPO" train --nproc 4 ;;
      *) echo "unknown layout $layout" >&2; exit 2 ;;
    esac
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
