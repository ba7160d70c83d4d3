#!/usr/bin/env bash
# Model core speed, side by side with PyTorch eager in one run: forward and forward+backward
# tokens/s of a small MoE (deepseek_v3-tiny, ~20M parameters) and a small dense model
# (llama-tiny) on the same weights and tokens, with 1 and 2 threads on both sides, and each
# process's peak memory. Prints a table and the ratios, and for the dense model at 1 thread the
# floor set by its linear layers' sgemm calls alone (bench/model_bench.cc). PyTorch's OpenBLAS
# is pinned to the same thread count (bench/torch_model_bench.py). Both sides run the same
# OpenBLAS under the same environment; on an AVX-512 machine whose environment pins
# OPENBLAS_CORETYPE=Haswell, compare with `env -u OPENBLAS_CORETYPE bash bench/model_bench.sh`
# (OpenBLAS then picks its AVX-512 kernels for both). Not a test: run it by hand.
#   SEQS=8 LEN=256 REPEATS=3 bash bench/model_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEQS=${SEQS:-8}; LEN=${LEN:-256}; REPEATS=${REPEATS:-3}
bazel build -c opt //bench:model_bench //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-model-bench.XXXXXX)
python3 -c "import json,random; r=random.Random(0); json.dump([[r.randrange(4096) for _ in range($LEN)] for _ in range($SEQS)], open('$W/seqs.json','w'))"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset: OpenBLAS detects the CPU>}; both sides use this OpenBLAS"
printf "%-18s %-8s %7s %14s %14s %10s\n" model impl threads fwd_tok/s fwdbwd_tok/s peak_MB
for preset in deepseek_v3-tiny llama-tiny; do
  bazel-bin/cli/grpo init-model --preset "$preset" --seed 1 --out "$W/$preset" 2>"$W/$preset.info"
  params=$(grep -oE "[0-9.]+[MB] parameters" "$W/$preset.info")
  for t in 1 2; do
    ours=$(GRPO_NUM_THREADS=$t bazel-bin/bench/model_bench "$W/$preset" "$W/seqs.json" "$REPEATS")
    theirs=$(/usr/bin/python3 bench/torch_model_bench.py "$W/$preset" "$W/seqs.json" "$REPEATS" "$t")
    [ "$t" = 1 ] && [ "$preset" = deepseek_v3-tiny ] && python3 -c "import json,sys; print('OpenBLAS kernels:', json.loads(sys.argv[1])['blas_core'])" "$ours"
    for r in "$ours" "$theirs"; do
      python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%-18s %-8s %7d %14.0f %14.0f %10.0f' % (sys.argv[2], d['impl'], d['threads'], d['fwd_tok_s'], d['fwdbwd_tok_s'], d['peak_rss_mb']))" "$r" "$preset"
    done
    python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print('%-18s ratio    %7d %13.2fx %13.2fx   (%s)' % (sys.argv[3], a['threads'], a['fwd_tok_s']/b['fwd_tok_s'], a['fwdbwd_tok_s']/b['fwdbwd_tok_s'], sys.argv[4]))" "$ours" "$theirs" "$preset" "$params"
    python3 -c "
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if 'gemm_fwd_tok_s' in a:
    print('%-18s GEMM floor %5d %14.0f %14.0f   (linear layers alone, 1-thread sgemm: ours at %.0f%% / %.0f%%, PyTorch at %.0f%% / %.0f%%)' % (
        sys.argv[3], a['threads'], a['gemm_fwd_tok_s'], a['gemm_fwdbwd_tok_s'],
        100 * a['fwd_tok_s'] / a['gemm_fwd_tok_s'], 100 * a['fwdbwd_tok_s'] / a['gemm_fwdbwd_tok_s'],
        100 * b['fwd_tok_s'] / a['gemm_fwd_tok_s'], 100 * b['fwdbwd_tok_s'] / a['gemm_fwdbwd_tok_s']))" "$ours" "$theirs" "$preset"
  done
done
rm -rf "$W"
