#!/usr/bin/env bash
# `grpo submit --cluster slurm` on a real single-node Slurm cluster on loopback (Debian
# slurm-wlm + munge, started here with its own configuration, ports and state directory, and
# stopped at the end even on failure). Needs root. Scenarios, each on the nano R1-Zero recipe
# shrunk to finish in well under a minute, with 2 rollout tasks and 1 reward task:
#   1. a whole run: store and metrics complete, one log per role, every process gone; one
#      rollout server is SIGKILLed mid-run: it is restarted on its port and the run finishes;
#      `grpo jobs --json` and `grpo logs --role` show the job while it runs;
#   2. requeue: the trainer is SIGKILLed after a checkpoint; the job requeues itself and the
#      trainer resumes from the checkpoint: every step once in metrics.jsonl and the store;
#   3. `grpo cancel`: every process of the job gone, the store and the last checkpoint intact;
#   4. `grpo submit --dry-run` of deploy/examples/*.yaml matches deploy/testdata/*.sbatch;
#   5. cluster.learner.tasks: 2: two data-parallel learner ranks, one per task; rank 1 is
#      SIGKILLed after a checkpoint, rank 0 fails naming it, the job requeues and both ranks
#      resume from the checkpoint and finish;
#   6. a recipe without a cluster: section: one node, the learner embedding every role.
# Usage: slurm_cluster_test.sh GRPO RECIPE DEPLOY_DIR
set -u
GRPO_IN="$1"
RECIPE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
DEPLOY="$(cd "$3" && pwd)"
HERE="$(cd "$(dirname "$0")" && pwd)"
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then echo "FAIL: this test starts slurmctld/slurmd/munged and needs root"; exit 1; fi
for b in munged slurmctld slurmd sbatch squeue scancel scontrol; do
  command -v "$b" >/dev/null || { echo "FAIL: $b not found (tools/setup.sh installs slurm-wlm and munge)"; exit 1; }
done

# Short paths: munge's socket path must fit in sockaddr_un (TEST_TMPDIR under Bazel does not).
ROOT=$(mktemp -d /tmp/grpo-slurm.XXXXXX)
export GRPO_TEST_JOBS_ROOT="$ROOT"
# shellcheck source=slurm_cluster_lib.sh
source "$HERE/slurm_cluster_lib.sh"
cleanup() {
  slurm_stop
  if [ "${fail:-1}" -ne 0 ]; then
    # Keep the evidence: the job directories' logs, under Bazel's undeclared outputs.
    local keep="${TEST_UNDECLARED_OUTPUTS_DIR:-/tmp}/grpo-slurm-logs.$$"
    mkdir -p "$keep"
    (cd "$ROOT" && find jobs slurm/log -name "*.log" -o -name "*.out" -o -name "metrics.jsonl" -o -name "latest" 2>/dev/null |
       while read -r f; do mkdir -p "$keep/$(dirname "$f")"; cp "$f" "$keep/$f"; done)
    echo "logs kept in $keep"
  fi
  rm -rf "$ROOT"
}
trap cleanup EXIT
trap 'exit 1' TERM INT

fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

cp "$GRPO_IN" "$ROOT/grpo"
GRPO="$ROOT/grpo"
cd "$ROOT" || exit 1

