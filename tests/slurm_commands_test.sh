#!/usr/bin/env bash
# grpo submit/jobs/logs/cancel/health and the role launcher, without a Slurm cluster: the Slurm
# commands are stand-in scripts (SBATCH, SQUEUE, SCONTROL, SCANCEL) that record their arguments
# and print what Slurm would; launch.sh runs outside Slurm against real `grpo reward serve`
# processes. The real-cluster test is slurm_cluster_test.sh.
# Usage: slurm_commands_test.sh GRPO RECIPE
set -u
GRPO="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
RECIPE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
T=$(mktemp -d "${TEST_TMPDIR:-/tmp}/slurmcmd.XXXXXX")
cd "$T" || exit 1
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; }
trap cleanup EXIT

# ---- stand-ins for the Slurm commands
mkdir -p fake
cat > fake/sbatch <<'SH'
#!/bin/bash
echo "$@" >> "$(dirname "$0")/sbatch.args"
echo "4242;grpotest"
SH
cat > fake/squeue <<'SH'
#!/bin/bash
echo "$@" >> "$(dirname "$0")/squeue.args"
case "$*" in
  *--steps*) printf '7.0|rollout\n7.3|learner\n7.1|reward\n' ;;
  *--jobs=7*) if [ -f "$(dirname "$0")/cancelled" ]; then :; else echo RUNNING; fi ;;
  *) printf '7|grpo-nano|RUNNING|1:02|3|vm|grpo:/shared/runs/nano\n8|other-job|PENDING|0:00|1|(Priority)|\n9|grpo-big|PENDING|0:00|19|(Resources)|grpo:/lustre/runs/big\n' ;;
