#!/usr/bin/env bash
# Tokenizer encoding speed, ours (C++) against the JavaScript reference (@lenml/tokenizers), side by
# side in one run, each pinned to one core. English text: the Perl manual pages, the common
# licenses and Vim's help files shipped by Debian (about 10 MB). Not a test; record results in
# docs/PERFORMANCE.md. Needs `bash tools/tokenizer_npm.sh` first.
#   bash bench/tokenizer_bench.sh [MODEL...]     (default: qwen3 deepseek_v3)
set -euo pipefail
cd "$(dirname "$0")/.."
MODULES="${GRPO_NPM_MODULES:-$PWD/third_party/npm/node_modules}"
PASSES="${PASSES:-3}"        # C++ timed passes
JS_PASSES="${JS_PASSES:-1}"  # the reference is ~100x slower
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(qwen3 deepseek_v3)
bazel build -c opt //tokenizer:tokenizer_bench >/dev/null 2>&1 || bazel build -c opt //tokenizer:tokenizer_bench
corpus="$(mktemp /tmp/tokenizer_bench.XXXXXX.txt)"
trap 'rm -f "$corpus"' EXIT
cat /usr/share/perl/5.*/pod/*.pod /usr/share/common-licenses/* /usr/share/vim/vim*/doc/*.txt \
  2>/dev/null | iconv -f utf-8 -t utf-8 -c >"$corpus"
echo "corpus: $(wc -c <"$corpus") bytes of English text; one warm-up pass, then $PASSES (C++) / $JS_PASSES (JS) timed passes"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(uptime | sed 's/.*load/load/')"
for m in "${models[@]}"; do
  dir="$MODULES/@lenml/tokenizer-$m/models"
  cpp=$(taskset -c 0 bazel-bin/tokenizer/tokenizer_bench "$dir" "$corpus" "$PASSES")
  js=$(taskset -c 0 node bench/tokenizer_bench.js "$MODULES" "$m" "$corpus" "$JS_PASSES")
  c=$(sed -E 's/^cpp MB\/s=([0-9.]+).*/\1/' <<<"$cpp")
  j=$(sed -E 's/^js MB\/s=([0-9.]+).*/\1/' <<<"$js")
  cc=$(sed -E 's/.*cpuMB\/s=([0-9.]+).*/\1/' <<<"$cpp")
  jc=$(sed -E 's/.*cpuMB\/s=([0-9.]+).*/\1/' <<<"$js")
  ct=$(sed -E 's/.*tokens=([0-9]+).*/\1/' <<<"$cpp")
  jt=$(sed -E 's/.*tokens=([0-9]+).*/\1/' <<<"$js")
  echo "$m: $cpp"
  echo "$m: $js"
  echo "$m: ours/js = $(awk -v a="$c" -v b="$j" 'BEGIN{printf "%.2f", a/b}')x wall, $(awk -v a="$cc" -v b="$jc" 'BEGIN{printf "%.2f", a/b}')x CPU; same token count: $([ "$ct" = "$jt" ] && echo yes || echo "NO ($ct vs $jt)")"
done
