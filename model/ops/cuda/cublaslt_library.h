// cuBLASLt, loaded when the CUDA backend first needs it (dlopen of libcublasLt.so.<major>) rather
// than linked: the library maps ~540 MB of address space, which every binary linking the backend
// (every `grpo` command, on machines without a GPU too) would otherwise pay at startup.
#ifndef GRPO_MODEL_OPS_CUDA_CUBLASLT_LIBRARY_H_
#define GRPO_MODEL_OPS_CUDA_CUBLASLT_LIBRARY_H_

#include <cublasLt.h>

#include "core/status.h"

namespace grpo::cuda {

// The cuBLASLt entry points the backend calls, with their declared signatures.
struct CublasLtApi {
  decltype(&cublasLtCreate) Create;
  decltype(&cublasLtMatmul) Matmul;
  decltype(&cublasLtMatmulAlgoGetHeuristic) MatmulAlgoGetHeuristic;
  decltype(&cublasLtMatmulDescCreate) MatmulDescCreate;
  decltype(&cublasLtMatmulDescDestroy) MatmulDescDestroy;
  decltype(&cublasLtMatmulDescSetAttribute) MatmulDescSetAttribute;
  decltype(&cublasLtMatmulPreferenceCreate) MatmulPreferenceCreate;
  decltype(&cublasLtMatmulPreferenceDestroy) MatmulPreferenceDestroy;
  decltype(&cublasLtMatmulPreferenceSetAttribute) MatmulPreferenceSetAttribute;
  decltype(&cublasLtMatrixLayoutCreate) MatrixLayoutCreate;
  decltype(&cublasLtMatrixLayoutDestroy) MatrixLayoutDestroy;
};

// The library's file name, "libcublasLt.so.13" for the toolkit this build compiled against.
const char* CublasLtLibraryName();

// The process's cuBLASLt, loaded on the first call (thread-safe; the outcome is cached).
// FailedPrecondition naming the library and the loader's message when it cannot be loaded or
// lacks an entry point.
absl::StatusOr<const CublasLtApi*> LoadCublasLt();

}  // namespace grpo::cuda

#endif  // GRPO_MODEL_OPS_CUDA_CUBLASLT_LIBRARY_H_