esac
SH
cat > fake/scontrol <<SH
#!/bin/bash
echo "JobId=\$4 JobName=grpo-nano Comment=grpo:$T/jobs/nano Priority=1 WorkDir=$T"
SH
cat > fake/scancel <<'SH'
#!/bin/bash
echo "$@" >> "$(dirname "$0")/scancel.args"
touch "$(dirname "$0")/cancelled"
SH
chmod +x fake/*
export SBATCH="$T/fake/sbatch" SQUEUE="$T/fake/squeue" SCONTROL="$T/fake/scontrol" SCANCEL="$T/fake/scancel"

CL=(--set "cluster.output_dir=$T/jobs" --set "cluster.grpo=$GRPO" --set cluster.rollout.tasks=2
    --set run.name=nano --set cluster.partition=cpu)

# ---- submit
"$GRPO" submit --cluster slurm "$RECIPE" "${CL[@]}" --dry-run > dry.sbatch 2> dry.err
check "--dry-run prints a script and writes nothing" 'head -1 dry.sbatch | grep -q "^#!/bin/bash" && [ ! -e jobs ]'
"$GRPO" submit --cluster slurm "$RECIPE" "${CL[@]}" > submit.out 2> submit.err
check "submit prints the job id as the last line" '[ "$(tail -1 submit.out)" = 4242 ]' || cat submit.err
J="$T/jobs/nano"
check "sbatch got the written script" 'grep -q -- "--parsable $J/cluster/job.sbatch" fake/sbatch.args'
check "the written script is the --dry-run script" 'cmp -s dry.sbatch $J/cluster/job.sbatch'
check "the script asks for the partition, requeue and 3 nodes" \
  'grep -q "^#SBATCH --partition=cpu$" dry.sbatch && grep -q "^#SBATCH --requeue$" dry.sbatch && grep -q "^#SBATCH --nodes=3$" dry.sbatch'
check "the job directory has the launcher, recipe, rules, model config and tokenizer" \
  '[ -x $J/cluster/launch.sh ] && [ -s $J/cluster/recipe.yaml ] && [ -s $J/cluster/rules.yaml ] && [ -s $J/cluster/model_config.json ] && [ -s $J/cluster/tokenizer/tokenizer.json ] && [ -d $J/logs ]'
check "the effective recipe keeps the --set overrides" 'grep -q "tasks: 2" $J/cluster/recipe.yaml'
check "the rules file loads in grpo reward score" \
  'printf "{\"completion\":\"<think>a</think><answer>5</answer>\",\"answer\":\"5\"}\n" > items.jsonl && "$GRPO" reward score --rules $J/cluster/rules.yaml --input items.jsonl --output scored.jsonl 2>/dev/null && grep -q "\"reward\":2" scored.jsonl'
check "the rollout model config initializes a model" \
  '"$GRPO" init-model --config $J/cluster/model_config.json --out model >/dev/null 2>&1 && [ -s model/model.safetensors ]'
# A recipe without a cluster: section (the docs say every key is optional): one node, the
# learner embedding every role, no rollout model to prepare.
"$GRPO" submit --cluster slurm "$RECIPE" --set run.name=bare --set "run.output_dir=$T/jobs" > bare.out 2> bare.err
B="$T/jobs/bare"
check "submit works without a cluster: section" '[ "$(tail -1 bare.out)" = 4242 ] && [ -s $B/cluster/job.sbatch ]' || cat bare.err
check "that job is one node whose learner embeds rollout and reward" \
  'grep -q "^#SBATCH --nodes=1$" $B/cluster/job.sbatch && grep -q "^GRPO_ROLLOUT_TASKS=0$" $B/cluster/job.sbatch && grep -q "^GRPO_REWARD_TASKS=0$" $B/cluster/job.sbatch && grep -qx "ROLLOUT_INIT_CONFIG=.." $B/cluster/job.sbatch && [ ! -e $B/cluster/model_config.json ]'
"$GRPO" submit --cluster slurm "$RECIPE" --set cluster.rollout.nodes=3 --set cluster.rollout.tasks=2 --dry-run > /dev/null 2> bad.err; rc=$?
check "a bad layout fails (exit 1) naming the key" '[ $rc -eq 1 ] && grep -q "cluster.rollout.nodes" bad.err'
"$GRPO" submit --cluster pbs "$RECIPE" --dry-run > /dev/null 2> pbs.err; rc=$?
check "an unknown scheduler fails naming it" '[ $rc -eq 1 ] && grep -q "pbs" pbs.err'

# ---- jobs
"$GRPO" jobs --json > jobs.json
check "jobs --json lists the grpo jobs only, with their directories" \
  "/usr/bin/python3 -c \"import json; j=json.load(open('jobs.json')); assert [r['job_id'] for r in j]==['7','9'], j; assert j[0]['job_dir']=='/shared/runs/nano' and j[0]['state']=='RUNNING' and j[1]['nodes']=='19', j\""
"$GRPO" jobs > jobs.txt
check "jobs prints a table" 'grep -q "^JOB" jobs.txt && grep -q "grpo-big" jobs.txt && ! grep -q other-job jobs.txt'

# ---- logs
echo "learner line" > "$J/logs/learner.log"
echo "rollout zero" > "$J/logs/rollout-0.log"
echo "rollout one" > "$J/logs/rollout-1.log"
echo "batch out" > "$J/logs/job-7.out"
"$GRPO" logs 7 --role rollout > logs-rollout.txt
check "logs --role rollout prints both rollout logs only" \
  'grep -q "rollout zero" logs-rollout.txt && grep -q "rollout one" logs-rollout.txt && ! grep -q "learner line" logs-rollout.txt'
"$GRPO" logs 7 > logs-all.txt
check "logs prints every role and the batch output" 'grep -q "learner line" logs-all.txt && grep -q "batch out" logs-all.txt'
"$GRPO" logs 7 --role bogus > /dev/null 2>&1; rc=$?
check "logs --role bogus exits 1" '[ $rc -eq 1 ]'

# ---- cancel: SIGTERM to the learner step, then the job is gone
"$GRPO" cancel 7 --grace 5 > cancel.out 2> cancel.err
check "cancel signals the learner step" 'grep -qx -- "--signal=TERM 7.3" fake/scancel.args'
check "cancel does not scancel a job that ended" '[ "$(wc -l < fake/scancel.args)" -eq 1 ] && grep -q "job 7 cancelled" cancel.out'
rm -f fake/cancelled fake/scancel.args
"$GRPO" cancel 7 --now > /dev/null 2>&1
check "cancel --now is a plain scancel" 'grep -qx "7" fake/scancel.args'

# ---- health against a real reward server, and a closed port
printf 'rules:\n  - type: format\n' > rules.yaml
"$GRPO" reward serve --rules rules.yaml --listen 127.0.0.1:0 2> serve.err &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening on" serve.err && break; sleep 0.1; done
addr=$(grep -o '127.0.0.1:[0-9]*' serve.err | head -1)
check "health --reward answers SERVING" '"$GRPO" health --reward "$addr" --timeout 10 | grep -q "SERVING"'
kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null
start=$(date +%s)
"$GRPO" health --reward "$addr" --timeout 2 > /dev/null 2> health.err; rc=$?
check "health of a stopped server fails within its timeout, naming it" \
  '[ $rc -eq 1 ] && [ $(( $(date +%s) - start )) -le 6 ] && grep -q "$addr" health.err'
"$GRPO" health --rollout "$addr" --reward "$addr" > /dev/null 2>&1; rc=$?
check "health needs exactly one of --rollout/--reward" '[ $rc -eq 1 ]'

# ---- launch.sh outside Slurm: a reward service with rendezvous and restarts
L="$T/launch"
mkdir -p "$L"
export GRPO_BIN="$GRPO" GRPO_JOB_DIR="$L" GRPO_REWARD_RULES="$T/rules.yaml" GRPO_SERVICE_RESTARTS=1
SLURM_PROCID=0 bash "$J/cluster/launch.sh" reward &
lpid=$!
pids+=("$lpid")
check "the service writes its rendezvous file" "for _ in \$(seq 1 100); do [ -s $L/rendezvous/reward-0.json ] && break; sleep 0.1; done; [ -s $L/rendezvous/reward-0.json ]"
port=$(sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$L/rendezvous/reward-0.json")
spid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$L/rendezvous/reward-0.json")
check "the rendezvous file is JSON with host and port" \
  "/usr/bin/python3 -c \"import json; d=json.load(open('$L/rendezvous/reward-0.json')); assert d['role']=='reward' and d['index']==0 and d['port']>0 and d['attempt']==0, d\""
check "the server it names is serving" '"$GRPO" health --reward "127.0.0.1:$port" --timeout 10 >/dev/null'
kill -KILL "$spid"
check "a killed server is restarted on the same port" \
  "for _ in \$(seq 1 100); do grep -q '\"attempt\": 1' $L/rendezvous/reward-0.json && break; sleep 0.1; done; grep -q '\"port\": $port,' $L/rendezvous/reward-0.json"
check "the restarted server is serving" '"$GRPO" health --reward "127.0.0.1:$port" --timeout 10 >/dev/null'
kill -TERM "$lpid"; wait "$lpid"; rc=$?
check "SIGTERM stops the service and the launcher exits 0 (got $rc)" '[ $rc -eq 0 ] && grep -q "reward-0 stopped (exit 0)" $L/logs/reward-0.log'

# ---- launch.sh learner: a missing service fails the rendezvous naming the role
GRPO_RUN_DIR="$L/nano" GRPO_RECIPE="$J/cluster/recipe.yaml" GRPO_ROLLOUT_TASKS=2 GRPO_REWARD_TASKS=0 \
  GRPO_RENDEZVOUS_TIMEOUT=2 bash "$J/cluster/launch.sh" learner; rc=$?
check "the learner exits 3 when a rollout server never comes up (got $rc)" '[ $rc -eq 3 ]'
check "and names the missing role and its log" 'grep -q "role rollout task 0 did not come up within 2 s" $L/logs/learner.log && grep -q "logs/rollout-0.log" $L/logs/learner.log'

rm -rf "$T"
exit $fail
