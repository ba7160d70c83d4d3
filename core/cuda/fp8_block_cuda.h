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

// The activation side of a DeepSeek-style FP8 GEMM (the 1x128 blocks cuBLASLt's
// CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F mode reads): each row of the row-major [rows, cols] f32
// matrix `x` on the device is cut into blocks of 128 columns (the last one partial), and each
// block is quantized exactly as QuantizeFp8Block quantizes a [1, cols] matrix: scale = amax / 448
// (1 for an all-zero block), codes e4m3(x / scale) rounded to nearest even, saturating. Codes go
// to `q` (row-major [padded_rows, cols] bytes) and the scale of (row r, block b) to
// scales[b * padded_rows + r] (row-major [ceil(cols/128), padded_rows]: the rows of one block
// contiguous, cuBLASLt's "N-major" layout). Rows [rows, padded_rows) are padding: codes 0,
// scales 1. A NaN in x makes its code NaN; an infinity makes its block's codes unspecified.
// Needs 0 < rows <= padded_rows and cols > 0 (InvalidArgument otherwise). Asynchronous on
// `stream` (a cudaStream_t, or nullptr for the default stream).
absl::Status QuantizeFp8RowBlocksDevice(const float* x, int64_t rows, int64_t padded_rows,
                                        int64_t cols, uint8_t* q, float* scales, void* stream);

// Host convenience: copies a 2-D f32 tensor to the GPU, quantizes it, copies the result back.
absl::StatusOr<Fp8BlockWeight> QuantizeFp8BlockOnGpu(const Tensor& weight);

}  // namespace grpo::cuda

#endif  // GRPO_CORE_CUDA_FP8_BLOCK_CUDA_H_
