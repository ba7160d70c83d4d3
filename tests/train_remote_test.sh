#!/usr/bin/env bash
# Remote mode of `grpo train` over loopback: two `grpo rollout serve` servers and two
# `grpo reward serve` replicas; one of each is killed (SIGKILL) mid-run. The run must finish with
# every step stored and logged (issue #8).
source "$(dirname "$0")/cli_test_lib.sh" "$@"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT

SMALL=(--set pretrain.batch_size=8 --set rollout.prompts_per_step=4 --set rollout.group_size=4
       --set train.eval_size=6 --set train.eval_every=4 --set rollout.max_new_tokens=16)

# A base model (a few pretraining steps) for the servers to load; the trainer pushes its own
# weights to them before the first step anyway.
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=base --set pretrain.steps=12 --set train.steps=0 --quiet > /dev/null 2> base.err
check "base run" '[ -d runs/base/checkpoints/pretrain-000012 ]' || cat base.err
BASE=runs/base/checkpoints/pretrain-000012
cat > rules.yaml <<'YAML'
rules:
  - {type: format, mode: lenient, weight: 1.0}
  - {type: math, extract: [answer_tag], weight: 1.0}
YAML

# The job's push token, read by the rollout servers and the trainer (docs/security.md).
(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > push.token)
export GRPO_PUSH_TOKEN_FILE="$T/push.token"

port_of() {  # waits for "listening on HOST:PORT" in $1, prints PORT
  for _ in $(seq 1 400); do
    p=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$1" | head -n1)
    if [ -n "$p" ]; then echo "$p"; return 0; fi
    sleep 0.05
  done
  return 1
}
for i in 1 2; do
  "$GRPO" rollout serve --model "$BASE" --listen 127.0.0.1:0 --kv-memory-mb 64 2> rollout$i.err &
  pids+=($!); eval "rollout_pid$i=$!"
  "$GRPO" reward serve --rules rules.yaml --listen 127.0.0.1:0 2> reward$i.err &
  pids+=($!); eval "reward_pid$i=$!"
done
R1=$(port_of rollout1.err); R2=$(port_of rollout2.err); W1=$(port_of reward1.err); W2=$(port_of reward2.err)
check "servers listening" '[ -n "$R1" ] && [ -n "$R2" ] && [ -n "$W1" ] && [ -n "$W2" ]'

"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=remote --set pretrain.steps=0 \
  --set model.path="$T/$BASE" --set model.init=null --set train.steps=8 \
  --set "rollout.endpoints=[127.0.0.1:$R1, 127.0.0.1:$R2]" \
  --set "reward.endpoints=[127.0.0.1:$W1, 127.0.0.1:$W2]" > train.out 2> train.err &
train_pid=$!
for _ in $(seq 1 1200); do grep -q "^step 2/" train.err 2>/dev/null && break; sleep 0.05; done
kill -9 "$rollout_pid1" "$reward_pid1"
wait $train_pid
rc=$?
check "remote run finishes after losing a rollout server and a reward replica" '[ $rc -eq 0 ]' || tail -20 train.err
check "the lost rollout server was routed around" 'grep "marked down" train.err | grep -q "127.0.0.1:$R1"'
check "every step is in metrics.jsonl" "/usr/bin/python3 -c \"
import json
rows = [json.loads(l) for l in open('runs/remote/metrics.jsonl')]
assert [r['step'] for r in rows] == list(range(9)), [r['step'] for r in rows]
assert all('reward_mean' in r for r in rows[1:])
\""
check "every step is in the store" '"$GRPO" inspect --store runs/remote/store --json 2>/dev/null | grep -q "\"num_steps\": *8"'

if [ $fail -eq 0 ]; then echo "PASS"; fi
exit $fail
