#!/usr/bin/env bash
# Synchronous vs one-step off-policy vs asynchronous training, side by side in one run (issue 20,
# item 3): the nano R1-Zero recipe from one shared pretrained base (PRETRAIN_STEPS, done once),
# then NANO_STEPS RL steps with rollout.max_staleness 0, 1 and 2 (algorithm.is_correction
# token_tis in all), on the embedded rollout and on two `grpo rollout serve` servers on this
# machine. The same binary and seed everywhere; rewards embedded. Per run: the RL steps' wall
# time (sum of time/step, evaluations excluded), completion tokens per second of it, the mean
# rollout and learner seconds per step, the staleness the run logged, the held-out accuracy
# (T = 1, EVAL_SIZE questions every EVAL_EVERY steps) at the end, and the wall time to the
# accuracy band: the RL wall time (evaluations excluded) up to the first evaluation with
# accuracy >= BAND. Not a test: run it by hand.
#   THREADS=2 NANO_STEPS=100 PRETRAIN_STEPS=1000 EVAL_EVERY=10 EVAL_SIZE=200 BAND=0.85 bash bench/async_bench.sh
# MODES picks runs (default "local-0 local-1 local-2 remote-0 remote-1 remote-2"). GRPO_BIN=PATH
# runs that binary instead of building `bazel build -c opt //cli:grpo`; the binary is copied
# first either way, so a build in this tree during the run does not change it.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; NANO_STEPS=${NANO_STEPS:-100}; PRETRAIN_STEPS=${PRETRAIN_STEPS:-1000}
EVAL_EVERY=${EVAL_EVERY:-10}; EVAL_SIZE=${EVAL_SIZE:-200}; BAND=${BAND:-0.85}
MODES=${MODES:-"local-0 local-1 local-2 remote-0 remote-1 remote-2"}
[ -n "${GRPO_BIN:-}" ] || bazel build -c opt //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-async-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
export GRPO_NUM_THREADS=$THREADS
GRPO="$W/grpo"
cp "${GRPO_BIN:-bazel-bin/cli/grpo}" "$GRPO"
RECIPE=recipes/r1zero-nano.yaml
# The CLI tests' helpers, for port_of (the wait for a server's port, sized for a busy machine):
# sourced with this run's binary and recipe, which it makes absolute; it works in $W and leaves
# the thread count (GRPO_NUM_THREADS above) alone.
export CLI_TEST_ALL_THREADS=1
TEST_TMPDIR="$W" source tests/cli_test_lib.sh "$GRPO" "$RECIPE"

"$GRPO" train $RECIPE --set run.output_dir="$W/runs" --set run.name=base --set pretrain.steps=$PRETRAIN_STEPS \
  --set train.steps=0 --set train.eval_size=0 --quiet >/dev/null 2>"$W/base.err" || { cat "$W/base.err"; exit 1; }
BASE=$(ls -d "$W"/runs/base/checkpoints/pretrain-* | tail -n 1)

start_servers() {  # two rollout servers on the base, the job's push token; sets ENDPOINTS
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$W/push.token")
  export GRPO_PUSH_TOKEN_FILE="$W/push.token"
  local ports=()
  for i in 1 2; do
    "$GRPO" rollout serve --model "$BASE" --listen 127.0.0.1:0 --kv-memory-mb 256 2>"$W/serve$i.err" &
    pids+=($!)
    ports+=("$(port_of "$W/serve$i.err")")
  done
  ENDPOINTS="[127.0.0.1:${ports[0]}, 127.0.0.1:${ports[1]}]"
}
stop_servers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}

printf "%-9s %3s %9s %9s %8s %9s %8s %10s %10s %9s %9s\n" mode thr rl_wall_s tok/s roll_s learn_s stale_mn \
  stale_max to_band_s band_step final_acc
for mode in $MODES; do
  k=${mode#*-}
  extra=()
  if [ "${mode%%-*}" = remote ]; then
    start_servers
    extra=(--set "rollout.endpoints=$ENDPOINTS")
  fi
  "$GRPO" train $RECIPE --set run.output_dir="$W/runs" --set run.name=$mode --set model.init=null \
    --set model.path="$BASE" --set pretrain.steps=0 --set train.steps=$NANO_STEPS --set train.eval_every=$EVAL_EVERY \
    --set train.eval_size=$EVAL_SIZE --set algorithm.is_correction=token_tis --set rollout.max_staleness=$k \
    "${extra[@]}" --quiet >/dev/null 2>"$W/$mode.err" || { cat "$W/$mode.err"; exit 1; }
  stop_servers
  /usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
band = float(sys.argv[4])
steps = [r for r in rows if r['step'] > 0]
tok = sum(r['response_len_mean'] * 16 * 8 for r in steps)  # prompts_per_step x group_size of the recipe
wall, to_band, band_step = 0.0, None, None
for r in steps:
    wall += r['time/step'] - r.get('time/eval', 0.0)
    if to_band is None and r.get('eval/accuracy', -1) >= band: to_band, band_step = wall, r['step']
n = len(steps)
final = [r['eval/accuracy'] for r in rows if 'eval/accuracy' in r][-1]
print('%-9s %3s %9.1f %9.0f %8.3f %9.3f %8.2f %10d %10s %9s %9.3f' % (sys.argv[2], sys.argv[3], wall, tok / wall,
      sum(r['time/rollout'] for r in steps) / n, sum(r['time/learn'] for r in steps) / n,
      sum(r['staleness/mean'] for r in steps) / n, max(r['staleness/max'] for r in steps),
      '-' if to_band is None else '%.1f' % to_band, '-' if band_step is None else band_step, final))" \
    "$W/runs/$mode/metrics.jsonl" "$mode" "$THREADS" "$BAND"
done
