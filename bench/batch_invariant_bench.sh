#!/usr/bin/env bash
# The cost of rollout.batch_invariant, side by side in one run: the same binaries and weights with
# the CPU backend's batch-invariant mode off and on (bench/rollout_bench.cc --batch-invariant,
# bench/model_bench.cc BATCH_INVARIANT=1), for a small MoE with MLA (deepseek_v3-tiny, whose KV
# cache holds expanded keys/values in the mode) and a small dense model (llama-tiny), at THREADS
# threads: rollout prefill and greedy decode tokens/s (batch 1 and 64), and the learner's
# forward (the old-logprob pass) and forward+backward tokens/s. Prints a table and the on/off
# ratios. Not a test: run it by hand.
#   PROMPT_LEN=64 STEPS=16 SEQS=8 LEN=128 REPEATS=2 THREADS=2 bash bench/batch_invariant_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT_LEN=${PROMPT_LEN:-64}; STEPS=${STEPS:-16}; THREADS=${THREADS:-2}
SEQS=${SEQS:-8}; LEN=${LEN:-128}; REPEATS=${REPEATS:-2}
bazel build -c opt //bench:rollout_bench //bench:model_bench //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-bi-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
python3 -c "import json,random; r=random.Random(0); json.dump([[r.randrange(4096) for _ in range($LEN)] for _ in range($SEQS)], open('$W/seqs.json','w'))"
printf "%-18s %-8s %3s %10s %10s %10s %10s %12s\n" model mode thr prefill/s dec_b1/s dec_b64/s fwd_tok/s fwdbwd_tok/s
for preset in deepseek_v3-tiny llama-tiny; do
  bazel-bin/cli/grpo init-model --preset "$preset" --seed 1 --out "$W/$preset" 2>/dev/null
  declare -A roll fwd
  for mode in off on; do
    flag=(); env=0
    if [ "$mode" = on ]; then flag=(--batch-invariant); env=1; fi
    roll[$mode]=$(GRPO_NUM_THREADS=$THREADS bazel-bin/bench/rollout_bench "$W/$preset" "$PROMPT_LEN" "$STEPS" "${flag[@]}")
    fwd[$mode]=$(GRPO_NUM_THREADS=$THREADS BATCH_INVARIANT=$env bazel-bin/bench/model_bench "$W/$preset" "$W/seqs.json" "$REPEATS")
    python3 -c "
import json, sys
r, m = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print('%-18s %-8s %3d %10.0f %10.0f %10.0f %10.0f %12.0f' % (sys.argv[3], sys.argv[4], r['threads'], r['prefill_tok_s'],
      r['decode_b1_tok_s'], r['decode_b64_tok_s'], m['fwd_tok_s'], m['fwdbwd_tok_s']))" "${roll[$mode]}" "${fwd[$mode]}" "$preset" "$mode"
  done
  python3 -c "
import json, sys
a, b, c, d = (json.loads(x) for x in sys.argv[1:5])
print('%-18s on/off       %9.2fx %9.2fx %9.2fx %9.2fx %11.2fx' % (sys.argv[5], b['prefill_tok_s'] / a['prefill_tok_s'],
      b['decode_b1_tok_s'] / a['decode_b1_tok_s'], b['decode_b64_tok_s'] / a['decode_b64_tok_s'],
      d['fwd_tok_s'] / c['fwd_tok_s'], d['fwdbwd_tok_s'] / c['fwdbwd_tok_s']))" "${roll[off]}" "${roll[on]}" "${fwd[off]}" "${fwd[on]}" "$preset"
done

# The nano R1-Zero recipe (MLA + MoE), a few RL steps after a short pretraining, off and on:
# rollout tokens/s (completion tokens / time/rollout) and learner tokens/s (the same tokens /
# time/learn), means over the steps, and the mismatch the run logged.
printf "\n%-18s %-8s %3s %12s %12s %12s\n" recipe mode thr rollout_tok/s learn_tok/s max_mismatch
for mode in off on; do
  GRPO_NUM_THREADS=$THREADS bazel-bin/cli/grpo train recipes/r1zero-nano.yaml --set run.output_dir="$W/runs" \
    --set run.name=$mode --set pretrain.steps=100 --set train.steps=${NANO_STEPS:-6} --set train.eval_size=0 \
    --set rollout.batch_invariant=$([ $mode = on ] && echo true || echo false) --quiet >/dev/null 2>"$W/$mode.err"
  python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)['step'] > 0]
tok = [r['response_len_mean'] * 16 * 8 for r in rows]  # prompts_per_step x group_size of the recipe
roll = sum(tok) / sum(r['time/rollout'] for r in rows)
learn = sum(tok) / sum(r['time/learn'] for r in rows)
print('%-18s %-8s %3s %12.0f %12.0f %12.3g' % ('r1zero-nano', sys.argv[2], sys.argv[3], roll, learn,
      max(r['mismatch/max_abs_logprob'] for r in rows)))" "$W/runs/$mode/metrics.jsonl" "$mode" "$THREADS"
done
