#!/usr/bin/env bash
# Token draws per row, side by side with PyTorch (CPU, one thread each) in one run: greedy and
# temperature-1 unfiltered sampling at the vocabularies of the nano model (512), Qwen3-MoE-mid
# (32000) and Qwen2.5/Qwen3 (151936). Ours is cpu::SampleRow in f64 (bench/sampling_bench.cc);
# PyTorch's is log_softmax + argmax / multinomial in f32 (bench/torch_sampling_bench.py), the way
# the Python frameworks draw on CPU. Prints ms per row and the ratio. Not a test: run it by hand.
#   ROWS=200 bash bench/sampling_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-200}
bazel build -c opt //bench:sampling_bench >/dev/null 2>&1
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%8s %6s %12s %12s %8s\n" vocab T ours_ms torch_ms speedup
for vocab in 512 32000 151936; do
  for t in 0 1; do
    ours=$(bazel-bin/bench/sampling_bench "$vocab" "$t" "$ROWS")
    theirs=$(/usr/bin/python3 bench/torch_sampling_bench.py "$vocab" "$t" "$ROWS")
    python3 -c "
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print('%8d %6g %12.4f %12.4f %7.2fx' % (a['vocab'], a['temperature'], a['ms_per_row'], b['ms_per_row'], b['ms_per_row'] / a['ms_per_row']))" "$ours" "$theirs"
  done
done
