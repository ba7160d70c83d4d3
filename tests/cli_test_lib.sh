# Shared start of the CLI test scripts that take `GRPO RECIPE` as their arguments (sourced, not
# run): resolves both to absolute paths, works in a fresh temporary directory, one thread.
#   source "$(dirname "$0")/cli_test_lib.sh" "$@"
# Then `check NAME 'CONDITION'` records a failure (FAIL: NAME) without stopping; end the script
# with `exit $fail`.
set -u
GRPO="$(realpath "$1")"
RECIPE="$(realpath "$2")"
T=${TEST_TMPDIR:-$(mktemp -d)}
cd "$T"
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; return 1; fi; }
export GRPO_NUM_THREADS=1
