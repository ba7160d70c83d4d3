#!/usr/bin/env bash
# Trajectory store write benchmark beside its peer, in one run: our WriteStep path
# (//store:store_bench: validation, protobuf serialization, one atomic WriteBatch per group, WAL
# on, no fsync) against RocksDB's own `db_bench --benchmarks=fillseq` with the same value size,
# number of values, compression (LZ4) and memtable size. Also reports export (read + parse +
# JSONL) throughput. Each pair runs REPEATS times alternately; medians are printed.
#
# Usage: bash bench/store_bench.sh [WORKDIR]   (env: REPEATS=3, MOE_SAMPLES=256, DENSE_SAMPLES=4096)
# Results are recorded in docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d /tmp/store_bench.XXXXXX)}"
REPEATS="${REPEATS:-3}"
DB_BENCH="$(command -v db_bench || command -v rocksdb_db_bench || true)"
[ -n "$DB_BENCH" ] || { echo "db_bench not found (Debian package rocksdb-tools)" >&2; exit 1; }
bazel build -c opt //store:store_bench >&2
BENCH=bazel-bin/store/store_bench

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { grep -o "$1=[0-9.]*" | head -1 | cut -d= -f2; }

run_case() {  # NAME SAMPLES store_bench-args...
  local name="$1" samples="$2"; shift 2
  local ours=() ours_sps=() peer=() exp=() value_size=""
  for ((i = 0; i < REPEATS; i++)); do
    out=$("$BENCH" "$WORK/store" --samples "$samples" "$@")
    value_size=$(grep "value_size=" <<<"$out" | field value_size)
    ours+=("$(grep "write seconds" <<<"$out" | field MB_per_s)")
    ours_sps+=("$(grep "write seconds" <<<"$out" | field samples_per_s)")
    exp+=("$(grep "export seconds" <<<"$out" | field MB_per_s)")
    rm -rf "$WORK/store" "$WORK/dbb"
    line=$("$DB_BENCH" --benchmarks=fillseq --db="$WORK/dbb" --value_size="$value_size" --num="$samples" \
      --compression_type=lz4 --write_buffer_size=134217728 --disable_wal=false --sync=false 2>&1 | grep "^fillseq")
    peer+=("$(awk '{for (i = 1; i <= NF; i++) if ($i == "MB/s") print $(i-1)}' <<<"$line")")
    rm -rf "$WORK/dbb"
  done
  local o p s e
  o=$(printf '%s\n' "${ours[@]}" | median)
  s=$(printf '%s\n' "${ours_sps[@]}" | median)
  p=$(printf '%s\n' "${peer[@]}" | median)
  e=$(printf '%s\n' "${exp[@]}" | median)
  printf '%-34s value %8s B  ours %7.1f MB/s (%7.1f samples/s)  db_bench fillseq %7.1f MB/s  ratio %.2f  export %7.1f MB/s\n' \
    "$name" "$value_size" "$o" "$s" "$p" "$(awk -v a="$o" -v b="$p" 'BEGIN {print a / b}')" "$e"
  echo "  runs: ours [${ours[*]}] db_bench [${peer[*]}] export [${exp[*]}]"
}

echo "store_bench: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $REPEATS repeats, work dir $WORK"
run_case "4k tokens, logprobs, MoE routing" "${MOE_SAMPLES:-256}" --tokens 4096 --moe-layers 48 --top-k 8 --experts 128
run_case "4k tokens, logprobs+raw, dense" "${DENSE_SAMPLES:-4096}" --tokens 4096 --raw-logprobs
rm -rf "$WORK"
