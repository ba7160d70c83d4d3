#!/usr/bin/env bash
# Issue 19, class 3: services own their address and their inputs (docs/security.md).
#  - A second `reward serve` / `rollout serve` on a port another one listens on started silently
#    (gRPC's SO_REUSEPORT) and clients were served by either: now it exits 1 naming the port, and
#    the first keeps serving. A taken port or `--listen localhost:-1` crashed both (exit 139);
#    `--listen 127.0.0.1:99999` listened on a random port: now exit 1 with the reason.
#  - Any local process could push weights to a rollout server: pushes need the job's token
#    ($GRPO_PUSH_TOKEN_FILE or --push-token-file, a file only its owner can read); a server
#    without one refuses them unless started with --allow-unauthenticated-push.
source "$(dirname "$0")/cli_test_lib.sh" "$@"
run() { "$@" >"$T/out" 2>"$T/err"; echo $? >"$T/rc"; }
rc() { cat "$T/rc"; }
err_has() { grep -qF -- "$1" "$T/err"; }
unset GRPO_PUSH_TOKEN_FILE
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT

new_token() { (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$1"); }

printf 'rules:\n  - {type: format, mode: lenient}\n' >rules.yaml
# A base model for the rollout servers: one pretraining step of the recipe.
SMALL=(--set pretrain.batch_size=8 --set rollout.prompts_per_step=2 --set rollout.group_size=2
       --set train.eval_size=2 --set train.eval_every=100 --set rollout.max_new_tokens=8)
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=base --set pretrain.steps=1 --set train.steps=0 --quiet \
  >/dev/null 2>base.err
BASE=$(ls -d "$T"/runs/base/checkpoints/pretrain-* 2>/dev/null | head -n1)
check "base model" '[ -n "$BASE" ] && [ -d "$BASE" ]' || cat base.err

# ---- the address: both services (the instance), each refusing a taken port and bad ports.
for role in reward rollout; do
  if [ $role = reward ]; then serve=(reward serve --rules rules.yaml); else
    serve=(rollout serve --model "$BASE" --kv-memory-mb 16 --allow-unauthenticated-push); fi
  "$GRPO" "${serve[@]}" --listen 127.0.0.1:0 2>"$role-1.err" &
  pid=$!; pids+=($pid)
  P=$(port_of "$role-1.err")
  check "$role serve on port 0 prints the port it picked" '[ -n "$P" ] && [ "$P" -gt 0 ]' || cat "$role-1.err"
  run timeout 60 "$GRPO" "${serve[@]}" --listen "127.0.0.1:$P"
  check "a second $role serve on port $P exits 1 (got $(rc))" '[ "$(rc)" -eq 1 ]' || cat err
  check "... saying the port is in use" 'err_has "cannot listen on 127.0.0.1:$P: port $P is already in use"' || cat err
  check "... and never says it listens" '! err_has "listening on"'
  check "the first $role server still serves" '"$GRPO" health "--$role" "127.0.0.1:$P" --timeout 10 >/dev/null 2>&1'
  check "the first $role server is still running" 'kill -0 $pid'
  # Issue instances (-1, 99999) and fresh variants (65536, no host, unbracketed IPv6).
  while read -r listen needle; do
    run timeout 60 "$GRPO" "${serve[@]}" --listen "$listen"
    check "$role serve --listen $listen exits 1, no crash (got $(rc))" '[ "$(rc)" -eq 1 ]' || cat err
    quoted="'$listen'"
    check "... naming the address: $needle" 'err_has "$quoted" && err_has "$needle"' || cat err
  done <<'CASES'
localhost:-1 the port must be a number in 0..65535
127.0.0.1:99999 port 99999 is out of range 0..65535
127.0.0.1:65536 port 65536 is out of range 0..65535
:50061 has no host
::1:50061 an IPv6 host goes in brackets
CASES
  kill -TERM $pid; wait $pid
done

# ---- weight pushes: the trainer's initial push to a rollout server in remote mode.
new_token job.token
new_token other.token
train_remote() {  # train_remote PORT NAME: one remote step against the rollout server on PORT
  run "$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name="$2" --set pretrain.steps=0 \
    --set model.path="$BASE" --set model.init=null --set train.steps=1 --quiet \
    --set "rollout.endpoints=[127.0.0.1:$1]"
}
start_rollout() {  # start_rollout LOG ARGS...: a rollout server in the background
  local log="$1"; shift
  "$GRPO" rollout serve --model "$BASE" --kv-memory-mb 16 --listen 127.0.0.1:0 "$@" >/dev/null 2>"$log" &
  pids+=($!)
}
GRPO_PUSH_TOKEN_FILE="$T/job.token" start_rollout tok.err
R=$(port_of tok.err)
check "rollout serve with the job's token file listens" '[ -n "$R" ]' || cat tok.err
check "... and says pushes need the token" 'grep -q "weight pushes need the job'"'"'s push token" tok.err'
check "... never printing it" '! grep -qF "$(cat job.token)" tok.err'
GRPO_PUSH_TOKEN_FILE="$T/other.token" train_remote "$R" wrong
check "a trainer with another job's token cannot push (got $(rc))" '[ "$(rc)" -ne 0 ] && err_has "wrong push token"' \
  || tail -5 err
train_remote "$R" missing
check "a trainer without a token cannot push (got $(rc))" '[ "$(rc)" -ne 0 ] && err_has "without a push token"' \
  || tail -5 err
GRPO_PUSH_TOKEN_FILE="$T/job.token" train_remote "$R" right
check "the trainer with the job's token trains a step (got $(rc))" '[ "$(rc)" -eq 0 ]' || tail -5 err

start_rollout none.err
N=$(port_of none.err)
check "rollout serve without a token says it refuses pushes" 'grep -q "weight pushes are refused" none.err'
GRPO_PUSH_TOKEN_FILE="$T/job.token" train_remote "$N" refused
check "a server without a token refuses the push (got $(rc))" \
  '[ "$(rc)" -ne 0 ] && err_has "takes no weight pushes" && err_has "--allow-unauthenticated-push"' || tail -5 err

# Fresh variants: the token file must be its owner's alone and hold a token; opt-out and token
# exclude each other.
cp job.token shared.token && chmod 644 shared.token
run timeout 60 "$GRPO" rollout serve --model "$BASE" --listen 127.0.0.1:0 --push-token-file shared.token
check "a token file others can read is refused (got $(rc))" '[ "$(rc)" -eq 1 ] && err_has "chmod 600 shared.token"'
(umask 077 && echo short >short.token)
run timeout 60 "$GRPO" rollout serve --model "$BASE" --listen 127.0.0.1:0 --push-token-file short.token
check "a token too short to be a secret is refused (got $(rc))" '[ "$(rc)" -eq 1 ] && err_has "16 to 1024 characters"'
GRPO_PUSH_TOKEN_FILE="$T/job.token" run timeout 60 "$GRPO" rollout serve --model "$BASE" --listen 127.0.0.1:0 \
  --allow-unauthenticated-push
check "--allow-unauthenticated-push with a token is refused (got $(rc))" '[ "$(rc)" -eq 1 ] && err_has "exclude each other"'
GRPO_PUSH_TOKEN_FILE="$T/missing.token" train_remote "$R" nofile
check "a trainer whose token file is missing fails naming it (got $(rc))" \
  '[ "$(rc)" -eq 1 ] && err_has "GRPO_PUSH_TOKEN_FILE" && err_has "missing.token"' || tail -5 err

if [ $fail -eq 0 ]; then echo "PASS"; fi
exit $fail
