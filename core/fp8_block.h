// FP8 E4M3 block quantization of 2-D weights in the DeepSeek-V3 checkpoint convention.
//
// A weight W of shape [rows, cols] is cut into blocks of kFp8BlockSize x kFp8BlockSize (the last
// row/column of blocks may be partial). Each block b gets one f32 dequantization scale
//   scale_inv[b] = amax(|W in b|) / 448       (1.0 for an all-zero block)
// and its elements are stored as e4m3(W / scale_inv[b]) with round-to-nearest-even and
// saturation (float_formats.h). Dequantization is W' = f32(q) * scale_inv[b]. The scale tensor
// has shape [ceil(rows/128), ceil(cols/128)] and is what checkpoints call `weight_scale_inv`.
#ifndef GRPO_CORE_FP8_BLOCK_H_
#define GRPO_CORE_FP8_BLOCK_H_

#include "core/status.h"
#include "core/tensor.h"

namespace grpo {

inline constexpr int64_t kFp8BlockSize = 128;

struct Fp8BlockWeight {
  Tensor weight;     // F8E4M3, [rows, cols]
  Tensor scale_inv;  // F32, [ceil(rows/128), ceil(cols/128)]
};

// Quantizes a 2-D float tensor (any float dtype; widened to f32). Non-finite values are an
// error naming the first offending element, since they would poison a whole block's scale.
absl::StatusOr<Fp8BlockWeight> QuantizeFp8Block(const Tensor& weight);

// Quantizes block rows [block_row_begin, block_row_end) of a row-major [rows, cols] matrix of
// finite f32 values `w`: their codes into q (row-major [rows, cols], the rows of those blocks
// written) and their scales into scale_inv ([ceil(rows/128), ceil(cols/128)], those block rows
// written), exactly as QuantizeFp8Block does. Backends call it to quantize device memory in
// place, block rows in parallel. Shapes are assumed already checked.
void QuantizeFp8BlockRows(const float* w, int64_t rows, int64_t cols, int64_t block_row_begin,
                          int64_t block_row_end, uint8_t* q, float* scale_inv);

// Dequantizes to a new f32 tensor, checking that the scale shape matches the weight.
absl::StatusOr<Tensor> DequantizeFp8Block(const Tensor& weight, const Tensor& scale_inv);

// Dequantizes rows [row_begin, row_end) of a block-quantized weight into `out` (row-major,
// (row_end-row_begin) x cols floats). The kernels use this to widen tile by tile without ever
// materializing the whole f32 matrix. Shapes are assumed already checked.
void DequantizeFp8BlockRows(const Tensor& weight, const Tensor& scale_inv, int64_t row_begin,
                            int64_t row_end, float* out);

}  // namespace grpo

#endif  // GRPO_CORE_FP8_BLOCK_H_
