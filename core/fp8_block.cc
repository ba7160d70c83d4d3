#include "core/fp8_block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/float_formats.h"

namespace grpo {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

absl::StatusOr<Fp8BlockWeight> QuantizeFp8Block(const Tensor& weight) {
  if (weight.rank() != 2) {
    return absl::InvalidArgumentError("fp8 block quantization needs a 2-D weight, got shape " +
                                   ShapeToString(weight.shape()));
  }
  if (!IsFloatingPoint(weight.dtype())) {
    return absl::InvalidArgumentError("fp8 block quantization needs a float weight, got " +
                                   std::string(DTypeName(weight.dtype())));
  }
  const Tensor w = weight.dtype() == DType::kF32 && weight.writable() ? weight : weight.ToF32();
  const float* src = w.data<float>();
  const int64_t rows = w.dim(0), cols = w.dim(1);
  const int64_t brows = CeilDiv(rows, kFp8BlockSize), bcols = CeilDiv(cols, kFp8BlockSize);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (!std::isfinite(src[i])) {
      return absl::InvalidArgumentError("fp8 block quantization: non-finite value at [" +
                                     std::to_string(i / cols) + ", " + std::to_string(i % cols) +
                                     "]");
    }
  }
  Fp8BlockWeight out{Tensor::Zeros(DType::kF8E4M3, {rows, cols}),
                     Tensor::Zeros(DType::kF32, {brows, bcols})};
  QuantizeFp8BlockRows(src, rows, cols, 0, brows, out.weight.mutable_data<uint8_t>(),
                       out.scale_inv.mutable_data<float>());
  return out;
}

void QuantizeFp8BlockRows(const float* src, int64_t rows, int64_t cols, int64_t block_row_begin,
                          int64_t block_row_end, uint8_t* q, float* scales) {
  const int64_t bcols = CeilDiv(cols, kFp8BlockSize);
  for (int64_t br = block_row_begin; br < block_row_end; ++br) {
    const int64_t r0 = br * kFp8BlockSize, r1 = std::min(rows, r0 + kFp8BlockSize);
    for (int64_t bc = 0; bc < bcols; ++bc) {
      const int64_t c0 = bc * kFp8BlockSize, c1 = std::min(cols, c0 + kFp8BlockSize);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(src[r * cols + c]));
      }
      const float scale_inv = amax > 0.0f ? amax / kFp8E4M3Max : 1.0f;
      scales[br * bcols + bc] = scale_inv;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) q[r * cols + c] = F32ToFp8E4M3(src[r * cols + c] / scale_inv);
      }
    }
  }
}

void DequantizeFp8BlockRows(const Tensor& weight, const Tensor& scale_inv, int64_t row_begin,
                            int64_t row_end, float* out) {
  const int64_t cols = weight.dim(1);
  const int64_t bcols = scale_inv.dim(1);
  const auto* q = static_cast<const uint8_t*>(weight.raw_data());
  const auto* scale_bytes = static_cast<const unsigned char*>(scale_inv.raw_data());
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t br = r / kFp8BlockSize;
    float* dst = out + (r - row_begin) * cols;
    for (int64_t bc = 0; bc < bcols; ++bc) {
      float s;
      std::memcpy(&s, scale_bytes + (br * bcols + bc) * sizeof(float), sizeof(float));
      const int64_t c0 = bc * kFp8BlockSize, c1 = std::min(cols, c0 + kFp8BlockSize);
      for (int64_t c = c0; c < c1; ++c) dst[c] = Fp8E4M3ToF32(q[r * cols + c]) * s;
    }
  }
}

absl::StatusOr<Tensor> DequantizeFp8Block(const Tensor& weight, const Tensor& scale_inv) {
  if (weight.rank() != 2 || weight.dtype() != DType::kF8E4M3) {
    return absl::InvalidArgumentError("fp8 dequantization needs a 2-D F8_E4M3 weight, got " +
                                   std::string(DTypeName(weight.dtype())) + " " +
                                   ShapeToString(weight.shape()));
  }
  const Shape want{CeilDiv(weight.dim(0), kFp8BlockSize), CeilDiv(weight.dim(1), kFp8BlockSize)};
  if (scale_inv.dtype() != DType::kF32 || scale_inv.shape() != want) {
    return absl::InvalidArgumentError("fp8 dequantization: weight_scale_inv must be F32 " +
                                   ShapeToString(want) + " for weight " +
                                   ShapeToString(weight.shape()) + ", got " +
                                   std::string(DTypeName(scale_inv.dtype())) + " " +
                                   ShapeToString(scale_inv.shape()));
  }
  Tensor out = Tensor::Zeros(DType::kF32, weight.shape());
  DequantizeFp8BlockRows(weight, scale_inv, 0, weight.dim(0), out.mutable_data<float>());
  return out;
}

}  // namespace grpo
