#!/usr/bin/env bash
# Checks the Abseil thread-safety annotations with clang's analysis: every translation unit that
# uses absl::Mutex or the annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...),
# directly or through its own header, is compiled with
#   clang++ -std=c++20 -fsyntax-only -Wthread-safety -Werror=thread-safety
# so a guarded member touched without its lock, a lock not released, or a call to a function that
# needs a lock the caller does not hold fails the check. The Bazel build uses GCC, which ignores
# the annotations; this is where they are enforced.
#
# Usage: tools/thread_safety_check.sh [FILE.cc...]   (no arguments: every annotated file)
# Builds the generated proto headers first (bazel build //proto:all); exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-clang++}
if ! command -v "$CLANG" > /dev/null; then
  echo "tools/thread_safety_check.sh: $CLANG not found" >&2
  exit 1
fi

pattern='absl::Mutex|absl::MutexLock|ABSL_GUARDED_BY|ABSL_PT_GUARDED_BY|ABSL_EXCLUSIVE_LOCKS_REQUIRED|ABSL_SHARED_LOCKS_REQUIRED|ABSL_LOCKS_EXCLUDED'
if [ $# -gt 0 ]; then
  files=("$@")
else
  # Annotated sources, and the sources of annotated headers (foo.h -> foo.cc); code, not comments.
  mapfile -t files < <(
    {
      grep -rlE --include='*.cc' "^[^/]*($pattern)" . | grep -vE '^\./(bazel-|third_party/)'
      grep -rlE --include='*.h' "^[^/]*($pattern)" . | grep -vE '^\./(bazel-|third_party/)' |
        while read -r h; do [ -f "${h%.h}.cc" ] && echo "${h%.h}.cc"; done
    } | sed 's|^\./||' | sort -u)
fi
if [ ${#files[@]} -eq 0 ]; then
  echo "tools/thread_safety_check.sh: no annotated files found" >&2
  exit 1
fi

if ! bazel build //proto:all > /tmp/thread_safety_check_bazel.log 2>&1; then
  tail -20 /tmp/thread_safety_check_bazel.log
  echo "tools/thread_safety_check.sh: building the proto headers failed" >&2
  exit 1
fi

flags=(-std=c++20 -fsyntax-only -Wthread-safety -Werror=thread-safety -Wno-unknown-warning-option -I. -Ibazel-bin)

# A canary first: an unlocked read of a guarded member must be refused, or the check proves nothing.
canary='#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
class C {
 public:
  int Get() { return n_; }  // no lock
 private:
  absl::Mutex mu_;
  int n_ ABSL_GUARDED_BY(mu_) = 0;
};
int main() { return C().Get(); }'
if echo "$canary" | "$CLANG" "${flags[@]}" -x c++ - > /dev/null 2>&1; then
  echo "tools/thread_safety_check.sh: $CLANG accepted an unlocked read of a guarded member: the analysis is off" >&2
  exit 1
fi

failed=0
for f in "${files[@]}"; do
  if out=$("$CLANG" "${flags[@]}" "$f" 2>&1); then
    echo "thread-safety OK:     $f"
  else
    echo "$out" | grep -E "error|note" | head -40
    echo "thread-safety FAILED: $f"
    failed=$((failed + 1))
  fi
done
echo "tools/thread_safety_check.sh: ${#files[@]} files, $failed failed"
[ "$failed" -eq 0 ]
