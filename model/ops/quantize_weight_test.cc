// Backend::QuantizeWeight against the host conversions it must match bit for bit:
// core/fp8_block.h QuantizeFp8Block (codes and block scales) and Tensor::CastTo(BF16), on shapes
// that leave partial 128x128 blocks at the edges, with blocks of very different magnitudes and
// an all-zero block; and its count of non-finite values, accumulated over calls.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/fp8_block.h"
#include "core/tensor.h"
#include "model/ops/backend.h"
#include "model/ops/cpu_guarded/guarded_backend.h"

namespace grpo {
namespace {

// Values whose scale changes from block to block (so each block gets its own scale_inv), with
// block (0, 0) all zero when the matrix has more than one block.
Tensor Matrix(int64_t rows, int64_t cols, uint32_t seed) {
  Tensor t = Tensor::Zeros(DType::kF32, {rows, cols});
  float* v = t.mutable_data<float>();
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const bool zero_block = rows > kFp8BlockSize || cols > kFp8BlockSize;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t br = r / kFp8BlockSize, bc = c / kFp8BlockSize;
      const float magnitude = std::ldexp(1.0f, static_cast<int>((br * 7 + bc * 3) % 20) - 10);
      v[r * cols + c] = zero_block && br == 0 && bc == 0 ? 0.0f : n(rng) * magnitude;
    }
  }
  return t;
}

std::vector<uint8_t> Download(Backend& be, const Buffer& b) {
  std::vector<uint8_t> out(static_cast<size_t>(b.bytes()));
  be.CopyDeviceToHost(b.raw(), out.data(), b.bytes());
  be.Synchronize();
  return out;
}

std::vector<uint8_t> Bytes(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw_data());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

Buffer UploadTensor(Backend& be, const Tensor& t) {
  Buffer b(&be, t.numel(), DType::kF32);
  be.CopyHostToDevice(t.raw_data(), b.raw(), t.nbytes());
  return b;
}

struct Shape2 {
  int64_t rows, cols;
};
const Shape2 kShapes[] = {{1, 1}, {3, 300}, {127, 129}, {128, 128}, {130, 257}, {257, 5}, {300, 384}};

TEST(QuantizeWeightTest, Fp8MatchesQuantizeFp8BlockOnOddShapes) {
  Backend& be = BackendForTests();
  uint32_t seed = 1;
  for (const Shape2 s : kShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + "x" + std::to_string(s.cols));
    const Tensor w = Matrix(s.rows, s.cols, seed++);
    auto want = QuantizeFp8Block(w);
    ASSERT_TRUE(want.ok()) << want.status();
    const Buffer src = UploadTensor(be, w);
    Buffer q(&be, w.numel(), DType::kF8E4M3);
    Buffer scales(&be, want->scale_inv.numel(), DType::kF32);
    be.QuantizeWeight(src.data(), s.rows, s.cols, DType::kF8E4M3, q.raw(), scales.data(), nullptr);
    EXPECT_EQ(Download(be, q), Bytes(want->weight));
    EXPECT_EQ(Download(be, scales), Bytes(want->scale_inv));
  }
}

TEST(QuantizeWeightTest, Bf16AndF32MatchTheHostConversions) {
  Backend& be = BackendForTests();
  uint32_t seed = 100;
  for (const Shape2 s : kShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + "x" + std::to_string(s.cols));
    const Tensor w = Matrix(s.rows, s.cols, seed++);
    auto bf16 = w.CastTo(DType::kBF16);
    ASSERT_TRUE(bf16.ok());
    const Buffer src = UploadTensor(be, w);
    Buffer narrow(&be, w.numel(), DType::kBF16);
    be.QuantizeWeight(src.data(), s.rows, s.cols, DType::kBF16, narrow.raw(), nullptr, nullptr);
    EXPECT_EQ(Download(be, narrow), Bytes(*bf16));
    Buffer copy(&be, w.numel(), DType::kF32);
    be.QuantizeWeight(src.data(), s.rows, s.cols, DType::kF32, copy.raw(), nullptr, nullptr);
    EXPECT_EQ(Download(be, copy), Bytes(w));
  }
}

TEST(QuantizeWeightTest, CountsNonFiniteValuesAcrossCalls) {
  Backend& be = BackendForTests();
  Tensor w = Matrix(130, 140, 7);
  float* v = w.mutable_data<float>();
  v[5] = std::numeric_limits<float>::quiet_NaN();
  v[130 * 140 - 1] = std::numeric_limits<float>::infinity();
  v[200] = -std::numeric_limits<float>::infinity();
  const Buffer bad = UploadTensor(be, w);
  const Buffer good = UploadTensor(be, Matrix(130, 140, 8));
  Buffer counter = Upload(be, std::vector<int32_t>{0});
  Buffer q(&be, w.numel(), DType::kF8E4M3);
  Buffer scales(&be, 2 * 2, DType::kF32);
  be.QuantizeWeight(good.data(), 130, 140, DType::kF8E4M3, q.raw(), scales.data(), counter.i32());
  EXPECT_EQ(DownloadI32(be, counter), std::vector<int32_t>{0});
  be.QuantizeWeight(bad.data(), 130, 140, DType::kF8E4M3, q.raw(), scales.data(), counter.i32());
  Buffer narrow(&be, w.numel(), DType::kBF16);
  be.QuantizeWeight(bad.data(), 130, 140, DType::kBF16, narrow.raw(), nullptr, counter.i32());
  EXPECT_EQ(DownloadI32(be, counter), std::vector<int32_t>{6});  // 3 per call, accumulated
}

TEST(QuantizeWeightTest, MovesNothingBetweenHostAndDevice) {
  Backend& be = BackendForTests();
  const Tensor w = Matrix(300, 384, 9);
  const Buffer src = UploadTensor(be, w);
  Buffer q(&be, w.numel(), DType::kF8E4M3);
  Buffer scales(&be, 3 * 3, DType::kF32);
  be.ResetTransferStats();
  be.QuantizeWeight(src.data(), 300, 384, DType::kF8E4M3, q.raw(), scales.data(), nullptr);
  be.Synchronize();
  EXPECT_EQ(be.transfer_stats().total_bytes(), 0);
}

}  // namespace
}  // namespace grpo
