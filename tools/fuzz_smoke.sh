#!/usr/bin/env bash
# Builds every libFuzzer target with clang (ASan + UBSan) and runs each for a short while. A crash,
# a sanitizer report or a property violation fails the run. Bazel builds with gcc, so the fuzzers
# are built here directly; each line of FUZZERS is: name, sources, extra link flags.
#
#   FUZZ_SECONDS=N (default 20) sets the time per fuzzer. Artifacts go to $FUZZ_OUT (a temp dir).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
OUT=${FUZZ_OUT:-$(mktemp -d /tmp/grpo-fuzz.XXXXXX)}
CORE="core/status.cc core/dtype.cc core/float_formats.cc core/tensor.cc core/fp8_block.cc"

FUZZERS=(
  "float_formats|core/float_formats_fuzz.cc $CORE|"
  "reward_math|reward/math_fuzz.cc reward/rational.cc reward/math_normalize.cc reward/math_parse.cc reward/math_equiv.cc core/status.cc|"
  "reward_rules|reward/rules_fuzz.cc reward/rational.cc reward/math_normalize.cc reward/math_parse.cc reward/math_equiv.cc reward/extract.cc reward/math_rule.cc reward/format_rule.cc reward/countdown_rule.cc reward/text_rules.cc reward/shaping_rules.cc core/status.cc|-lre2"
  "reward_plugin_wire|reward/plugin_wire_fuzz.cc reward/plugin_wire.cc core/status.cc|"
)
[ -f core/safetensors_fuzz.cc ] && FUZZERS+=("safetensors|core/safetensors_fuzz.cc core/safetensors.cc $CORE|")
[ -f core/config_fuzz.cc ] && FUZZERS+=("config|core/config_fuzz.cc core/config.cc core/status.cc|-lyaml-cpp")
TOK="tokenizer/bpe.cc tokenizer/pretokenizer.cc tokenizer/tokenizer.cc tokenizer/regex.cc tokenizer/unicode.cc core/status.cc"
FUZZERS+=("tokenizer|tokenizer/tokenizer_fuzz.cc $TOK|-lpcre2-8")
FUZZERS+=("dataset|data/dataset_fuzz.cc data/dataset.cc core/status.cc|")

status=0
for entry in "${FUZZERS[@]}"; do
  IFS='|' read -r name srcs libs <<<"$entry"
  bin="$OUT/${name}_fuzz"
  # shellcheck disable=SC2086
  if ! clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
       -DPCRE2_CODE_UNIT_WIDTH=8 -I. $srcs $libs -o "$bin" 2>"$OUT/$name.build.log"; then
    echo "fuzz $name: BUILD FAILED"; tail -20 "$OUT/$name.build.log"; status=1; continue
  fi
  mkdir -p "$OUT/$name.corpus"
  if "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$OUT/$name." "$OUT/$name.corpus" >"$OUT/$name.log" 2>&1; then
    echo "fuzz $name: ok ($(grep -oE 'Done [0-9]+ runs' "$OUT/$name.log" | tail -1))"
  else
    echo "fuzz $name: FAILED (log $OUT/$name.log)"; tail -30 "$OUT/$name.log"; status=1
  fi
done
exit $status
