#!/bin/bash
# grpo role launcher: `srun ... bash launch.sh ROLE` runs one task of ROLE (learner, rollout or
# reward) inside the job that `grpo submit --cluster slurm` rendered (deploy/README.md).
#
# Settings come from the environment the batch script exports (srun passes it on):
#   GRPO_BIN GRPO_JOB_DIR GRPO_RUN_DIR GRPO_RECIPE GRPO_ROLLOUT_TASKS GRPO_REWARD_TASKS GRPO_ROLLOUT_MODEL
#   GRPO_ROLLOUT_TOKENIZER GRPO_ROLLOUT_ARGS GRPO_BACKEND GRPO_REWARD_RULES GRPO_REWARD_ARGS
#   GRPO_SERVICE_RESTARTS GRPO_RENDEZVOUS_TIMEOUT GRPO_HEALTH_TIMEOUT GRPO_TRAIN_ARGS
#   GRPO_PUSH_TOKEN_FILE (the attempt's weight-push token, read by `grpo rollout serve` and
#   `grpo train` themselves; docs/security.md)
#
# Services (rollout, reward): task i (SLURM_PROCID) runs `grpo <role> serve` on a port the kernel
# picks, appends its output to logs/<role>-<i>.log, and once the server prints
# "listening on HOST:PORT" writes rendezvous/<role>-<i>.json = {"role","index","host","port",
# "pid","attempt","job"} (written to a temporary file and renamed, so readers never see half a
# file). A server that dies is restarted on the same port (so the trainer's endpoint stays
# valid) up to GRPO_SERVICE_RESTARTS times; SIGTERM stops it (the server drains) and the task
# exits 0. The batch script stops the services only after the learner has exited, so a trainer
# finishing its last step on SIGTERM still has them.
# Learner: waits up to GRPO_RENDEZVOUS_TIMEOUT seconds for every service's rendezvous file and
# checks each with `grpo health` (GRPO_HEALTH_TIMEOUT seconds), naming the missing role on
# failure (exit 3); then runs `grpo train` in remote mode, with --resume when the run has a
# checkpoint. On SIGTERM (Slurm signals every process of the step) the trainer finishes its
# step, checkpoints and exits 0, and so does the task.
set -uo pipefail

