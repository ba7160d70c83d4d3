# Shared start of the CLI test scripts that take `GRPO RECIPE` as their arguments (sourced, not
# run): resolves both to absolute paths, works in a fresh temporary directory, one thread (a
# script that runs a recipe as users do, with every thread, sets CLI_TEST_ALL_THREADS=1 first).
#   source "$(dirname "$0")/cli_test_lib.sh" "$@"
# Then `check NAME 'CONDITION'` records a failure (FAIL: NAME) without stopping; end the script
# with `exit $fail`. `train_recipe [ARGS]...` runs `grpo train RECIPE ARGS` (stdout in out.txt,
# stderr in err.txt), prints the log's tail and the wall time, and stops the script when it fails.
# `port_of LOG` waits (up to 60 s) for a server's "listening on HOST:PORT" line in LOG and prints PORT.
set -u
GRPO="$(realpath "$1")"
RECIPE="$(realpath "$2")"
T=${TEST_TMPDIR:-$(mktemp -d)}
cd "$T"
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; return 1; fi; }
if [ -z "${CLI_TEST_ALL_THREADS:-}" ]; then export GRPO_NUM_THREADS=1; fi
train_recipe() {
  local start end rc
  start=$(date +%s)
  "$GRPO" train "$RECIPE" "$@" > out.txt 2> err.txt
  rc=$?
  end=$(date +%s)
  tail -n 12 err.txt
  echo "wall time: $((end - start)) s"
  if [ $rc -ne 0 ]; then echo "FAIL: grpo train exited $rc"; exit 1; fi
}
port_of() {  # waits for "listening on HOST:PORT" in $1, prints PORT
  # Up to 60 s (bench/async_bench.sh had its own copy waiting that long, the tests' waited 20 s):
  # servers start beside other work on machines whose cores may all be busy (CI runs the tests in
  # parallel on 2 cores; benchmarks run beside other engineers' builds), and the longer limit
  # costs nothing when a server starts: the wait ends as soon as the line appears.
  for _ in $(seq 1 1200); do
    p=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$1" 2>/dev/null | head -n1)
    if [ -n "$p" ]; then echo "$p"; return 0; fi
    sleep 0.05
  done
  return 1
}
