#!/usr/bin/env bash
# Weight push speed, side by side with a plain memcpy of the same bytes in one run: the learner
# quantizes a model's random f32 masters (FP8 128x128 blocks for the projection matrices, bf16
# for the rest) and streams them over loopback gRPC to an in-process engine that verifies every
# chunk's crc32c and the summary and assembles f32 weights (WeightAssembler), until the ack.
# GB/s counts wire bytes (FP8 + scales + bf16). Prints one line per repeat, then the cold first
# push and the median of the warm ones (run 3 on, when freed buffers are being reused).
# Not a test: run it by hand.
#   PRESET=qwen2.5-0.5b LAYERS=0 REPEATS=5 FORMAT=fp8 bash bench/weight_push_bench.sh
# (LAYERS=0 keeps the preset's layer count.)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-qwen2.5-0.5b}; LAYERS=${LAYERS:-0}; REPEATS=${REPEATS:-5}; FORMAT=${FORMAT:-fp8}
bazel build -c opt //bench:weight_push_bench >/dev/null 2>&1
out=$(bazel-bin/bench/weight_push_bench "$PRESET" "$LAYERS" "$REPEATS" "$FORMAT")
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
r0 = rows[0]
print("%s, %d layers, %s, %d threads: f32 masters %.1f MB -> wire %.1f MB" % (
    r0["preset"], r0["layers"], r0["format"], r0["threads"], r0["master_bytes"] / 1e6,
    r0["wire_bytes"] / 1e6))
print("%6s %9s %9s %9s %9s %10s %9s %11s %7s %13s" % ("run", "encode_s", "push_s", "recv_fin",
      "total_s", "total_GB/s", "memcpy_s", "memcpy_GB/s", "ratio", "fresh_cp_GB/s"))
def line(name, r):
    print("%6s %9.3f %9.3f %9.3f %9.3f %10.3f %9.4f %11.2f %7.1f %13.3f" % (name, r["encode_s"],
          r["push_s"], r["receiver_finish_s"], r["total_s"], r["total_gb_s"], r["memcpy_s"],
          r["memcpy_gb_s"], r["ratio"], r["fresh_memcpy_gb_s"]))
for i, r in enumerate(rows):
    line(str(i + 1), r)
# Run 1 allocates every buffer fresh; run 2 still does for the decoded weights (the engine holds
# run 1's until run 2's replace them); from run 3 on both sides reuse their freed buffers.
warm = rows[2:]
if warm:
    med = {k: statistics.median(r[k] for r in warm) for k in warm[0] if isinstance(warm[0][k], (int, float))}
    line("warm", med)
    print("cold (run 1): encode+push %.2f s, %.1fx a memcpy of the same bytes" % (rows[0]["total_s"], rows[0]["ratio"]))
    print("warm (median of runs 3..%d): encode+push %.2f s = %.3f GB/s of wire bytes, %.1fx a memcpy of the same bytes" % (
        len(rows), med["total_s"], med["total_gb_s"], med["ratio"]))
PY