ROLE="${1:?usage: launch.sh learner|rollout|reward}"
IDX="${SLURM_PROCID:-0}"
: "${GRPO_BIN:?}" "${GRPO_JOB_DIR:?}"
LOGS="$GRPO_JOB_DIR/logs"
RDV="$GRPO_JOB_DIR/rendezvous"
mkdir -p "$LOGS" "$RDV"
HOST="${GRPO_HOST:-$(hostname)}"
# Kernel threads per process: the CPUs Slurm gave this task, unless the recipe's env says.
if [ -z "${GRPO_NUM_THREADS:-}" ] && [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
  export GRPO_NUM_THREADS="$SLURM_CPUS_PER_TASK"
fi

child=0
stopping=0
on_term() {
  stopping=1
  # Inside a Slurm step, slurmstepd signals every process of the step, the child included; a
  # second SIGTERM could reach a server while it drains, so pass it on only outside Slurm.
  if [ "$child" -gt 0 ] && [ -z "${SLURM_STEP_ID:-}" ]; then kill -TERM "$child" 2>/dev/null; fi
}
trap on_term TERM INT

log() { echo "[launch $(date -u +%H:%M:%S)] $*" >> "$LOG"; }

# Waits for $child and returns its exit status. A trapped signal interrupts `wait` (status
# > 128 while the child still runs): wait again; bash keeps the status of a child that exited
# meanwhile, so the last `wait` returns the child's own status.
wait_child() {
  local rc again
  wait "$child"; rc=$?
  while [ "$rc" -gt 128 ]; do
    wait "$child" 2>/dev/null; again=$?
    [ "$again" -eq 127 ] && break  # already reaped: rc was the child's own status
    rc=$again
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  return "$rc"
}

rendezvous_port() {  # the port in an existing rendezvous file, else 0
  local f="$1"
  if [ -f "$f" ]; then sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$f"; else echo 0; fi
}

run_service() {
  local name="$ROLE-$IDX" attempt=0 rc start line addr port
  LOG="$LOGS/$name.log"
  local file="$RDV/$name.json"
  while :; do
    port=$(rendezvous_port "$file")
    local cmd
    if [ "$ROLE" = rollout ]; then
      cmd=("$GRPO_BIN" rollout serve --model "$GRPO_ROLLOUT_MODEL" --listen "0.0.0.0:$port"
           --backend "${GRPO_BACKEND:-cpu}")
      [ -n "${GRPO_ROLLOUT_TOKENIZER:-}" ] && cmd+=(--tokenizer "$GRPO_ROLLOUT_TOKENIZER")
      # shellcheck disable=SC2206
      cmd+=(${GRPO_ROLLOUT_ARGS:-})
    else
      cmd=("$GRPO_BIN" reward serve --rules "$GRPO_REWARD_RULES" --listen "0.0.0.0:$port")
      # shellcheck disable=SC2206
      cmd+=(${GRPO_REWARD_ARGS:-})
    fi
    touch "$LOG"
    start=$(stat -c %s "$LOG")
    log "$name attempt $attempt on $HOST (job ${SLURM_JOB_ID:-?}): ${cmd[*]}"
    "${cmd[@]}" >> "$LOG" 2>&1 &
    child=$!
    # The server prints "grpo <role> serve: listening on HOST:PORT" once it accepts calls.
    addr=""
    while [ -z "$addr" ] && kill -0 "$child" 2>/dev/null && [ "$stopping" = 0 ]; do
      line=$(tail -c +"$((start + 1))" "$LOG" | grep -m1 -o 'listening on [^ ]*:[0-9]*')
      if [ -n "$line" ]; then addr="${line#listening on }"; else sleep 0.2; fi
    done
    if [ -n "$addr" ]; then
      port="${addr##*:}"
      printf '{"role": "%s", "index": %d, "host": "%s", "port": %d, "pid": %d, "attempt": %d, "job": "%s"}\n' \
        "$ROLE" "$IDX" "$HOST" "$port" "$child" "$attempt" "${SLURM_JOB_ID:-}" > "$file.tmp.$$"
      mv -f "$file.tmp.$$" "$file"
      log "$name serving at $HOST:$port"
    fi
    wait_child; rc=$?
    if [ "$stopping" = 1 ]; then log "$name stopped (exit $rc)"; exit 0; fi
    attempt=$((attempt + 1))
    if [ "$attempt" -gt "${GRPO_SERVICE_RESTARTS:-5}" ]; then
      log "$name exited $rc; giving up after ${GRPO_SERVICE_RESTARTS:-5} restarts"
      exit 1
    fi
    log "$name exited $rc; restarting ($attempt of ${GRPO_SERVICE_RESTARTS:-5})"
    sleep 1
  done
}

# Prints host:port of every expected service of $1 (count $2) as a YAML flow list, after its
# rendezvous file appears and `grpo health` passes. Fails naming the first missing one.
gather() {
  local role="$1" n="$2" deadline="$3" i f port list="" left
  for ((i = 0; i < n; i++)); do
    f="$RDV/$role-$i.json"
    while [ ! -s "$f" ]; do
      [ "$stopping" = 1 ] && return 2
      if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "rendezvous: role $role task $i did not come up within ${GRPO_RENDEZVOUS_TIMEOUT:-600} s" \
             "(no $f; see $LOGS/$role-$i.log)" >&2
        return 1
      fi
      sleep 0.5
    done
    local host
    host=$(sed -n 's/.*"host": *"\([^"]*\)".*/\1/p' "$f")
    port=$(sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$f")
    left=$((deadline - $(date +%s)))
    [ "$left" -lt "${GRPO_HEALTH_TIMEOUT:-60}" ] && left="${GRPO_HEALTH_TIMEOUT:-60}"
    if ! "$GRPO_BIN" health "--$role" "$host:$port" --timeout "$left" >&2; then
      echo "rendezvous: role $role task $i at $host:$port is not serving (see $LOGS/$role-$i.log)" >&2
      return 1
    fi
    list="$list${list:+,}$host:$port"
  done
  echo "[$list]"
}

stopped_or_missing() {
  if [ "$stopping" = 1 ]; then log "learner stopped by SIGTERM while waiting for the services"; exit 0; fi
  log "learner: $1 servers missing; not starting the trainer"
  exit 3
}

run_learner() {
  # Several learner tasks are data-parallel ranks of one trainer (docs/scale_out.md): rank 0 runs
  # the run and logs to learner.log, rank R to learner-R.log; they meet in rendezvous/learner-ranks.
  local rank="${SLURM_PROCID:-0}" ranks="${SLURM_STEP_NUM_TASKS:-${SLURM_NTASKS:-1}}"
  LOG="$LOGS/learner.log"
  if [ "$ranks" -gt 1 ]; then
    export GRPO_RANK="$rank" GRPO_WORLD_SIZE="$ranks" GRPO_RENDEZVOUS_DIR="$RDV/learner-ranks"
    export GRPO_COLLECTIVE_HOST="${GRPO_COLLECTIVE_HOST:-$HOST}"
    [ "$rank" -gt 0 ] && LOG="$LOGS/learner-$rank.log"
  fi
  touch "$LOG"
  local deadline=$(( $(date +%s) + ${GRPO_RENDEZVOUS_TIMEOUT:-600} )) sets=() eps
  if [ "${GRPO_ROLLOUT_TASKS:-0}" -gt 0 ]; then
    eps=$(gather rollout "$GRPO_ROLLOUT_TASKS" "$deadline" 2>> "$LOG") || stopped_or_missing rollout
    sets+=(--set "rollout.endpoints=$eps")
  fi
  if [ "${GRPO_REWARD_TASKS:-0}" -gt 0 ]; then
    eps=$(gather reward "$GRPO_REWARD_TASKS" "$deadline" 2>> "$LOG") || stopped_or_missing reward
    sets+=(--set "reward.endpoints=$eps")
  fi
  [ "$stopping" = 1 ] && exit 0
  local run_dir mode=()
  run_dir="$GRPO_RUN_DIR"
  if [ -s "$run_dir/checkpoints/latest" ]; then
    mode=(--resume)
  elif [ -e "$run_dir" ]; then
    mode=(--overwrite)  # an earlier attempt died before its first checkpoint
  fi
  local cmd=("$GRPO_BIN" train "$GRPO_RECIPE" --set "run.output_dir=$GRPO_JOB_DIR" "${sets[@]}" "${mode[@]}")
  # shellcheck disable=SC2206
  cmd+=(${GRPO_TRAIN_ARGS:-})
  log "learner rank $rank of $ranks on $HOST (job ${SLURM_JOB_ID:-?}, restart ${SLURM_RESTART_COUNT:-0}): ${cmd[*]}"
  "${cmd[@]}" >> "$LOG" 2>&1 &
  child=$!
  wait_child; local rc=$?
  if [ "$stopping" = 1 ]; then
    # Stopped by SIGTERM (grpo cancel, scancel, end of the time limit): not a failure to requeue.
    log "learner stopped by SIGTERM (trainer exit $rc); resume with the same job directory"
    exit 0
  fi
  log "learner exited $rc"
  exit "$rc"
}

case "$ROLE" in
  learner) run_learner ;;
  rollout | reward) run_service ;;
  *) echo "launch.sh: unknown role '$ROLE' (learner, rollout or reward)" >&2; exit 2 ;;
esac
