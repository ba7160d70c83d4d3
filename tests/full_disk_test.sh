#!/usr/bin/env bash
# Faults of the disk (issue 19, class 4): `grpo train` on a disk that fills up exits non-zero
# with a message naming what it could not write - never an abort - and keeps what it wrote.
# The full disk is simulated without root with a file size limit (`ulimit -f`, SIGXFSZ ignored):
# a write past the limit fails with EFBIG where a full disk fails with ENOSPC. (The ENOSPC path
# itself, RocksDB's and ours, is tested by store/full_disk_test and store/info_log_test.)
#  - the trajectory store's write-ahead log reaches the limit: the run stops with an error
#    naming the store; every step it stored before is there;
#  - a checkpoint reaches it: the error names the file, no half-written checkpoint is left, and
#    the previous checkpoint and `latest` are untouched.
source "$(dirname "$0")/cli_test_lib.sh" "$@"
trap '' XFSZ  # ignored signals stay ignored in the commands run below

# Runs grpo train with files limited to $1 KiB; the rest are its arguments.
train_limited() { local kib=$1; shift; ( ulimit -f "$kib"; exec "$GRPO" train "$RECIPE" "$@" --quiet ); }
num_steps() { "$GRPO" inspect --store "$1" --json 2>/dev/null | /usr/bin/python3 -c \
  'import json,sys; print(json.load(sys.stdin)["runs"][0]["num_steps"])' 2>/dev/null; }

# ---- the store fills: no pretraining or checkpoint, so the store's log is the largest file
train_limited 1024 --set run.name=s --set pretrain.steps=0 --set train.steps=400 \
  --set rollout.prompts_per_step=8 --set rollout.group_size=8 --set rollout.max_new_tokens=64 \
  --set train.eval_size=6 --set train.eval_every=1000 --set train.checkpoint_every=1000 > /dev/null 2> s.err
rc=$?
check "a full store fails the run" '[ $rc -ne 0 ]'
check "without a crash (exit $rc)" '[ $rc -lt 128 ]'
check "no assertion" '! grep -q "Assertion" s.err' || cat s.err
check "the error names the store" "grep -q 'grpo train: .*runs/s/store: writing run .s. step [0-9]*: .*File too large' s.err" || cat s.err
failed_step=$(grep -o "writing run 's' step [0-9]*" s.err | grep -o '[0-9]*$')
stored=$(num_steps runs/s/store)
check "the store opens afterwards and holds every step before the failed one ($stored stored, step ${failed_step:-?} failed)" \
  '[ -n "$failed_step" ] && [ "$failed_step" -gt 2 ] && { [ "$stored" = "$failed_step" ] || [ "$stored" = $((failed_step + 1)) ]; }'
samples=$("$GRPO" inspect --store runs/s/store --json 2>/dev/null | /usr/bin/python3 -c \
  'import json,sys; print(json.load(sys.stdin)["runs"][0]["num_samples"])' 2>/dev/null)
check "with all their samples ($samples)" '[ "$samples" = $((stored * 8 * 8)) ]'

# ---- a checkpoint fills: a run with a checkpoint after step 2 is resumed to step 4 with files
# limited below the size of the optimizer state
SMALL=(--set run.name=c --set pretrain.steps=2 --set pretrain.batch_size=8 --set rollout.prompts_per_step=4
       --set rollout.group_size=4 --set rollout.max_new_tokens=16 --set train.eval_size=6
       --set train.eval_every=1000 --set train.checkpoint_every=2)
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=2 --quiet > /dev/null 2> c1.err
check "the first run exits 0" '[ $? -eq 0 ]' || cat c1.err
C=runs/c/checkpoints
check "it left the step-2 checkpoint" '[ "$(cat $C/latest)" = rl-000002 ]'
cp -r $C/rl-000002 saved-rl-000002
size=$(stat -c %s $C/rl-000002/optimizer.safetensors)
train_limited $(( size / 1024 - 64 )) "${SMALL[@]}" --set train.steps=4 --resume > /dev/null 2> c2.err
rc=$?
check "a full disk while checkpointing fails the run" '[ $rc -ne 0 ]'
check "without a crash (exit $rc)" '[ $rc -lt 128 ]'
check "the error names the file" "grep -q 'cannot write runs/c/checkpoints/rl-000004.tmp/optimizer.safetensors.tmp: File too large' c2.err" || cat c2.err
check "no half-written checkpoint is left" '[ -z "$(ls $C | grep tmp)" ]' || ls $C
check "latest still names the step-2 checkpoint" '[ "$(cat $C/latest)" = rl-000002 ]'
check "the step-2 checkpoint is intact" 'diff -r saved-rl-000002 $C/rl-000002'
# With room again the run resumes from it and finishes.
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set train.steps=4 --resume --quiet > /dev/null 2> c3.err
check "with room again the run resumes and finishes" '[ $? -eq 0 ] && [ "$(cat $C/latest)" = rl-000004 ]' || cat c3.err

[ $fail -eq 0 ] && echo PASS
exit $fail
