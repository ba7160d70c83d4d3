#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, from binaries built beforehand on one without a GPU.
#
#   tools/gpu_check.sh prepare   (here: Bazel and nvcc, no GPU needed)
#       builds the gpu-tagged test binaries and the CLI, and packs them with the shared libraries
#       they need (except the CUDA libraries and glibc, which the GPU machine has) into
#       gpu_bundle/bundle.tar.xz (ignored by git).
#   tools/gpu_check.sh run [checks] [hf] [bench]   (on the GPU machine, in the repository root:
#       no Bazel, no network; the groups named, all three by default)
#       unpacks the bundle, finds the CUDA 13 runtime and cuBLASLt (the toolkit's lib64 or the pip
#       wheels' nvidia/*/lib), then runs, each step under its own time limit:
#         checks  every op against the CPU backend, whole models of each family against the CPU
#                 backend, the FP8 quantization kernel, greedy `grpo generate` on cuda vs cpu, and a
#                 few steps of the nano recipe's `grpo train` on cuda;
#         hf      tools/hf_parity.py: the nano model of each family against HF transformers on the
#                 same checkpoint (f32 and bf16 logprobs, greedy generation), with the GPU
#                 machine's python3 (PyTorch + transformers);
#         bench   bench/gpu_bench (built into the bundle): the device's copy bandwidth and bf16 GEMM
#                 rate, batch-1 decode of Qwen2.5-0.5B-, Qwen2.5-7B- and Qwen3-30B-A3B-shaped models
#                 (bf16 and FP8) against the HBM roofline and at batch 64 and 256, learner
#                 forward+backward MFU on the 0.5B and 1.5B shapes beside PyTorch
#                 (bench/torch_gpu_learner_bench.py: transformers, sdpa, bf16) on the same card.
#       All of it stays within GPU_CHECK_BUDGET_S seconds (default 465, under 8 minutes): a step
#       is cut to what is left, and one that cannot start any more says so in its row. Prints a
#       table last: check, result (PASS, FAIL, SKIP: could not run, or "-": a measurement),
#       numbers. Exits 0 only if every check ran and passed; without a usable GPU it stops at once
#       saying why (exit 2). GPU_CHECK_LOGS=FILE.tar.gz keeps every step's log.
set -u
LOGS_TAR=${GPU_CHECK_LOGS:+$(realpath -m "$GPU_CHECK_LOGS")}  # before the cd: relative to the caller
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
BUNDLE=gpu_bundle
TESTS=(model/cuda_backend_test model/cuda_model_test core/cuda/fp8_block_cuda_test)

die() { echo "gpu_check: $*" >&2; exit 2; }

prepare() {
  command -v bazel >/dev/null || die "prepare needs bazel (run it on the build machine)"
  local targets=(//cli:grpo //bench:gpu_bench)
  for t in "${TESTS[@]}"; do targets+=("//${t%/*}:${t##*/}"); done
  bazel build "${targets[@]}" || die "bazel build failed"
  local stage
  stage=$(mktemp -d)
  mkdir -p "$stage/bin" "$stage/lib"
  cp bazel-bin/cli/grpo bazel-bin/bench/gpu_bench "$stage/bin/"
  for t in "${TESTS[@]}"; do cp "bazel-bin/$t" "$stage/bin/"; done
  chmod u+w "$stage"/bin/*
  # Every shared library the binaries load, except glibc's and the CUDA libraries (the GPU
  # machine's own, matching its driver).
  for b in bazel-bin/cli/grpo bazel-bin/bench/gpu_bench "${TESTS[@]/#/bazel-bin/}"; do  # in place: their rpaths resolve
    ldd "$b" | awk '/=> \// {print $3}'
  done | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*) ;;
      libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnccl.so*) ;;
      *) cp -L "$lib" "$stage/lib/" ;;
    esac
  done
  strip --strip-unneeded "$stage"/bin/* "$stage"/lib/* 2>/dev/null
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE"
  tar -C "$stage" -cJf "$BUNDLE/bundle.tar.xz" bin lib || die "packing the bundle failed"
  rm -rf "$stage"
  local bytes
  bytes=$(stat -c %s "$BUNDLE/bundle.tar.xz")
  echo "gpu_check: $BUNDLE/bundle.tar.xz: $((bytes / 1048576)) MiB ($(tar -tJf "$BUNDLE/bundle.tar.xz" | grep -c /.) files)"
  [ "$bytes" -lt $((60 * 1048576)) ] || die "the bundle is over 60 MiB"
}

# Directories holding the CUDA 13 runtime and cuBLASLt on this machine.
cuda_library_path() {
  local dirs=() d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
  done
  local site
  site=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
  for d in $site; do
    for lib in "$d"/nvidia/*/lib "$d"/nvidia/cu13/lib; do [ -d "$lib" ] && dirs+=("$lib"); done
  done
  local IFS=:
  echo "${dirs[*]}"
}

ROWS=()
FAILED=0
row() {  # check, result (PASS, FAIL, SKIP, or - for a measurement), numbers
  ROWS+=("$(printf '%-34s %-5s %s' "$1" "$2" "$3")")
  case "$2" in PASS|-) ;; *) FAILED=1 ;; esac
}

