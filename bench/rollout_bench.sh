#!/usr/bin/env bash
# Rollout engine speed, side by side with PyTorch eager generating with a KV cache in one run:
# prefill tokens/s, greedy decode tokens/s at batch 1 and 64, and a group of 16 sharing its
# prompt vs 16 independent requests, for a small MoE (qwen3_moe-tiny) and a small dense model
# (llama-tiny), same thread count on both sides; plus the memory-bandwidth bound of batch-1
# decoding (active weight bytes per token / STREAM-like triad bandwidth measured in the same run).
# Not a test: run it by hand.   PROMPT_LEN=128 STEPS=32 THREADS=2 bash bench/rollout_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT_LEN=${PROMPT_LEN:-128}; STEPS=${STEPS:-32}; THREADS=${THREADS:-2}
bazel build -c opt //bench:rollout_bench //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-rollout-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
printf "%-16s %-8s %3s %10s %10s %10s %9s %9s %8s %8s %9s\n" model impl thr prefill/s dec_b1/s dec_b64/s g16_shr_s g16_ind_s GB/s act_MB bound_b1
for preset in qwen3_moe-tiny llama-tiny; do
  bazel-bin/cli/grpo init-model --preset "$preset" --seed 1 --out "$W/$preset" 2>/dev/null
  ours=$(GRPO_NUM_THREADS=$THREADS bazel-bin/bench/rollout_bench "$W/$preset" "$PROMPT_LEN" "$STEPS")
  theirs=$(/usr/bin/python3 bench/torch_rollout_bench.py "$W/$preset" "$PROMPT_LEN" "$STEPS" "$THREADS")
  for r in "$ours" "$theirs"; do
    python3 -c "
import json, sys
d = json.loads(sys.argv[1])
g = lambda k, f: (f % d[k]) if k in d else '-'
print('%-16s %-8s %3d %10s %10s %10s %9s %9s %8s %8s %9s' % (sys.argv[2], d['impl'], d['threads'],
      g('prefill_tok_s', '%.0f'), g('decode_b1_tok_s', '%.0f'), g('decode_b64_tok_s', '%.0f'),
      g('group16_shared_s', '%.3f'), g('group16_indep_s', '%.3f'), g('stream_gb_s', '%.1f'),
      g('active_weight_mb', '%.1f'), g('bound_b1_tok_s', '%.0f')))" "$r" "$preset"
  done
  python3 -c "
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print('%-16s ratio        %9.2fx %9.2fx %9.2fx %8.2fx %8.2fx   (grpo/pytorch; g16: time, lower is better)' % (sys.argv[3],
      a['prefill_tok_s'] / b['prefill_tok_s'], a['decode_b1_tok_s'] / b['decode_b1_tok_s'],
      a['decode_b64_tok_s'] / b['decode_b64_tok_s'], a['group16_shared_s'] / b['group16_shared_s'],
      a['group16_indep_s'] / b['group16_indep_s']))" "$ours" "$theirs" "$preset"
done
