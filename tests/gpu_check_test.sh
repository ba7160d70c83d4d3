#!/usr/bin/env bash
# tools/gpu_check.sh on a machine without a usable GPU: `run` stops at once (exit 2) saying why,
# with no bundle and with one whose grpo finds no CUDA device; a bad mode prints the usage. (On a
# GPU machine the device check passes and this test only checks the first and last cases.) An
# unknown group of checks is refused with the usage.
SCRIPT="$(realpath "$3")"  # before the library changes directory
source "$(dirname "$0")/cli_test_lib.sh" "$@"
mkdir -p repo/tools repo/recipes && cp "$SCRIPT" repo/tools/gpu_check.sh && cp "$RECIPE" repo/recipes/

err=$(cd repo && timeout 60 tools/gpu_check.sh run 2>&1); rc=$?
check "run without a bundle exits 2 (got $rc)" '[ $rc -eq 2 ]'
check "run without a bundle says to prepare one" 'grep -q "run '"'"'tools/gpu_check.sh prepare'"'"'" <<<"$err"' || echo "$err"

# A bundle holding only the CLI (its libraries are this machine's).
mkdir -p stage/bin stage/lib repo/gpu_bundle && cp "$GRPO" stage/bin/grpo && tar -C stage -cJf repo/gpu_bundle/bundle.tar.xz bin lib
if "$GRPO" info | grep -qE "^  cuda +unavailable"; then
  start=$SECONDS
  err=$(cd repo && timeout 60 tools/gpu_check.sh run 2>&1); rc=$?
  check "run without a GPU exits 2 (got $rc)" '[ $rc -eq 2 ]'
  check "run without a GPU says the cuda backend is unusable and why" \
    'grep -q "the cuda backend is not usable here: cuda unavailable: no CUDA device found" <<<"$err"' || echo "$err"
  check "run without a GPU stops quickly ($((SECONDS - start)) s)" '[ $((SECONDS - start)) -lt 30 ]'
fi

err=$(cd repo && tools/gpu_check.sh run checks nonsense 2>&1); rc=$?
check "run with an unknown group exits 2 with the usage (got $rc)" \
  '[ $rc -eq 2 ] && grep -q "usage: tools/gpu_check.sh prepare|run \[checks\] \[hf\] \[bench\]" <<<"$err"'

err=$(cd repo && tools/gpu_check.sh 2>&1); rc=$?
check "no mode exits 2 with the usage (got $rc)" '[ $rc -eq 2 ] && grep -q "usage: tools/gpu_check.sh prepare|run" <<<"$err"'
exit $fail
