#!/usr/bin/env bash
# The `grpo` skeleton: --help lists every subcommand of ARCHITECTURE.md with one line each,
# unbuilt subcommands say so and exit 3, usage errors exit 2.
set -u
GRPO="$1"
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

help=$("$GRPO" --help)
check "--help exits 0" '[ $? -eq 0 ]'
for cmd in init-model logprobs generate tokenize data reward rollout train sft export inspect submit jobs logs cancel info; do
  check "--help lists $cmd" 'grep -qE "^  $cmd( |$)" <<<"$help"'
done
reward_help=$("$GRPO" reward --help)
check "reward --help lists score and serve" 'grep -q "score" <<<"$reward_help" && grep -q "serve" <<<"$reward_help"'

# Every subcommand is built now (issue #9 landed submit/jobs/logs/cancel): a missing recipe is a
# run-time error (exit 1) naming the file, not "not built yet" (exit 3).
out=$("$GRPO" submit --cluster slurm no-such-recipe.yaml 2>&1); rc=$?
check "submit of a missing recipe exits 1 (got $rc)" '[ $rc -eq 1 ]'
check "submit names the missing recipe" 'grep -q "no-such-recipe.yaml" <<<"$out" && ! grep -q "not built yet" <<<"$out"'

"$GRPO" no-such-command >/dev/null 2>&1; rc=$?
check "unknown subcommand exits 2 (got $rc)" '[ $rc -eq 2 ]'
"$GRPO" >/dev/null 2>&1; rc=$?
check "no subcommand exits 2 (got $rc)" '[ $rc -eq 2 ]'
"$GRPO" reward >/dev/null 2>&1; rc=$?
check "group without subcommand exits 2 (got $rc)" '[ $rc -eq 2 ]'
check "--version" '"$GRPO" --version | grep -q "grpo 0.1.0"'
exit $fail
