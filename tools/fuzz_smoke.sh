#!/usr/bin/env bash
# Builds every libFuzzer target with clang (ASan + UBSan) and runs each for a short while, under
# memory limits. A crash, a sanitizer report, a property violation, an RSS over -rss_limit_mb or a
# single allocation over -malloc_limit_mb fails the run.
#
# Bazel builds with gcc, so the fuzzers are built here with clang, from the BUILD files: each line
# of FUZZERS names a fuzzer, its source and the Bazel targets it links. `bazel query` lists the
# targets' transitive .cc sources, .proto files (compiled with protoc and grpc_cpp_plugin, as
# tools/build_defs.bzl does) and system libraries (the linkopts of //third_party). Every source is
# compiled once, in parallel, into $FUZZ_OUT/obj (reused by a later run with the same FUZZ_OUT
# while it, its headers and this script are unchanged) and linked into each fuzzer that needs it.
#
#   FUZZ_SECONDS=N    time per fuzzer (default 20).
#   FUZZ_OUT=DIR      objects, binaries, corpora, logs and crash artifacts (default a temp dir).
#   FUZZ_ONLY="a b"   build and run only the named fuzzers.
#   FUZZ_RSS_MB, FUZZ_MALLOC_MB   the memory limits (defaults 2048 and 512).
# Fuzzers that take GRPO_FUZZ_SEED_DIR write their seed inputs there at start (the corpus).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
RSS_MB=${FUZZ_RSS_MB:-2048}
MALLOC_MB=${FUZZ_MALLOC_MB:-512}
OUT=${FUZZ_OUT:-$(mktemp -d /tmp/grpo-fuzz.XXXXXX)}
mkdir -p "$OUT/obj" "$OUT/gen"
OUT=$(cd "$OUT" && pwd)

# name | fuzz source | Bazel targets it links
FUZZERS=(
  "float_formats|core/float_formats_fuzz.cc|//core:tensor"
  "safetensors|core/safetensors_fuzz.cc|//core:safetensors"
  "config|core/config_fuzz.cc|//core:config"
  "reward_math|reward/math_fuzz.cc|//reward:math"
  "reward_rules|reward/rules_fuzz.cc|//reward:rules"
  "reward_plugin_wire|reward/plugin_wire_fuzz.cc|//reward:plugin_wire"
  "tokenizer|tokenizer/tokenizer_fuzz.cc|//tokenizer"
  "dataset|data/dataset_fuzz.cc|//data"
  # The service request paths (issue 19): RolloutService.Generate, RewardService.Score and
  # UpdateWeights' chunk stream.
  "rollout_request|rollout/request_fuzz.cc|//rollout:service //model"
  "reward_request|reward/request_fuzz.cc|//reward:service //reward:rule_set //core:config"
  "weight_stream|rollout/weight_stream_fuzz.cc|//rollout:weight_stream //model //core:crc32c //core:tensor"
)

# -march=native: the fuzzers run where they are built, and clang (unlike gcc) refuses the CPU
# kernels' 8-wide vectors (model/ops/cpu/vector_kernels.cc) without AVX.
FLAGS=(-std=c++20 -march=native -g -O1 -fno-sanitize-recover=undefined -DPCRE2_CODE_UNIT_WIDTH=8 -I. -I"$OUT/gen")
LIB_SANITIZE=-fsanitize=fuzzer-no-link,address,undefined
MAIN_SANITIZE=-fsanitize=fuzzer,address,undefined

bq() { bazel query "$1" --output=label 2>/dev/null | grep '^//'; }
label_to_path() { sed -e 's|^//||' -e 's|:|/|' -e 's|^/||'; }

