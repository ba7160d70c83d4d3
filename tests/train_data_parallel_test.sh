#!/usr/bin/env bash
# `grpo train --nproc N`: data-parallel learner ranks over Gloo on loopback.
#  - 10 RL steps of a shrunken nano recipe (same global batch) with 2 and 4 ranks end with the
#    weights of the 1-rank run within 1e-5 relative (while RL itself moved them far more);
#  - ZeRO-1: N ranks write N optimizer shards of 1/N of the state each;
#  - a run stopped at step 5 with 2 ranks resumes with 1, 2 and 4 ranks and finishes; with 2 ranks
#    bit-identical to the uninterrupted 2-rank run (weights and optimizer shards); a 1-rank run
#    stopped at step 5 resumes with 4 ranks; a 2-rank resume with 0.05 MiB gradient buckets
#    reduced during the backward equals the one-bucket run bit for bit;
#  - SIGKILL of rank 1 mid-run: every rank exits, the launcher non-zero within 60 s, and the
#    errors name rank 1; when rank 0 cannot end by itself (SIGSTOP), the launcher kills it after
#    --failure-grace and says so.
# Shrunk for CI time: 150 pretraining steps, 4 prompts x 4 samples per step, 24 new tokens.
CLOSE="$(realpath "$3")"
source "$(dirname "$0")/cli_test_lib.sh" "$@"

SMALL=(--set pretrain.steps=150 --set pretrain.batch_size=16 --set rollout.prompts_per_step=4
       --set rollout.group_size=4 --set rollout.max_new_tokens=24 --set train.eval_size=4
       --set train.eval_every=0 --set train.checkpoint_every=5 --quiet)
ck() { echo "runs/$1/checkpoints/rl-0000$2/model.safetensors"; }
close() { /usr/bin/python3 "$CLOSE" "$@"; }

for n in 1 2 4; do
  "$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=10 --set run.name=n$n --nproc $n \
    > n$n.out 2> n$n.err
  check "--nproc $n exits 0" '[ $? -eq 0 ]' || cat n$n.err
done
check "only rank 0 prints the run directory" '[ "$(cat n2.out)" = runs/n2 ]'
check "RL moved the weights (so the comparison can fail)" \
  '! close runs/n1/checkpoints/pretrain-000150/model.safetensors $(ck n1 10) 1e-4'
for n in 2 4; do
  check "--nproc $n weights equal 1 rank's within 1e-5" 'close $(ck n$n 10) $(ck n1 10) 1e-5'
done
for n in 2 4; do  # ZeRO-1: one optimizer shard per rank, each about 1/N of the 1-rank state
  check "--nproc $n writes $n optimizer shards" \
    '[ $(ls runs/n$n/checkpoints/rl-000010/optimizer-shard-*-of-0000$n.safetensors | wc -l) -eq $n ] &&
     [ ! -e runs/n$n/checkpoints/rl-000010/optimizer.safetensors ]'
  check "--nproc $n shards hold 1/$n of the state each" \
    "/usr/bin/python3 - runs/n1/checkpoints/rl-000010/optimizer.safetensors runs/n$n/checkpoints/rl-000010/optimizer-shard-*.safetensors <<'PY'
import os, sys
whole, shards = os.path.getsize(sys.argv[1]), [os.path.getsize(p) for p in sys.argv[2:]]
assert all(abs(s - whole / len(shards)) < 0.02 * whole for s in shards), (whole, shards)
PY"
done
check "metrics of 2 ranks match 1 rank's rewards" \
  '[ "$(grep -o "\"reward_mean\":[^,]*" runs/n2/metrics.jsonl)" = "$(grep -o "\"reward_mean\":[^,]*" runs/n1/metrics.jsonl)" ]'

