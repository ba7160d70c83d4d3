#include "core/cuda/fp8_block_cuda.h"

#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

namespace grpo::cuda {
namespace {

constexpr int kBlock = 128;
constexpr int kThreads = 256;

absl::Status CudaError(const char* what, cudaError_t err) {
  return absl::InternalError(std::string(what) + ": " + cudaGetErrorString(err));
}

// One thread block per 128x128 tile: a max-reduction of |w| over the tile, then every thread
// quantizes its share of the tile with the tile's scale.
__global__ void QuantizeFp8BlockKernel(const float* __restrict__ w, int64_t rows, int64_t cols,
                                       uint8_t* __restrict__ q, float* __restrict__ scale_inv) {
  const int64_t br = blockIdx.y, bc = blockIdx.x;
  const int64_t r0 = br * kBlock, c0 = bc * kBlock;
  const int tile_rows = static_cast<int>(rows - r0 < kBlock ? rows - r0 : kBlock);
  const int tile_cols = static_cast<int>(cols - c0 < kBlock ? cols - c0 : kBlock);
  const int n = tile_rows * tile_cols;

  float amax = 0.0f;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const int r = i / tile_cols, c = i % tile_cols;
    amax = fmaxf(amax, fabsf(w[(r0 + r) * cols + c0 + c]));
  }
  __shared__ float partial[kThreads];
  partial[threadIdx.x] = amax;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] = fmaxf(partial[threadIdx.x], partial[threadIdx.x + stride]);
    __syncthreads();
  }
  // IEEE division (nvcc's default -prec-div=true) so the scale equals the CPU's bit for bit.
  const float s = partial[0] > 0.0f ? __fdiv_rn(partial[0], 448.0f) : 1.0f;
  if (threadIdx.x == 0) scale_inv[br * gridDim.x + bc] = s;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const int r = i / tile_cols, c = i % tile_cols;
    const int64_t idx = (r0 + r) * cols + c0 + c;
    q[idx] = static_cast<uint8_t>(__nv_cvt_float_to_fp8(__fdiv_rn(w[idx], s), __NV_SATFINITE, __NV_E4M3));
  }
}

constexpr int kWarp = 32;

// One warp per (row, 128-column block) of x: the block's amax by shuffles, then its codes, with
// the same IEEE divisions as QuantizeFp8BlockKernel (a row is a [1, cols] matrix there).
__global__ void QuantizeFp8RowBlocksKernel(const float* __restrict__ x, int64_t rows,
                                           int64_t padded_rows, int64_t cols,
                                           uint8_t* __restrict__ q, float* __restrict__ scales) {
  const int lane = threadIdx.x % kWarp;
  const int64_t blocks_per_row = (cols + kBlock - 1) / kBlock;
  const int64_t warps = padded_rows * blocks_per_row;
  const int64_t warps_per_block = blockDim.x / kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * warps_per_block;
  for (int64_t id = blockIdx.x * warps_per_block + threadIdx.x / kWarp; id < warps; id += stride) {
    const int64_t r = id / blocks_per_row, b = id % blocks_per_row, c0 = b * kBlock;
    const int n = static_cast<int>(cols - c0 < kBlock ? cols - c0 : kBlock);
    uint8_t* codes = q + r * cols + c0;
    if (r >= rows) {  // padding: zero codes, unit scale
      for (int i = lane; i < n; i += kWarp) codes[i] = 0;
      if (lane == 0) scales[b * padded_rows + r] = 1.0f;
      continue;
    }
    const float* values = x + r * cols + c0;
    float amax = 0.0f;
    for (int i = lane; i < n; i += kWarp) amax = fmaxf(amax, fabsf(values[i]));
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    }
    const float s = amax > 0.0f ? __fdiv_rn(amax, 448.0f) : 1.0f;
    if (lane == 0) scales[b * padded_rows + r] = s;
    for (int i = lane; i < n; i += kWarp) {
      codes[i] = static_cast<uint8_t>(
          __nv_cvt_float_to_fp8(__fdiv_rn(values[i], s), __NV_SATFINITE, __NV_E4M3));
    }
  }
}

}  // namespace

