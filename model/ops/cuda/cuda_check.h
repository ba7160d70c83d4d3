// GRPO_CUDA_CHECK: the one check around every CUDA runtime, cuBLAS/cuBLASLt call and kernel
// launch of the CUDA backend. A failure is a fatal error naming the call, its file and line and
// the library's error string, then abort: a backend op has no way to return a status, and a
// failed launch or a sticky device error leaves the stream's results undefined. (Running out of
// memory is not reported here: the allocator throws DeviceOutOfMemory, device_memory.h.)
//
//   GRPO_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
//   MyKernel<<<grid, block, 0, stream>>>(...);
//   GRPO_CUDA_CHECK(cudaGetLastError());  // the launch
#ifndef GRPO_MODEL_OPS_CUDA_CUDA_CHECK_H_
#define GRPO_MODEL_OPS_CUDA_CUDA_CHECK_H_

#include <cublasLt.h>
#include <cublas_api.h>
#include <cuda_runtime_api.h>

namespace grpo::cuda {

// Aborts with `what` (the call's text), file:line and the error's name and description.
[[noreturn]] void DieOnCudaError(cudaError_t err, const char* what, const char* file, int line);
[[noreturn]] void DieOnCublasError(cublasStatus_t status, const char* what, const char* file,
                                   int line);

inline void CheckCall(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) DieOnCudaError(err, what, file, line);
}
inline void CheckCall(cublasStatus_t status, const char* what, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) DieOnCublasError(status, what, file, line);
}

}  // namespace grpo::cuda

#define GRPO_CUDA_CHECK(call) ::grpo::cuda::CheckCall((call), #call, __FILE__, __LINE__)

#endif  // GRPO_MODEL_OPS_CUDA_CUDA_CHECK_H_