# ---- stop at step 5 with 2 ranks, resume with 1, 2 and 4
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=5 --set run.name=half --nproc 2 2> half.err
check "5 steps with 2 ranks" '[ -s $(ck half 05) ]' || cat half.err
for n in 1 2 4; do  # each resume in a copy of the stopped run (same recipe, same run name)
  mkdir r$n && cp -r runs r$n/
  (cd r$n && "$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=10 --set run.name=half --resume \
     --nproc $n > ../r$n.out 2> ../r$n.err)
  check "resume with $n ranks exits 0" '[ $? -eq 0 ]' || cat r$n.err
  check "resume with $n ranks is within 1e-5 of 1 rank" 'close r$n/$(ck half 10) $(ck n1 10) 1e-5'
done
check "resume at 2 ranks is bit-identical" 'cmp -s r2/$(ck half 10) $(ck n2 10)'
# the same resume with ~30 buckets of 0.05 MiB, each reduced during the backward (n2's one 25 MiB
# bucket could start only when the backward ended), its optimizer shards re-cut to the new
# buckets on load: every element's sum is the same (each is added up in rank order)
mkdir r2s && cp -r runs r2s/
(cd r2s && "$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=10 --set run.name=half --resume --nproc 2 \
   --set learner.bucket_mb=0.05 > ../r2s.out 2> ../r2s.err)
check "resume at 2 ranks with small overlapped buckets is bit-identical" \
  'cmp -s r2s/$(ck half 10) $(ck n2 10)' || cat r2s.err
for f in optimizer-shard-00000-of-00002 optimizer-shard-00001-of-00002; do
  check "resumed $f at 2 ranks is bit-identical" \
    "cmp -s r2/runs/half/checkpoints/rl-000010/$f.safetensors runs/n2/checkpoints/rl-000010/$f.safetensors"
done
# the one-process optimizer file, read by 4 ranks' shards
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=5 --set run.name=half1 2> half1.err
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=10 --set run.name=half1 --resume --nproc 4 2> r14.err
check "a 1-rank checkpoint resumes with 4 ranks" 'close $(ck half1 10) $(ck n1 10) 1e-5' || cat r14.err

# start_ranks NAME [ARGS]: a 400-step 2-rank run NAME in the background (NAME.out, NAME.err),
# once it has written its step-5 checkpoint; sets launcher, rank0 and rank1 (the pids).
start_ranks() {
  local name=$1
  shift
  "$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=400 --set run.name=$name --nproc 2 "$@" \
    > $name.out 2> $name.err &
  launcher=$!
  for _ in $(seq 1 1200); do
    [ -d runs/$name/checkpoints/rl-000005 ] && break
    sleep 0.05
  done
  rank0="" rank1=""
  for pid in $(pgrep -P $launcher); do
    tr '\0' '\n' < /proc/$pid/environ | grep -qx GRPO_RANK=0 && rank0=$pid
    tr '\0' '\n' < /proc/$pid/environ | grep -qx GRPO_RANK=1 && rank1=$pid
  done
}

# ---- kill rank 1 mid-run
start_ranks kill
check "found rank 1" '[ -n "$rank1" ]'
start=$(date +%s)
kill -9 $rank1
wait $launcher
status=$?
took=$(( $(date +%s) - start ))
check "the launcher exits non-zero" '[ $status -ne 0 ]'
check "all ranks ended within 60 s (took ${took} s)" '[ $took -lt 60 ]' || cat kill.err
check "rank 0 names rank 1" 'grep -q "peer rank 1 is gone" kill.err' || cat kill.err
check "the launcher names rank 1" 'grep -q "rank 1 was killed by signal 9" kill.err' || cat kill.err
check "no rank is left running" '! pgrep -P $launcher >/dev/null'

# ---- a rank that cannot end by itself (rank 0 stopped with SIGSTOP) when rank 1 is killed: the
# launcher stops it --failure-grace (2 s) after rank 1's death, SIGTERM then SIGKILL 5 s later
start_ranks stuck --failure-grace 2
check "found both ranks" '[ -n "$rank0" ] && [ -n "$rank1" ]'
start=$(date +%s)
kill -STOP $rank0
kill -9 $rank1
wait $launcher
status=$?
took=$(( $(date +%s) - start ))
check "the launcher exits non-zero" '[ $status -ne 0 ]'
check "a stuck rank is stopped within the grace + 5 s (took ${took} s)" '[ $took -ge 6 ] && [ $took -lt 20 ]' || cat stuck.err
check "the launcher says it killed rank 0" \
  'grep -q "rank 0 was killed by signal 9 (the launcher sent it SIGKILL" stuck.err' || cat stuck.err
check "no rank is left running" '! pgrep -P $launcher >/dev/null && ! kill -0 $rank0 2>/dev/null'
exit $fail