# ---- 4. golden scripts (no cluster needed)
for ex in "$DEPLOY"/examples/*.yaml; do
  name=$(basename "$ex" .yaml)
  "$GRPO" submit --cluster slurm "$ex" --dry-run > "dry-$name.sbatch" 2> "dry-$name.err"
  check "dry-run of $name matches deploy/testdata/$name.sbatch" \
    "cmp -s dry-$name.sbatch $DEPLOY/testdata/$name.sbatch || { diff $DEPLOY/testdata/$name.sbatch dry-$name.sbatch | head -20; false; }"
done
check "dry-run writes nothing" '[ ! -e /shared ] && [ ! -e /lustre ]'

slurm_start "$ROOT/slurm" || { echo "FAIL: could not start the loopback Slurm cluster"; exit 1; }
echo "slurm up: $(sinfo -h -N -o '%N %T %c CPUs')"

SMALL=(--set pretrain.steps=30 --set pretrain.batch_size=8 --set rollout.prompts_per_step=4
       --set rollout.group_size=4 --set train.eval_size=6 --set train.eval_every=5
       --set rollout.max_new_tokens=16 --set train.checkpoint_every=2
       --set cluster.colocate=true --set cluster.cpu_bind=none --set "cluster.output_dir=$ROOT/jobs"
       --set "cluster.grpo=$GRPO" --set cluster.rollout.tasks=2 --set cluster.reward.tasks=1
       --set "cluster.rollout.args=--kv-memory-mb 16 --grace-seconds 5"
       --set cluster.rendezvous_timeout=180 --set cluster.env.GRPO_NUM_THREADS=1)

submit() {  # submit NAME STEPS [more --set]...; prints the job id
  local name="$1" steps="$2"; shift 2
  "$GRPO" submit --cluster slurm "$RECIPE" "${SMALL[@]}" --set "run.name=$name" --set "train.steps=$steps" "$@" \
    2> "submit-$name.err" | tail -1
}
job_state() { squeue -h -j "$1" -o %T 2>/dev/null; }
wait_job() {  # wait_job JOB SECONDS: until squeue no longer lists it
  local i
  for i in $(seq 1 "$2"); do
    [ -z "$(job_state "$1")" ] && return 0
    sleep 1
  done
  echo "job $1 still $(job_state "$1") after $2 s"; return 1
}
wait_for() {  # wait_for SECONDS CONDITION
  local i
  for i in $(seq 1 $(($1 * 5))); do eval "$2" && return 0; sleep 0.2; done
  return 1
}
metric_steps() { /usr/bin/python3 -c "import json,sys; print(' '.join(str(json.loads(l)['step']) for l in open(sys.argv[1])))" "$1" 2>/dev/null; }
store_steps() { "$GRPO" inspect --store "$1" --json 2>/dev/null | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['runs'][0]['num_steps'])" 2>/dev/null; }
job_procs() { pgrep -f "$ROOT/(grpo|jobs)" | grep -v "^$$\$" | tr '\n' ' '; }
seq_line() { seq -s ' ' 0 "$1"; }

# ---- 1. a whole run, with a rollout server killed mid-run
STEPS1=80
J1=$(submit whole "$STEPS1")
check "submit prints the job id as its last line" '[[ "$J1" =~ ^[0-9]+$ ]]' || cat submit-whole.err
D1="$ROOT/jobs/whole"
check "the job's script was written" '[ -s $D1/cluster/job.sbatch ] && [ -s $D1/cluster/launch.sh ]'
wait_for 60 '[ "$(job_state $J1)" = RUNNING ]'
"$GRPO" jobs --json > jobs.json 2> jobs.err
check "grpo jobs --json lists the running job with its directory" \
  "/usr/bin/python3 -c \"import json; j=[r for r in json.load(open('jobs.json')) if r['job_id']=='$J1']; assert j and j[0]['name']=='grpo-whole' and j[0]['job_dir']=='$D1', j\""
check "rendezvous files appear for rollout-0, rollout-1, reward-0" \
  "wait_for 120 '[ -s $D1/rendezvous/rollout-0.json ] && [ -s $D1/rendezvous/rollout-1.json ] && [ -s $D1/rendezvous/reward-0.json ]'"
check "the trainer reaches step 3" "wait_for 180 '[ \"\$(metric_steps $D1/whole/metrics.jsonl | wc -w)\" -ge 4 ]'"
victim=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$D1/rendezvous/rollout-1.json")
port1=$(sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$D1/rendezvous/rollout-1.json")
check "rollout-1's pid is a grpo rollout server" "grep -q 'rollout' /proc/$victim/cmdline 2>/dev/null"
kill -KILL "$victim" 2>/dev/null
echo "killed rollout-1 (pid $victim) at step $(metric_steps $D1/whole/metrics.jsonl | wc -w)"
check "rollout-1 is restarted on the same port" \
  "wait_for 90 'grep -q \"attempt\\\": 1\" $D1/rendezvous/rollout-1.json 2>/dev/null' && grep -q '\"port\": $port1' $D1/rendezvous/rollout-1.json"
"$GRPO" logs "$J1" --role rollout > logs-rollout.txt 2>&1
check "grpo logs --role rollout shows both rollout logs and the restart" \
  'grep -q "==> .*rollout-0.log" logs-rollout.txt && grep -q "==> .*rollout-1.log" logs-rollout.txt && grep -q "restarting" logs-rollout.txt && ! grep -q "learner.log" logs-rollout.txt'
check "job 1 finishes" "wait_job $J1 300"
check "metrics.jsonl has every step once" "[ \"\$(metric_steps $D1/whole/metrics.jsonl)\" = \"$(seq_line $STEPS1)\" ]"
check "the store holds every step" "[ \"\$(store_steps $D1/whole/store)\" = $STEPS1 ]"
check "the last checkpoint is written" "[ \"\$(cat $D1/whole/checkpoints/latest 2>/dev/null)\" = rl-$(printf %06d $STEPS1) ]"
for f in learner.log rollout-0.log rollout-1.log reward-0.log "job-$J1.out"; do
  check "log $f exists" "[ -s $D1/logs/$f ]"
done
check "the trainer ran in remote mode against the rendezvous endpoints" \
  "grep -q 'rollout.endpoints=\\[.*:[0-9]*,.*:[0-9]*\\]' $D1/logs/learner.log && grep -q 'reward.endpoints=\\[.*:[0-9]*\\]' $D1/logs/learner.log"
check "services stopped cleanly at the end" \
  "grep -q 'rollout-0 stopped (exit 0)' $D1/logs/rollout-0.log && grep -q 'reward-0 stopped (exit 0)' $D1/logs/reward-0.log"
check "no process of job 1 is left" "wait_for 30 '[ -z \"\$(job_procs)\" ]' || { ps -ef | grep $ROOT | grep -v grep; false; }"

# ---- 2. the learner dies: the job requeues and resumes from the checkpoint
STEPS2=40
J2=$(submit requeue "$STEPS2")
D2="$ROOT/jobs/requeue"
check "job 2 writes its first RL checkpoint" \
  "wait_for 240 'grep -q \"^rl-0000[0-2]\" $D2/requeue/checkpoints/latest 2>/dev/null'"
tpid=$(pgrep -f "$GRPO train $D2/cluster/recipe.yaml" | head -1)
check "found the trainer process" '[ -n "$tpid" ]'
kill -KILL "$tpid" 2>/dev/null
echo "killed the trainer (pid $tpid) after checkpoint $(cat "$D2/requeue/checkpoints/latest")"
check "job 2's batch script requeues it" "wait_for 60 'grep -q requeueing $D2/logs/job-$J2.out'"
# Slurm holds a requeued job back until its credential expires (cred_expire, 10 s here).
check "job 2 runs again and finishes" \
  "wait_for 120 'grep -q \"^grpo job $J2 attempt 1 \" $D2/logs/job-$J2.out' && wait_job $J2 300"
check "the second attempt resumed from the checkpoint" \
  "grep -q 'restart 1).*--resume' $D2/logs/learner.log"
check "metrics.jsonl has every step once after the resume" "[ \"\$(metric_steps $D2/requeue/metrics.jsonl)\" = \"$(seq_line $STEPS2)\" ]"
check "the store holds every step once" "[ \"\$(store_steps $D2/requeue/store)\" = $STEPS2 ]"
check "no process of job 2 is left" "wait_for 30 '[ -z \"\$(job_procs)\" ]'"

# ---- 3. grpo cancel: every process gone, nothing corrupted
J3=$(submit cancel 400)
D3="$ROOT/jobs/cancel"
check "job 3 runs RL steps" "wait_for 240 '[ \"\$(metric_steps $D3/cancel/metrics.jsonl | wc -w)\" -ge 3 ]'"
"$GRPO" cancel "$J3" --grace 60 > cancel.out 2> cancel.err
check "grpo cancel succeeds" "grep -q 'job $J3 cancelled' cancel.out" || cat cancel.err
check "job 3 is gone" "wait_job $J3 60"
check "no process of job 3 is left" "wait_for 30 '[ -z \"\$(job_procs)\" ]' || { ps -ef | grep $ROOT | grep -v grep; false; }"
check "the trainer checkpointed on SIGTERM" "grep -qE 'stopped after (rl |pretrain )?step [0-9]+ with a checkpoint' $D3/logs/learner.log"
last=$(cat "$D3/cancel/checkpoints/latest" 2>/dev/null)
check "the last checkpoint loads" \
  "printf '{\"tokens\":[81,58,49]}\n' > in.jsonl && '$GRPO' logprobs --model $D3/cancel/checkpoints/$last --input in.jsonl --output lp.jsonl 2>/dev/null"
n3=$(store_steps "$D3/cancel/store")
check "the store opens and holds the steps before the stop" "[ -n \"$n3\" ] && [ \"$n3\" -ge 2 ]"
check "the job was not requeued" "! grep -q 'attempt 1' $D3/logs/job-$J3.out"

# ---- 5. two learner ranks (cluster.learner.tasks: 2), data-parallel over Gloo, one rank per
# task; rank 1 is SIGKILLed after a checkpoint: rank 0 fails naming it, the job requeues and both
# ranks resume from the checkpoint
STEPS5=8
J5=$(submit ranks "$STEPS5" --set cluster.learner.tasks=2)
D5="$ROOT/jobs/ranks"
check "job 5 writes its first RL checkpoint" \
  "wait_for 240 'grep -q \"^rl-0000[0-3]\" $D5/ranks/checkpoints/latest 2>/dev/null'"
rank1=""
for pid in $(pgrep -f "$GRPO train $D5/cluster/recipe.yaml"); do
  tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx GRPO_RANK=1 && rank1=$pid
done
check "found learner rank 1" '[ -n "$rank1" ]'
kill -KILL "$rank1" 2>/dev/null
echo "killed learner rank 1 (pid $rank1) after checkpoint $(cat "$D5/ranks/checkpoints/latest")"
check "job 5's batch script requeues it" "wait_for 90 'grep -q requeueing $D5/logs/job-$J5.out'"
check "rank 0 failed naming rank 1" "grep -q 'peer rank 1 is gone' $D5/logs/learner.log"
check "job 5 runs again and finishes" \
  "wait_for 120 'grep -q \"^grpo job $J5 attempt 1 \" $D5/logs/job-$J5.out' && wait_job $J5 400"
check "both ranks of the second attempt resumed" \
  "grep -q 'learner rank 0 of 2 .*restart 1).*--resume' $D5/logs/learner.log && grep -q 'learner rank 1 of 2 .*restart 1).*--resume' $D5/logs/learner-1.log"
check "metrics.jsonl has every step once (rank 0 alone writes)" \
  "[ \"\$(metric_steps $D5/ranks/metrics.jsonl)\" = \"$(seq_line $STEPS5)\" ]"
check "the last checkpoint has one optimizer shard per rank" \
  "[ \$(ls $D5/ranks/checkpoints/rl-$(printf %06d $STEPS5)/optimizer-shard-*-of-00002.safetensors | wc -l) -eq 2 ]"
check "learner rank 1 exited 0 in the end" "tail -1 $D5/logs/learner-1.log | grep -q 'learner exited 0'" || tail -5 "$D5/logs/learner-1.log"
check "no process of job 5 is left" "wait_for 30 '[ -z \"\$(job_procs)\" ]' || { ps -ef | grep $ROOT | grep -v grep; false; }"

# ---- 6. a recipe without a cluster: section: one node, the learner embeds every role
"$GRPO" submit --cluster slurm "$RECIPE" --set pretrain.steps=30 --set rollout.prompts_per_step=4 \
  --set rollout.group_size=4 --set rollout.max_new_tokens=16 --set train.eval_size=4 --set train.steps=2 \
  --set run.name=bare --set "run.output_dir=$ROOT/jobs" 2> submit-bare.err > submit-bare.out
J6=$(tail -1 submit-bare.out)
D6="$ROOT/jobs/bare"
check "submit without a cluster: section prints a job id" '[[ "$J6" =~ ^[0-9]+$ ]]' || cat submit-bare.err
check "job 6 finishes" "wait_job $J6 300"
check "its trainer ran embedded (no endpoints) and exited 0" \
  "! grep -q 'endpoints=' $D6/logs/learner.log && grep -q 'learner exited 0' $D6/logs/learner.log"
check "metrics.jsonl has every step once" "[ \"\$(metric_steps $D6/bare/metrics.jsonl)\" = \"$(seq_line 2)\" ]"
check "no service was started" '[ ! -e $D6/logs/rollout-0.log ] && [ ! -e $D6/logs/reward-0.log ]'

[ "$fail" -eq 0 ] && echo "PASS" || echo "FAILED"
exit "$fail"
