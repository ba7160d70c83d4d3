#include "model/ops/cuda/cuda_check.h"

#include <cstdio>
#include <cstdlib>

namespace grpo::cuda {

void DieOnCudaError(cudaError_t err, const char* what, const char* file, int line) {
  std::fprintf(stderr, "fatal: %s failed at %s:%d: %s: %s\n", what, file, line,
               cudaGetErrorName(err), cudaGetErrorString(err));
  std::abort();
}

void DieOnCublasError(cublasStatus_t status, const char* what, const char* file, int line) {
  std::fprintf(stderr, "fatal: %s failed at %s:%d: %s: %s\n", what, file, line,
               cublasGetStatusName(status), cublasGetStatusString(status));
  std::abort();
}

}  // namespace grpo::cuda