# Compiles $1 (a source) to $2 (an object) unless the object is newer than the source, every
# header it included (from its .d file) and this script (the flags).
compile_one() {
  local src=$1 obj=$2
  local dep=${obj%.o}.d
  if [ -f "$obj" ] && [ -f "$dep" ]; then
    local newer
    newer=$({ sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"; echo tools/fuzz_smoke.sh; } | tr ' ' '\n' |
            grep -v '^$' | while read -r f; do [ ! -e "$f" ] || [ "$f" -nt "$obj" ] && echo "$f"; done | head -1)
    [ -z "$newer" ] && return 0
  fi
  mkdir -p "$(dirname "$obj")"
  if ! clang++ "${FLAGS[@]}" "$SANITIZE" -MMD -MF "$dep" -c "$src" -o "$obj" 2>"$obj.log"; then
    echo "compile FAILED: $src"; tail -20 "$obj.log"; return 1
  fi
}
export -f compile_one

declare -A SRCS PROTOS LIBS
status=0
t0=$SECONDS
selected=()
for entry in "${FUZZERS[@]}"; do
  IFS='|' read -r name main targets <<<"$entry"
  if [ -n "${FUZZ_ONLY:-}" ] && [[ " $FUZZ_ONLY " != *" $name "* ]]; then continue; fi
  union=$(echo "$targets" | sed 's/ / + /g')
  files=$(bq "filter('\.(cc|proto)\$', kind('source file', deps($union)))" | label_to_path)
  SRCS[$name]=$(echo "$files" | grep '\.cc$' | tr '\n' ' ')
  PROTOS[$name]=$(echo "$files" | grep '\.proto$' | tr '\n' ' ')
  LIBS[$name]=$(bazel query "kind(cc_library, deps($union))" --output=build 2>/dev/null |
                grep -oE '"-(l|Wl,|pthread)[^"]*"' | tr -d '"' | awk '!seen[$0]++' | tr '\n' ' ')
  if [ -z "${SRCS[$name]}" ]; then
    echo "fuzz $name: BUILD FAILED (bazel query found no sources for $targets)"; status=1; continue
  fi
  selected+=("$entry")
done

echo "fuzz: bazel query: $((SECONDS - t0)) s"
t0=$SECONDS

# Generated code of every .proto involved.
all_protos=$(for n in "${!PROTOS[@]}"; do echo "${PROTOS[$n]}"; done | tr ' ' '\n' | grep -v '^$' | sort -u)
if [ -n "$all_protos" ]; then
  # shellcheck disable=SC2086
  if ! protoc -I. -I/usr/include --cpp_out="$OUT/gen" --grpc_out="$OUT/gen" \
       --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin $all_protos 2>"$OUT/protoc.log"; then
    echo "fuzz: protoc FAILED"; cat "$OUT/protoc.log"; exit 1
  fi
fi
gen_srcs() { for p in $1; do echo "$OUT/gen/${p%.proto}.pb.cc $OUT/gen/${p%.proto}.grpc.pb.cc"; done; }
obj_of() { case $1 in "$OUT"/gen/*) echo "$OUT/obj/gen/${1#"$OUT"/gen/}.o" ;; *) echo "$OUT/obj/$1.o" ;; esac; }

# Every library source once, in parallel.
all_srcs=$(for e in "${selected[@]}"; do
             IFS='|' read -r name _ _ <<<"$e"
             echo "${SRCS[$name]} $(gen_srcs "${PROTOS[$name]}")"
           done | tr ' ' '\n' | grep -v '^$' | sort -u)
export FLAGS_STR="${FLAGS[*]}"
if [ -n "$all_srcs" ]; then
  # shellcheck disable=SC2016
  if ! for s in $all_srcs; do echo "$s $(obj_of "$s")"; done |
       SANITIZE=$LIB_SANITIZE xargs -P "$(nproc)" -n 2 bash -c 'FLAGS=($FLAGS_STR); compile_one "$0" "$1"'; then
    echo "fuzz: compiling the library sources FAILED (see above)"; status=1
  fi
fi
echo "fuzz: $(echo "$all_srcs" | grep -c .) library sources compiled (or up to date): $((SECONDS - t0)) s"

for entry in "${selected[@]}"; do
  IFS='|' read -r name main _ <<<"$entry"
  bin="$OUT/${name}_fuzz"
  objs=()
  for s in ${SRCS[$name]} $(gen_srcs "${PROTOS[$name]}"); do objs+=("$(obj_of "$s")"); done
  # shellcheck disable=SC2086
  if ! SANITIZE=$MAIN_SANITIZE compile_one "$main" "$OUT/obj/$main.o" ||
     ! clang++ $MAIN_SANITIZE "$OUT/obj/$main.o" "${objs[@]}" ${LIBS[$name]} -o "$bin" \
       2>"$OUT/$name.build.log"; then
    echo "fuzz $name: BUILD FAILED"; tail -20 "$OUT/$name.build.log" 2>/dev/null; status=1; continue
  fi
  mkdir -p "$OUT/$name.corpus"
  start=$(date +%s)
  if GRPO_FUZZ_SEED_DIR="$OUT/$name.corpus" "$bin" -max_total_time="$SECONDS_EACH" \
       -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$MALLOC_MB" -timeout=10 \
       -artifact_prefix="$OUT/$name." "$OUT/$name.corpus" >"$OUT/$name.log" 2>&1; then
    echo "fuzz $name: ok ($(grep -oE 'Done [0-9]+ runs' "$OUT/$name.log" | tail -1), $(($(date +%s) - start)) s)"
  else
    echo "fuzz $name: FAILED (log $OUT/$name.log)"; tail -30 "$OUT/$name.log"; status=1
  fi
done
exit $status
