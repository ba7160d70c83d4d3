// LinearWeights over bf16 and FP8-block weights against the reference "widen the whole matrix
// with core's conversions (Tensor::ToF32 / DequantizeFp8Block), then Linear".
//
// Tolerance: the widened tile holds exactly the reference's f32 values (checked bit for bit
// below), so any difference comes from the order of the f32 sums alone. For m > 4 each output
// is one sgemm dot product over the same k as the reference's and almost all outputs come out
// bit-identical (the test prints the count; over 99%), but not all: the reference is one sgemm
// over all n columns, the kernel one sgemm per tile of output rows, and OpenBLAS's edge
// micro-kernels for a remainder of columns accumulate in another order. For m <= 4 (decoding)
// the kernel uses sgemv, whose order differs from sgemm's: about half the outputs differ in the
// last bits. So the assertion is the error bound of an f32 dot product,
// |y - y_ref| <= 1e-6 * sum_k |x_k w_jk| (relative to the magnitude of the sum; a wrong scale,
// code or row is off by far more).
#include "model/ops/cpu/quantized_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/float_formats.h"
#include "core/fp8_block.h"
#include "core/tensor.h"
#include "model/ops/backend.h"
#include "model/ops/cpu/cpu_backend.h"

namespace grpo {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

struct Quantized {
  Tensor f32, bf16, fp8, scale_inv;
  Tensor bf16_ref, fp8_ref;  // core's widening of the whole matrix
};

Quantized Make(int64_t n, int64_t k, uint32_t seed) {
  Quantized q;
  // Rows of very different magnitudes so the FP8 blocks get different scales.
  std::vector<float> w = Random(n * k, seed, 0.05f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) w[r * k + c] *= 1.0f + static_cast<float>((r * 7 + c / 128) % 5);
  q.f32 = *Tensor::FromF32({n, k}, w);
  q.bf16 = *q.f32.CastTo(DType::kBF16);
  auto fp8 = QuantizeFp8Block(q.f32);
  EXPECT_TRUE(fp8.ok());
  q.fp8 = fp8->weight;
  q.scale_inv = fp8->scale_inv;
  q.bf16_ref = q.bf16.ToF32();
  q.fp8_ref = *DequantizeFp8Block(q.fp8, q.scale_inv);
  return q;
}

// The CPU backend's device memory is host memory (cpu_backend.h's HostAsDevice).
template <class T>
auto D(T* p) { return cpu::HostAsDevice(p); }
DevicePtr<const float> D(std::nullptr_t) { return nullptr; }

WeightView ViewOf(const Tensor& w, const Tensor* scale_inv) {
  WeightView v;
  v.dtype = w.dtype();
  v.data = D(w.raw_data());
  v.scales = scale_inv != nullptr ? D(scale_inv->data<float>()) : nullptr;
  v.rows = w.dim(0);
  v.cols = w.dim(1);
  return v;
}

// Checks y against x · ref^T (+ b) within the f32 dot-product bound; returns exact matches.
int64_t ExpectClose(const std::vector<float>& y, const std::vector<float>& x, const Tensor& ref,
                    const float* b, int64_t m, int64_t k, int64_t n, const std::string& what) {
  std::vector<float> want(m * n);
  CpuBackend().Linear(D(x.data()), D(ref.data<float>()), D(b), D(want.data()), m, k, n);
  int64_t exact = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double mag = b != nullptr ? std::fabs(b[j]) : 0.0;
      for (int64_t c = 0; c < k; ++c) mag += std::fabs(double{x[i * k + c]} * ref.data<float>()[j * k + c]);
      const float got = y[i * n + j], exp = want[i * n + j];
      EXPECT_LE(std::fabs(double{got} - exp), 1e-6 * mag) << what << " at (" << i << ", " << j << ")";
      exact += got == exp;
    }
  }
  return exact;
}

class WideningTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (cpu::UseAvx2(GetParam()) != GetParam()) GTEST_SKIP() << "no AVX2 on this CPU";
  }
  void TearDown() override { cpu::UseAvx2(true); }
};

TEST_P(WideningTest, WideningIsExactForEveryFp8CodeAndBf16) {
  // Every non-NaN E4M3 code in one row, scale 0.37 (an inexact binary fraction), against
  // float_formats' conversion times the scale.
  std::vector<uint8_t> codes;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) != 0x7F) codes.push_back(static_cast<uint8_t>(c));
  }
  const int64_t cols = static_cast<int64_t>(codes.size());  // 254: two column blocks
  const float scales[2] = {0.37f, 3.0e-3f};
  WeightView v{DType::kF8E4M3, D(static_cast<const void*>(codes.data())), D(static_cast<const float*>(scales)), 1, cols, 0};
  std::vector<float> out(cols);
  CpuBackend().WidenWeightRows(v, 0, 1, D(out.data()));
  for (int64_t c = 0; c < cols; ++c) {
    const float want = Fp8E4M3ToF32(codes[c]) * scales[c / 128];
    ASSERT_EQ(out[c], want) << "code " << int{codes[c]};
  }
  // bf16 from an odd (unaligned) address.
  const Quantized q = Make(3, 77, 1);
  std::vector<unsigned char> unaligned(q.bf16.nbytes() + 1);
  std::memcpy(unaligned.data() + 1, q.bf16.raw_data(), q.bf16.nbytes());
  WeightView b{DType::kBF16, D(static_cast<const void*>(unaligned.data() + 1)), nullptr, 3, 77, 0};
  std::vector<float> widened(3 * 77);
  CpuBackend().WidenWeightRows(b, 0, 3, D(widened.data()));
  EXPECT_EQ(std::memcmp(widened.data(), q.bf16_ref.raw_data(), widened.size() * sizeof(float)), 0);
  // FP8 rows of a slice starting inside a block row, against core's DequantizeFp8BlockRows.
  const Quantized big = Make(300, 260, 2);
  std::vector<float> slice(50 * 260), ref(50 * 260);
  CpuBackend().WidenWeightRows(ViewOf(big.fp8, &big.scale_inv).Rows(100, 60), 10, 60, D(slice.data()));
  DequantizeFp8BlockRows(big.fp8, big.scale_inv, 110, 160, ref.data());
  EXPECT_EQ(std::memcmp(slice.data(), ref.data(), slice.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Avx2, WideningTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "avx2" : "sse4"; });

