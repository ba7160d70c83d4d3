#include "model/ops/cuda/cuda_check.h"

#include <cstdio>
#include <cstdlib>

namespace grpo::cuda {
namespace {

// The status's enumerator name (cuBLAS's own cublasGetStatusName is in libcublas, which the
// backend does not link: it loads cuBLASLt when it starts, cuda_backend.cc).
const char* CublasStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

}  // namespace

void DieOnCudaError(cudaError_t err, const char* what, const char* file, int line) {
  std::fprintf(stderr, "fatal: %s failed at %s:%d: %s: %s\n", what, file, line,
               cudaGetErrorName(err), cudaGetErrorString(err));
  std::abort();
}

void DieOnCublasError(cublasStatus_t status, const char* what, const char* file, int line) {
  std::fprintf(stderr, "fatal: %s failed at %s:%d: %s (cublasStatus_t %d)\n", what, file, line,
               CublasStatusName(status), static_cast<int>(status));
  std::abort();
}

}  // namespace grpo::cuda
