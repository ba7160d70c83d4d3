#!/usr/bin/env bash
# rollout.batch_invariant (issue 20 item 4): over a short nano R1-Zero run (MLA + MoE) the
# rollout's logprob of every sampled token is the learner's recomputation bit for bit, so
# mismatch/max_abs_logprob is exactly 0 on every step: embedded (old logprobs from a pass of
# their own, optimizer.mini_batches 2) and with a remote rollout server started with
# --batch-invariant (old logprobs from the training forward). Without the mode the same metric
# shows the drift (> 0 on every step). A recipe that cannot hold the guarantee is refused.
source "$(dirname "$0")/cli_test_lib.sh" "$@"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT

SMALL=(--set pretrain.steps=40 --set pretrain.batch_size=16 --set rollout.prompts_per_step=4
       --set rollout.group_size=4 --set train.eval_size=2 --set rollout.max_new_tokens=24)

# mismatch/max_abs_logprob on every step 1..N: OP is "== 0" or "> 0".
check_mismatch() {  # RUN STEPS OP
  /usr/bin/python3 - "runs/$1/metrics.jsonl" "$2" "$3" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if r['step'] > 0]
assert [r['step'] for r in steps] == list(range(1, int(sys.argv[2]) + 1)), [r['step'] for r in rows]
for r in steps:
    mx, mean = r['mismatch/max_abs_logprob'], r['mismatch/mean_abs_logprob']
    ok = (mx == 0 and mean == 0) if sys.argv[3] == '== 0' else (mx > 0 and mean > 0)
    assert ok, (r['step'], mx, mean)
PY
}

"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=invariant --set train.steps=4 \
  --set rollout.batch_invariant=true --set optimizer.mini_batches=2 --quiet > /dev/null 2> invariant.err
check "embedded batch-invariant run exits 0" '[ $? -eq 0 ]' || tail -n 5 invariant.err
check "embedded: mismatch/max_abs_logprob == 0 on every step" 'check_mismatch invariant 4 "== 0"'

"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=drift --set train.steps=4 --quiet > /dev/null 2> drift.err
check "run without the mode exits 0" '[ $? -eq 0 ]' || tail -n 5 drift.err
check "without the mode: mismatch/max_abs_logprob > 0 on every step" 'check_mismatch drift 4 "> 0"'

# Remote: one rollout server in the mode; the trainer pushes its own weights to it first.
BASE=runs/drift/checkpoints/pretrain-000040
(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > push.token)
export GRPO_PUSH_TOKEN_FILE="$T/push.token"
"$GRPO" rollout serve --model "$BASE" --listen 127.0.0.1:0 --kv-memory-mb 64 --batch-invariant 2> rollout.err &
pids+=($!)
port=""
for _ in $(seq 1 400); do
  port=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' rollout.err | head -n1)
  [ -n "$port" ] && break
  sleep 0.05
done
check "rollout server listening" '[ -n "$port" ]' || cat rollout.err
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=remote --set pretrain.steps=0 \
  --set model.path="$T/$BASE" --set model.init=null --set train.steps=3 \
  --set rollout.batch_invariant=true --set "rollout.endpoints=[127.0.0.1:$port]" --quiet > /dev/null 2> remote.err
check "remote batch-invariant run exits 0" '[ $? -eq 0 ]' || tail -n 5 remote.err
check "remote: mismatch/max_abs_logprob == 0 on every step" 'check_mismatch remote 3 "== 0"'

"$GRPO" train "$RECIPE" --set rollout.batch_invariant=true --set rollout.serve_format=bf16 > /dev/null 2> bad.err
check "batch_invariant with bf16 serving refused, key named" 'grep -q "rollout.batch_invariant" bad.err && grep -q "serve_format: f32" bad.err'
"$GRPO" rollout serve --model "$BASE" --serve-format fp8 --batch-invariant > /dev/null 2> bad2.err
check "rollout serve --batch-invariant with fp8 refused" 'grep -q "batch-invariant needs --serve-format f32" bad2.err'

if [ $fail -eq 0 ]; then echo "PASS"; fi
exit $fail