# What is left of the run's time budget, in seconds.
BUDGET_S=${GPU_CHECK_BUDGET_S:-465}
budget_left() { echo $((BUDGET_S - (SECONDS - RUN_START))); }
# A step's time limit: its own, cut to what is left of the budget (at least 1 s).
cap() {
  local left
  left=$(budget_left)
  [ "$left" -ge 1 ] || left=1
  echo $(($1 < left ? $1 : left))
}
# True (and a SKIP row for `name`) when under 10 s of the budget are left.
out_of_time() {
  [ "$(budget_left)" -lt 10 ] || return 1
  row "$1" SKIP "not run: the ${BUDGET_S} s budget of gpu_check run was spent"
}

# Runs a step that prints its own table rows ("ROW<TAB>check<TAB>result<TAB>numbers", as
# tools/hf_parity.py and bench/gpu_bench do) under a time limit, and adds them. kind "check": a
# timeout or a crash fails, exit 2 (cannot run here) is a SKIP; kind "bench": rows are
# measurements, a timeout or exit 2 leaves a "-" row saying what was not measured.
run_rows() {
  local name=$1 kind=$2 limit log="$WORK/${1// /_}.log"
  out_of_time "$name" && return
  limit=$(cap "$3")
  shift 3
  timeout "$limit" "$@" > "$log" 2> "$log.err"
  local rc=$? n=0 check result numbers
  while IFS=$'\t' read -r _ check result numbers; do
    row "$check" "$result" "$numbers"
    n=$((n + 1))
  done < <(grep -a $'^ROW\t' "$log")
  local why
  why=$(grep -av '^$' "$log.err" | tail -1)
  case "$rc:$kind" in
    0:*|1:check) [ $n -gt 0 ] || row "$name" FAIL "rc $rc but no result rows; ${why:-no message}" ;;
    124:check) row "$name" FAIL "timed out after ${limit}s (the rows above finished)" ;;
    124:bench) row "$name" - "stopped at its ${limit}s limit (the rows above finished)" ;;
    2:check) row "$name" SKIP "cannot run here: ${why:-no message}" ;;
    2:bench) row "$name" - "not measured: ${why:-no message}" ;;
    *) tail -5 "$log.err"; row "$name" FAIL "rc $rc: ${why:-no message}" ;;
  esac
}

