#!/usr/bin/env bash
# Runs the reward benchmark and its Python peer side by side (see docs/PERFORMANCE.md).
#   bash bench/reward_bench/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${1:-5}
bazel build -c opt //bench/reward_bench >/dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
./bazel-bin/bench/reward_bench/reward_bench --seconds "$S"
python3 bench/reward_bench/python_peer.py --seconds "$S"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
