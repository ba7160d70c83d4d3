#!/usr/bin/env bash
# Batch-1 decoding against the memory-bandwidth bound on models whose weights do not fit in the
# CPU caches: bench/moe-mid.config.json (a qwen3_moe of 1.6 GB f32, 417 MB read per token) and
# the qwen2.5-0.5b architecture (1976 MB f32), random weights, 1 and 2 threads. Writes ~4 GB
# under /tmp. Not a test: run it by hand (a few minutes).   bash bench/rollout_bound_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bazel build -c opt //bench:rollout_bench //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-bound-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
bazel-bin/cli/grpo init-model --config bench/moe-mid.config.json --seed 1 --out "$W/moe-mid" 2>/dev/null
bazel-bin/cli/grpo init-model --preset qwen2.5-0.5b --seed 1 --out "$W/qwen2.5-0.5b" 2>/dev/null
printf "%-14s %3s %10s %8s %10s %8s\n" model thr dec_b1/s GB/s bound/s of_bound
for m in moe-mid qwen2.5-0.5b; do
  for t in 2 1; do
    r=$(GRPO_NUM_THREADS=$t bazel-bin/bench/rollout_bench "$W/$m" 16 32 --decode-b1-only)
    python3 -c "
import json, sys
d = json.loads(sys.argv[1])
print('%-14s %3s %10.1f %8.1f %10.1f %7.0f%%' % (sys.argv[2], sys.argv[3], d['decode_b1_tok_s'], d['stream_gb_s'],
      d['bound_b1_tok_s'], 100 * d['decode_b1_tok_s'] / d['bound_b1_tok_s']))" "$r" "$m" "$t"
  done
done