# A gtest binary under a time limit: PASS/FAIL, tests passed/run, the largest RELERR printed.
run_gtest() {
  local name=$1 limit log="$WORK/$1.log"
  out_of_time "$name" && return
  limit=$(cap "$2")
  timeout "$limit" "$WORK/bin/$name" > "$log" 2>&1
  local rc=$? passed failed worst
  passed=$(grep -c '^\[       OK \]' "$log")
  failed=$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$log")
  worst=$(awk '$1 == "RELERR" && $NF + 0 > w {w = $NF + 0; n = $2; for (i = 3; i < NF; ++i) n = n " " $i}
               END {if (n != "") printf "worst rel err %.3g (%s)", w, n}' "$log")
  grep -E '^\[  FAILED  \]|Failure|error:|fatal' "$log" | head -20
  local result=PASS
  [ $rc -eq 0 ] || result=FAIL
  [ $rc -eq 124 ] && worst="timed out after ${limit}s; $worst"
  row "$name" "$result" "$passed passed, $failed failed; $worst"
}

check_generate() {
  local preset=$1 dir="$WORK/gen-$1"
  out_of_time "generate $preset" && return
  mkdir -p "$dir"
  timeout "$(cap 30)" "$WORK/bin/grpo" init-model --preset "$preset" --out "$dir/model" --seed 3 --init-std 0.1 > /dev/null 2>&1 ||
    { row "generate $preset" FAIL "init-model failed"; return; }
  printf '{"tokens":[1,2,3,4,5]}\n{"tokens":[7,9]}\n{"tokens":[11,12,13,14,15,16,17,18,19,20,21]}\n' > "$dir/in.jsonl"
  local b
  for b in cpu cuda; do
    timeout "$(cap 60)" "$WORK/bin/grpo" generate --model "$dir/model" --input "$dir/in.jsonl" --output "$dir/$b.jsonl" \
      --temperature 0 --max-new-tokens 24 --n 2 --backend $b > "$dir/$b.log" 2>&1 ||
      { local rc=$?; tail -3 "$dir/$b.log"; row "generate $preset" FAIL "--backend $b failed (rc $rc)"; return; }
  done
  # Tokens of every sample, cpu vs cuda (greedy: should be identical).
  local same total
  total=$(grep -o '"tokens":\[[0-9,]*\]' "$dir/cpu.jsonl" | wc -l)
  same=$(paste -d'\n' <(grep -o '"tokens":\[[0-9,]*\]' "$dir/cpu.jsonl") <(grep -o '"tokens":\[[0-9,]*\]' "$dir/cuda.jsonl") |
         paste - - | awk -F'\t' '$1 == $2' | wc -l)
  local result=PASS
  [ "$same" -eq "$total" ] && [ "$total" -gt 0 ] || result=FAIL
  row "generate $preset greedy cuda=cpu" $result "$same/$total token sequences identical"
}

check_train() {
  local dir="$WORK/train" start end
  out_of_time "train r1zero-nano --backend cuda" && return
  mkdir -p "$dir"
  start=$(date +%s)
  (cd "$dir" && timeout "$(cap 150)" "$WORK/bin/grpo" train "$ROOT/recipes/r1zero-nano.yaml" --backend cuda --quiet \
     --set pretrain.steps=20 --set train.steps=3 --set rollout.prompts_per_step=4 --set rollout.group_size=4 \
     --set train.eval_size=8 --set rollout.max_new_tokens=24 --set run.name=gpu-check > train.log 2>&1)
  local rc=$?
  end=$(date +%s)
  local metrics="$dir/runs/gpu-check/metrics.jsonl" steps=0 last=""
  if [ -f "$metrics" ]; then
    steps=$(grep -c '"step"' "$metrics")
    last=$(tail -1 "$metrics" | grep -o '"reward_mean":[-0-9.e]*' | head -1)
  fi
  [ $rc -eq 0 ] || tail -5 "$dir/train.log"
  row "train r1zero-nano --backend cuda" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" \
      "rc $rc, $((end - start)) s, $steps metric rows, last $last"
}

# The learner's forward+backward on `preset`, ours and PyTorch's, on 4 sequences of 1024 tokens.
learn_pair() {
  local preset=$1
  run_rows "bench learn $preset" bench "$2" "$WORK/bin/gpu_bench" learn "$preset" --seqs 4 --seq-len 1024
  "$WORK/bin/gpu_bench" config "$preset" "$WORK/config-$preset" ||
    { row "bench learn $preset torch" FAIL "gpu_bench config failed"; return; }
  run_rows "bench learn $preset torch" bench "$3" python3 bench/torch_gpu_learner_bench.py \
    "$WORK/config-$preset" "$preset" 4 1024
}

run_checks() {
  run_gtest cuda_backend_test 120
  run_gtest cuda_model_test 150
  run_gtest fp8_block_cuda_test 30
  check_generate qwen2-nano
  check_generate deepseek_v3-nano
  check_train
}

run_bench() {
  run_rows "bench ceilings" bench 30 "$WORK/bin/gpu_bench" ceilings
  run_rows "bench decode qwen2.5-0.5b" bench 45 "$WORK/bin/gpu_bench" decode qwen2.5-0.5b
  learn_pair qwen2.5-0.5b 45 60
  run_rows "bench decode qwen2.5-7b" bench 60 "$WORK/bin/gpu_bench" decode qwen2.5-7b
  learn_pair qwen2.5-1.5b 60 75
  run_rows "bench decode qwen3-30b-a3b" bench 90 "$WORK/bin/gpu_bench" decode qwen3-30b-a3b
}

run() {
  local groups=("$@") g
  [ ${#groups[@]} -gt 0 ] || groups=(checks hf bench)
  for g in "${groups[@]}"; do
    case "$g" in checks|hf|bench) ;; *) usage ;; esac
  done
  [ -f "$BUNDLE/bundle.tar.xz" ] || die "no $BUNDLE/bundle.tar.xz: run 'tools/gpu_check.sh prepare' on the build machine first"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  tar -C "$WORK" -xJf "$BUNDLE/bundle.tar.xz" || die "unpacking the bundle failed"
  export LD_LIBRARY_PATH="$WORK/lib:$(cuda_library_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local missing
  missing=$(for b in "$WORK"/bin/*; do ldd "$b" | grep 'not found'; done | sort -u)
  [ -z "$missing" ] || die "libraries not found (the CUDA 13 runtime expected under /usr/local/cuda/lib64 or pip's nvidia/*/lib): $missing"
  local info
  info=$(timeout 30 "$WORK/bin/grpo" info 2>&1) || die "grpo info failed: $info"
  local cuda_line
  cuda_line=$(grep -E '^  cuda +(available|unavailable)' <<<"$info" | sed 's/  */ /g')
  if ! grep -qE '^  cuda +available' <<<"$info"; then
    # GPU_CHECK_WITHOUT_DEVICE=1 goes on anyway (every check then fails): for testing this script.
    [ "${GPU_CHECK_WITHOUT_DEVICE:-0}" = 1 ] || die "the cuda backend is not usable here:${cuda_line:- not in grpo info}"
  fi
  grep -E '^  cuda:' <<<"$info"
  RUN_START=$SECONDS
  for g in "${groups[@]}"; do
    case "$g" in
      checks) run_checks ;;
      hf) run_rows "hf parity" check 150 python3 tools/hf_parity.py --grpo "$WORK/bin/grpo" --work "$WORK/hf" ;;
      bench) run_bench ;;
    esac
  done
  if [ -n "$LOGS_TAR" ]; then
    (cd "$WORK" && find . -name '*.log' -o -name '*.log.err' | tar -czf "$LOGS_TAR" -T -) ||
      echo "gpu_check: could not write $LOGS_TAR" >&2
  fi
  echo
  echo "gpu_check on $(grep -E '^  cuda:0' <<<"$info" | sed 's/^ *//'), $((SECONDS - RUN_START)) s"
  printf '%-34s %-5s %s\n' check result numbers
  printf '%s\n' "${ROWS[@]}"
  return $FAILED
}

usage() { echo "usage: tools/gpu_check.sh prepare|run [checks] [hf] [bench]" >&2; exit 2; }

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) usage ;;
esac
