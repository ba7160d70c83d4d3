#!/usr/bin/env bash
# Installs llama.cpp through its pinned npm binding node-llama-cpp (prebuilt CPU builds, no
# compiler needed) into third_party/llamacpp/node_modules (gitignored). Used only by the
# side-by-side decode benchmark bench/llama_cpp_bench.sh; never linked into anything.
# Needs network access to the npm registry; run it once before the benchmark.
#
#   bash tools/llama_cpp_npm.sh        # idempotent; pinned version
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=third_party/llamacpp
VERSION=3.21.1
mkdir -p "$DIR"
if [ -f "$DIR/node_modules/node-llama-cpp/package.json" ] &&
   grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/node-llama-cpp/package.json"; then
  echo "llama_cpp_npm: node-llama-cpp $VERSION already installed in $DIR/node_modules"
  exit 0
fi
cat >"$DIR/package.json" <<JSON
{
  "name": "grpo-llama-cpp-reference",
  "private": true,
  "description": "Benchmark-only peer for bench/llama_cpp_bench.sh (tools/llama_cpp_npm.sh)",
  "type": "module",
  "dependencies": { "node-llama-cpp": "$VERSION" }
}
JSON
# The prebuilt binaries arrive as optional dependencies (@node-llama-cpp/linux-x64...); never
# fall back to building llama.cpp from source here.
(cd "$DIR" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true \
   npm install --no-audit --no-fund --no-package-lock --loglevel=error)
rm -f "$DIR/package.json"
echo "llama_cpp_npm: installed into $DIR/node_modules"