absl::Status QuantizeFp8RowBlocksDevice(const float* x, int64_t rows, int64_t padded_rows,
                                        int64_t cols, uint8_t* q, float* scales, void* stream) {
  if (rows <= 0 || padded_rows < rows || cols <= 0) {
    return absl::InvalidArgumentError("QuantizeFp8RowBlocksDevice: rows " + std::to_string(rows) +
                                      ", padded rows " + std::to_string(padded_rows) + ", cols " +
                                      std::to_string(cols) + " (need 0 < rows <= padded rows, cols > 0)");
  }
  const int64_t warps = padded_rows * ((cols + kBlock - 1) / kBlock);
  const int64_t warps_per_block = kThreads / kWarp;
  const int64_t blocks = std::min<int64_t>((warps + warps_per_block - 1) / warps_per_block, 1 << 20);
  QuantizeFp8RowBlocksKernel<<<static_cast<unsigned>(blocks), kThreads, 0,
                               static_cast<cudaStream_t>(stream)>>>(x, rows, padded_rows, cols, q,
                                                                    scales);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return CudaError("QuantizeFp8RowBlocksKernel launch", err);
  return absl::OkStatus();
}

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

absl::Status QuantizeFp8BlockDevice(const float* w, int64_t rows, int64_t cols, uint8_t* q,
                              float* scale_inv, void* stream) {
  if (rows <= 0 || cols <= 0) return absl::InvalidArgumentError("empty matrix");
  const dim3 grid(static_cast<unsigned>((cols + kBlock - 1) / kBlock),
                  static_cast<unsigned>((rows + kBlock - 1) / kBlock));
  QuantizeFp8BlockKernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(w, rows, cols, q,
                                                                                 scale_inv);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return CudaError("QuantizeFp8BlockKernel launch", err);
  return absl::OkStatus();
}

absl::StatusOr<Fp8BlockWeight> QuantizeFp8BlockOnGpu(const Tensor& weight) {
  if (weight.rank() != 2 || weight.dtype() != DType::kF32) {
    return absl::InvalidArgumentError("QuantizeFp8BlockOnGpu needs a 2-D F32 tensor, got " +
                                   std::string(DTypeName(weight.dtype())) + " " +
                                   ShapeToString(weight.shape()));
  }
  if (DeviceCount() == 0) return absl::UnavailableError("no CUDA device");
  const int64_t rows = weight.dim(0), cols = weight.dim(1);
  const int64_t brows = (rows + kBlock - 1) / kBlock, bcols = (cols + kBlock - 1) / kBlock;
  Fp8BlockWeight out{Tensor::Zeros(DType::kF8E4M3, {rows, cols}),
                     Tensor::Zeros(DType::kF32, {brows, bcols})};
  float* d_w = nullptr;
  uint8_t* d_q = nullptr;
  float* d_s = nullptr;
  absl::Status status;
  cudaError_t err;
  if ((err = cudaMalloc(&d_w, weight.nbytes())) != cudaSuccess ||
      (err = cudaMalloc(&d_q, out.weight.nbytes())) != cudaSuccess ||
      (err = cudaMalloc(&d_s, out.scale_inv.nbytes())) != cudaSuccess) {
    status = CudaError("cudaMalloc", err);
  } else if ((err = cudaMemcpy(d_w, weight.raw_data(), weight.nbytes(), cudaMemcpyHostToDevice)) !=
             cudaSuccess) {
    status = CudaError("cudaMemcpy to device", err);
  } else {
    status = QuantizeFp8BlockDevice(d_w, rows, cols, d_q, d_s, nullptr);
    if (status.ok() &&
        ((err = cudaMemcpy(out.weight.mutable_raw_data(), d_q, out.weight.nbytes(),
                           cudaMemcpyDeviceToHost)) != cudaSuccess ||
         (err = cudaMemcpy(out.scale_inv.mutable_raw_data(), d_s, out.scale_inv.nbytes(),
                           cudaMemcpyDeviceToHost)) != cudaSuccess)) {
      status = CudaError("cudaMemcpy to host", err);
    }
  }
  cudaFree(d_w);
  cudaFree(d_q);
  cudaFree(d_s);
  if (!status.ok()) return status;
  return out;
}

}  // namespace grpo::cuda
