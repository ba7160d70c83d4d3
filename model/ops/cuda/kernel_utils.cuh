// Device helpers shared by the CUDA backend's .cu files: launch geometry, warp and block
// reductions. CUDA syntax: included by .cu files only.
#ifndef GRPO_MODEL_OPS_CUDA_KERNEL_UTILS_CUH_
#define GRPO_MODEL_OPS_CUDA_KERNEL_UTILS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "model/ops/cuda/cuda_check.h"

namespace grpo::cuda {

constexpr int kThreads = 256;  // threads per block of the 1-D kernels
constexpr int kWarp = 32;

// Blocks for a grid-stride loop over n items (at least 1, at most 65535 * 16).
inline unsigned GridFor(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 1048560 ? 1048560 : blocks));
}

// Enqueues kernel<<<grid, block, smem, stream>>>(args...) and checks the launch.
#define GRPO_CUDA_LAUNCH(kernel, grid, block, smem, stream, ...)  \
  do {                                                            \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__);   \
    GRPO_CUDA_CHECK(cudaGetLastError());                          \
  } while (0)

// Grid-stride loop over [0, n).
#define GRPO_GRID_LOOP(i, n)                                                           \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <class T>
__device__ inline T WarpSum(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline float WarpMax(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The sum of every thread's v over the block (blockDim.x a multiple of 32, at most 1024),
// returned to all threads. `shared` holds 32 values. Ends with a barrier, so it can be called
// again right away.
template <class T>
__device__ inline T BlockSum(T v, T* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = WarpSum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / kWarp;
  T total = 0;
  for (int w = 0; w < warps; ++w) total += shared[w];  // in warp order: the same for all threads
  __syncthreads();
  return total;
}

__device__ inline float BlockMax(float v, float* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = WarpMax(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / kWarp;
  float m = -INFINITY;
  for (int w = 0; w < warps; ++w) m = fmaxf(m, shared[w]);
  __syncthreads();
  return m;
}

}  // namespace grpo::cuda

#endif  // GRPO_MODEL_OPS_CUDA_KERNEL_UTILS_CUH_
