// FP8 E4M3 128x128 block quantization on an NVIDIA GPU, bit-identical to QuantizeFp8Block
// (core/fp8_block.h): same scales (amax / 448, 1 for an all-zero block), same round-to-nearest-
// even with saturation. The learner uses it to quantize weights before pushing them to rollout
// engines. This header is plain C++: it can be included where no CUDA compiler runs.
#ifndef GRPO_CORE_CUDA_FP8_BLOCK_CUDA_H_
#define GRPO_CORE_CUDA_FP8_BLOCK_CUDA_H_

#include <cstdint>

#include "core/fp8_block.h"
#include "core/status.h"
#include "core/tensor.h"

namespace grpo::cuda {

// Number of usable CUDA devices; 0 where there is no GPU or no driver.
int DeviceCount();

// Quantizes a row-major [rows, cols] f32 matrix already on the device into `q` (rows*cols
// bytes) and `scale_inv` (ceil(rows/128)*ceil(cols/128) floats), on `stream` (a cudaStream_t,
// or nullptr for the default stream). Asynchronous.
absl::Status QuantizeFp8BlockDevice(const float* w, int64_t rows, int64_t cols, uint8_t* q,
                              float* scale_inv, void* stream);

// Host convenience: copies a 2-D f32 tensor to the GPU, quantizes it, copies the result back.
absl::StatusOr<Fp8BlockWeight> QuantizeFp8BlockOnGpu(const Tensor& weight);

}  // namespace grpo::cuda

#endif  // GRPO_CORE_CUDA_FP8_BLOCK_CUDA_H_