struct ShapeCase {
  int64_t m, k, n;
};

class LinearWeightsTest : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(LinearWeightsTest, MatchesWidenThenLinear) {
  const auto [m, k, n] = GetParam();
  const Quantized q = Make(n, k, static_cast<uint32_t>(m * 1000 + k + n));
  const std::vector<float> x = Random(m * k, 7);
  const std::vector<float> bias = Random(n, 8);
  int64_t exact = 0, total = 0;
  for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
    std::vector<float> y(m * n, std::nanf(""));
    CpuBackend().LinearWeights(D(x.data()), ViewOf(q.bf16, nullptr), D(b), D(y.data()), m, k, n);
    exact += ExpectClose(y, x, q.bf16_ref, b, m, k, n, "bf16");
    std::fill(y.begin(), y.end(), std::nanf(""));
    CpuBackend().LinearWeights(D(x.data()), ViewOf(q.fp8, &q.scale_inv), D(b), D(y.data()), m, k, n);
    exact += ExpectClose(y, x, q.fp8_ref, b, m, k, n, "fp8");
    // f32 views are plain Linear.
    std::fill(y.begin(), y.end(), std::nanf(""));
    CpuBackend().LinearWeights(D(x.data()), WeightView::F32(D(q.f32.data<float>()), n, k), D(b), D(y.data()), m,
                               k, n);
    exact += ExpectClose(y, x, q.f32, b, m, k, n, "f32");
    total += 3 * m * n;
  }
  RecordProperty("exact_fraction", std::to_string(static_cast<double>(exact) / total));
  std::printf("m=%lld k=%lld n=%lld: %lld of %lld outputs bit-identical to widen-then-Linear\n",
              static_cast<long long>(m), static_cast<long long>(k), static_cast<long long>(n),
              static_cast<long long>(exact), static_cast<long long>(total));
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, LinearWeightsTest,
    ::testing::Values(ShapeCase{1, 200, 300},   // decode GEMV, k and n not multiples of 128
                      ShapeCase{1, 64, 48},     // k < 128, n < 128
                      ShapeCase{5, 127, 129},   // one past a block edge
                      ShapeCase{33, 130, 5},    // n < 128, prefill-like m
                      ShapeCase{70, 384, 257},  // several tiles and block rows
                      ShapeCase{3, 1000, 140}),  // long k: small decode tiles cross block rows
    [](const auto& info) {
      return "m" + std::to_string(info.param.m) + "_k" + std::to_string(info.param.k) + "_n" +
             std::to_string(info.param.n);
    });

TEST(QuantizedGemm, RowSliceOfABlockQuantizedMatrix) {
  // MLA's kv_a_proj_with_mqa is used as two row slices; the second starts inside a block row.
  const int64_t rows = 300, k = 150;
  const Quantized q = Make(rows, k, 3);
  const std::vector<float> x = Random(4 * k, 9);
  for (const auto& [begin, count] : {std::pair<int64_t, int64_t>{0, 100}, {100, 60}, {250, 50}}) {
    std::vector<float> y(4 * count);
    CpuBackend().LinearWeights(D(x.data()), ViewOf(q.fp8, &q.scale_inv).Rows(begin, count), nullptr,
                               D(y.data()), 4, k, count);
    const Tensor ref = *Tensor::FromF32(
        {count, k}, std::span<const float>(q.fp8_ref.data<float>() + begin * k, count * k));
    ExpectClose(y, x, ref, nullptr, 4, k, count, "rows " + std::to_string(begin));
  }
}

TEST(QuantizedGemm, TilesAreSmall) {
  // The scratch a tile needs stays bounded whatever the layer shape (about 2 MiB at most).
  for (int64_t m : {1, 16, 17, 4096}) {
    for (int64_t k : {64, 896, 4864, 18944}) {
      const int64_t t = cpu::LinearWeightsTileRows(m, k);
      EXPECT_GE(t, 1);
      EXPECT_LE(t, 128);
      EXPECT_LE(t * k * 4, (int64_t{5} << 20) / 2) << m << " " << k;
    }
  }
}

}  // namespace
}  // namespace grpo
