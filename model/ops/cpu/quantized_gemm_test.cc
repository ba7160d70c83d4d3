// LinearWeights over bf16 and FP8-block weights against the reference "widen the whole matrix
// with core's conversions (Tensor::ToF32 / DequantizeFp8Block), then Linear", and against the
// same products summed in double, for every decode kernel this CPU can run.
//
// Tolerance: for bf16 every kernel multiplies exactly the reference's f32 weight values (the
// widening is checked bit for bit below), and so does widen+sgemm for FP8, so any difference
// comes from the order of the f32 sums alone. The AVX2 and AVX-512 kernels multiply an FP8
// code's exact value by x times the block scale (one rounding, where the reference rounds code
// times scale once): the same bound per product. The assertion is the error bound of an f32
// dot product, |y - y_ref| <= 1e-6 * sum_k |x_k w_jk| (a wrong scale, code or row is off by far
// more). The AVX512_BF16 kernel carries x as two bf16 (|x - hi - lo| <= 2^-18 |x|), which adds
// up to 2^-18 * sum_k |x_k w_jk| for bf16 weights: its bound is 5e-6 * sum_k |x_k w_jk|. Most
// outputs of the widen+sgemm path come out bit-identical to the reference (the test prints the
// count).
#include "model/ops/cpu/quantized_gemm.h"

#include <gtest/gtest.h>

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/float_formats.h"
#include "core/fp8_block.h"
#include "core/tensor.h"
#include "model/ops/backend.h"
#include "model/ops/cpu/cpu_backend.h"
#include "model/ops/cpu/quantized_test_weights.h"

namespace grpo {
namespace {

using test::Random;
using Quantized = test::QuantizedWeights;
Quantized Make(int64_t n, int64_t k, uint32_t seed) { return test::MakeQuantizedWeights(n, k, seed); }

// The CPU backend's device memory is host memory (cpu_backend.h's HostAsDevice).
template <class T>
auto D(T* p) { return cpu::HostAsDevice(p); }

WeightView ViewOf(const Tensor& w, const Tensor* scale_inv) {
  WeightView v;
  v.dtype = w.dtype();
  v.data = D(w.raw_data());
  v.scales = scale_inv != nullptr ? D(scale_inv->data<float>()) : nullptr;
  v.rows = w.dim(0);
  v.cols = w.dim(1);
  return v;
}

// Checks y against x · ref^T (+ b) computed by Linear (f32) and in double, within `tol` times
// sum_k |x_k w_jk|; returns how many outputs equal Linear's exactly.
int64_t ExpectClose(const std::vector<float>& y, const std::vector<float>& x, const Tensor& ref,
                    const float* b, int64_t m, int64_t k, int64_t n, const std::string& what,
                    double tol = 1e-6) {
  std::vector<float> want(m * n);
  CpuBackend().Linear(D(x.data()), D(ref.data<float>()), D(b), D(want.data()), m, k, n);
  int64_t exact = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double mag = b != nullptr ? std::fabs(b[j]) : 0.0;
      double sum = b != nullptr ? b[j] : 0.0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = double{x[i * k + c]} * ref.data<float>()[j * k + c];
        mag += std::fabs(p);
        sum += p;
      }
      const float got = y[i * n + j], exp = want[i * n + j];
      EXPECT_LE(std::fabs(double{got} - exp), tol * mag) << what << " at (" << i << ", " << j << ")";
      EXPECT_LE(std::fabs(double{got} - sum), tol * mag) << what << " vs double at (" << i << ", "
                                                         << j << ")";
      exact += got == exp;
    }
  }
  return exact;
}

// 0: SSE4.1 only, 1: AVX2 only, 2: the default (AVX-512, and VBMI for FP8, where the CPU has
// them).
class WideningTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    const bool avx2 = GetParam() >= 1;
    if (cpu::UseAvx2(avx2) != avx2) GTEST_SKIP() << "no AVX2 on this CPU";
    cpu::UseAvx512Widening(GetParam() == 2);
  }
  void TearDown() override {
    cpu::UseAvx2(true);
    cpu::UseAvx512Widening(true);
  }
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
  std::vector<float> want(cols);
  for (int64_t c = 0; c < cols; ++c) {
    want[c] = Fp8E4M3ToF32(codes[c]) * scales[c / 128];
    ASSERT_EQ(out[c], want[c]) << "code " << int{codes[c]};
  }
  // The same values when the thread's MXCSR treats denormal inputs as zero (DAZ, which some
  // libraries set): subnormal codes must not read as 0.
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x0040);
  std::fill(out.begin(), out.end(), -1.0f);
  CpuBackend().WidenWeightRows(v, 0, 1, D(out.data()));
  _mm_setcsr(csr);
  for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(out[c], want[c]) << "DAZ, code " << int{codes[c]};
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

INSTANTIATE_TEST_SUITE_P(Isa, WideningTest, ::testing::Values(0, 1, 2), [](const auto& info) {
  return std::string(info.param == 0 ? "sse4" : info.param == 1 ? "avx2" : "best");
});

struct ShapeCase {
  int64_t m, k, n;
};

constexpr cpu::DecodeKernel kKernels[] = {cpu::DecodeKernel::kWidenThenSgemm,
                                          cpu::DecodeKernel::kAvx2, cpu::DecodeKernel::kAvx512,
                                          cpu::DecodeKernel::kAvx512Bf16};

// Uses the kernel for the test (skipped where the CPU lacks it), then restores the default.
class KernelTest {
 protected:
  bool Use(cpu::DecodeKernel kernel) {
    saved_ = cpu::CurrentDecodeKernel();
    return cpu::SetDecodeKernel(kernel);
  }
  void Restore() { cpu::SetDecodeKernel(saved_); }
  static double Bf16Tolerance(cpu::DecodeKernel kernel) {
    return kernel == cpu::DecodeKernel::kAvx512Bf16 ? 5e-6 : 1e-6;
  }
  cpu::DecodeKernel saved_ = cpu::DecodeKernel::kWidenThenSgemm;
};

class LinearWeightsTest
    : public ::testing::TestWithParam<std::tuple<cpu::DecodeKernel, ShapeCase>>,
      public KernelTest {
 protected:
  void SetUp() override {
    if (!Use(std::get<0>(GetParam()))) GTEST_SKIP() << "this CPU cannot run the kernel";
  }
  void TearDown() override { Restore(); }
};

TEST_P(LinearWeightsTest, MatchesWidenThenLinear) {
  const auto [kernel, shape] = GetParam();
  const auto [m, k, n] = shape;
  const Quantized q = Make(n, k, static_cast<uint32_t>(m * 1000 + k + n));
  const std::vector<float> x = Random(m * k, 7);
  const std::vector<float> bias = Random(n, 8);
  // The bf16 weights also from an odd address (an unaligned view).
  std::vector<unsigned char> unaligned(q.bf16.nbytes() + 1);
  std::memcpy(unaligned.data() + 1, q.bf16.raw_data(), q.bf16.nbytes());
  const WeightView bf16_odd{DType::kBF16, D(static_cast<const void*>(unaligned.data() + 1)), nullptr, n, k, 0};
  int64_t exact = 0, total = 0;
  for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
    std::vector<float> y(m * n, std::nanf(""));
    CpuBackend().LinearWeights(D(x.data()), ViewOf(q.bf16, nullptr), D(b), D(y.data()), m, k, n);
    exact += ExpectClose(y, x, q.bf16_ref, b, m, k, n, "bf16", Bf16Tolerance(kernel));
    std::vector<float> y_odd(m * n, std::nanf(""));
    CpuBackend().LinearWeights(D(x.data()), bf16_odd, D(b), D(y_odd.data()), m, k, n);
    EXPECT_EQ(std::memcmp(y.data(), y_odd.data(), y.size() * sizeof(float)), 0)
        << "unaligned bf16 view";
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
  std::printf("%s m=%lld k=%lld n=%lld: %lld of %lld outputs bit-identical to widen-then-Linear\n",
              cpu::DecodeKernelName(kernel), static_cast<long long>(m),
              static_cast<long long>(k), static_cast<long long>(n),
              static_cast<long long>(exact), static_cast<long long>(total));
}

TEST_P(LinearWeightsTest, RowsOfXAreIndependent) {
  // Each row of y is the same whatever other rows are multiplied with it (row blocking of the
  // register kernels) and however many threads split the work: row i of a batch equals the
  // product of x[i] alone, bit for bit.
  const auto [kernel, shape] = GetParam();
  const auto [m, k, n] = shape;
  if (m > cpu::kDecodeMaxRows) GTEST_SKIP() << "sgemm path";
  const Quantized q = Make(n, k, 11);
  const std::vector<float> x = Random(m * k, 12);
  for (const WeightView& v : {ViewOf(q.bf16, nullptr), ViewOf(q.fp8, &q.scale_inv)}) {
    std::vector<float> y(m * n), one(n);
    CpuBackend().LinearWeights(D(x.data()), v, nullptr, D(y.data()), m, k, n);
    for (int64_t i = 0; i < m; ++i) {
      if (kernel == cpu::DecodeKernel::kWidenThenSgemm && m > 4) break;  // sgemm vs sgemv
      CpuBackend().LinearWeights(D(x.data() + i * k), v, nullptr, D(one.data()), 1, k, n);
      EXPECT_EQ(std::memcmp(one.data(), y.data() + i * n, n * sizeof(float)), 0)
          << DTypeName(v.dtype) << " row " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, LinearWeightsTest,
    ::testing::Combine(
        ::testing::ValuesIn(kKernels),
        ::testing::Values(ShapeCase{1, 200, 300},    // decode GEMV, k and n not multiples of 128
                          ShapeCase{1, 64, 48},      // k < 128, n < 128
                          ShapeCase{2, 7, 3},        // k below one vector, n below a group
                          ShapeCase{5, 127, 129},    // one past a block edge
                          ShapeCase{16, 896, 67},    // a GRPO group, the Qwen2.5-0.5B width
                          ShapeCase{33, 130, 5},     // n < 128, prefill-like m
                          ShapeCase{64, 161, 19},    // the most rows of the register kernels
                          ShapeCase{70, 384, 257},   // several tiles and block rows (sgemm)
                          ShapeCase{3, 1000, 140})),  // long k: crosses block rows
    [](const auto& info) {
      const ShapeCase& s = std::get<1>(info.param);
      return std::string(cpu::DecodeKernelName(std::get<0>(info.param)) ==
                                 std::string("widen+sgemm")
                             ? "widen"
                             : cpu::DecodeKernelName(std::get<0>(info.param))) +
             "_m" + std::to_string(s.m) + "_k" + std::to_string(s.k) + "_n" + std::to_string(s.n);
    });

class RowSliceTest : public ::testing::TestWithParam<cpu::DecodeKernel>, public KernelTest {
 protected:
  void SetUp() override {
    if (!Use(GetParam())) GTEST_SKIP() << "this CPU cannot run the kernel";
  }
  void TearDown() override { Restore(); }
};

TEST_P(RowSliceTest, RowSliceOfABlockQuantizedMatrix) {
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
    ExpectClose(y, x, ref, nullptr, 4, k, count, "fp8 rows " + std::to_string(begin));
    CpuBackend().LinearWeights(D(x.data()), ViewOf(q.bf16, nullptr).Rows(begin, count), nullptr,
                               D(y.data()), 4, k, count);
    const Tensor ref16 = *Tensor::FromF32(
        {count, k}, std::span<const float>(q.bf16_ref.data<float>() + begin * k, count * k));
    ExpectClose(y, x, ref16, nullptr, 4, k, count, "bf16 rows " + std::to_string(begin),
                Bf16Tolerance(GetParam()));
  }
}

TEST_P(RowSliceTest, RowsOfXAreIndependentAcrossBlockRows) {
  // A slice starting at row 250: its groups of 4 rows start 2 rows before the 128-row block edge
  // at 256, so FP8 groups are cut there (one block row of scales per group). 7 rows of x take
  // the path that widens each group's codes once (more rows than one tile of either ISA); each
  // row alone takes the register path: the same outputs bit for bit.
  const int64_t rows = 300, k = 300, m = 7;
  const Quantized q = Make(rows, k, 4);
  const std::vector<float> x = Random(m * k, 10);
  const WeightView v = ViewOf(q.fp8, &q.scale_inv).Rows(250, 50);
  std::vector<float> y(m * 50), one(50);
  CpuBackend().LinearWeights(D(x.data()), v, nullptr, D(y.data()), m, k, 50);
  const Tensor ref = *Tensor::FromF32(
      {50, k}, std::span<const float>(q.fp8_ref.data<float>() + 250 * k, 50 * k));
  ExpectClose(y, x, ref, nullptr, m, k, 50, "fp8 rows 250, 7 rows of x");
  if (GetParam() == cpu::DecodeKernel::kWidenThenSgemm) return;  // sgemm vs sgemv
  for (int64_t i = 0; i < m; ++i) {
    CpuBackend().LinearWeights(D(x.data() + i * k), v, nullptr, D(one.data()), 1, k, 50);
    EXPECT_EQ(std::memcmp(one.data(), y.data() + i * 50, 50 * sizeof(float)), 0) << "row " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, RowSliceTest, ::testing::ValuesIn(kKernels),
                         [](const auto& info) {
                           return std::string(info.param == cpu::DecodeKernel::kWidenThenSgemm
                                                  ? "widen"
                                                  : cpu::DecodeKernelName(info.param));
                         });

TEST(QuantizedGemm, TheBestExactKernelOfThisCpuIsTheDefault) {
  // This machine's CPU features decide; each kernel implies the ones before it.
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const cpu::DecodeKernel chosen = cpu::CurrentDecodeKernel();
  std::printf("decode kernel: %s\n", cpu::DecodeKernelName(chosen));
  EXPECT_EQ(chosen, avx512 ? cpu::DecodeKernel::kAvx512
                    : avx2 ? cpu::DecodeKernel::kAvx2
                           : cpu::DecodeKernel::kWidenThenSgemm);
  EXPECT_TRUE(cpu::SetDecodeKernel(cpu::DecodeKernel::kWidenThenSgemm));
  EXPECT_EQ(cpu::SetDecodeKernel(cpu::DecodeKernel::kAvx2), avx2);
  EXPECT_EQ(cpu::SetDecodeKernel(cpu::DecodeKernel::kAvx512), avx512);
  EXPECT_EQ(cpu::SetDecodeKernel(cpu::DecodeKernel::kAvx512Bf16),
            avx512 && __builtin_cpu_supports("avx512bf16"));
  cpu::SetDecodeKernel(chosen);
}

// The AVX-512 FP8 kernel widening codes with VBMI gives the bits of the one widening
// them through IEEE halves (vcvtph2ps), on every non-NaN code (subnormals included), block
// scales over many binades, every tile height of the register kernel and more rows of x than a
// tile (the codes widened once into a buffer), and x whose scaled
// products would leave the f32 range in the VBMI kernel's operands (x huge or tiny, denormal
// inputs flushed), where it must fall back to the half kernel.
TEST(QuantizedGemm, Fp8VbmiKernelGivesTheBitsOfTheHalfKernel) {
  if (!cpu::UseFp8Vbmi(true)) GTEST_SKIP() << "no AVX512_VBMI on this CPU";
  const cpu::DecodeKernel saved = cpu::CurrentDecodeKernel();
  ASSERT_TRUE(cpu::SetDecodeKernel(cpu::DecodeKernel::kAvx512));
  std::mt19937 rng(5);
  // Returns y; *ran_vbmi: whether the call ran the VBMI kernel (its call counter moved).
  auto run = [](const std::vector<float>& x, const WeightView& v, int64_t m, int64_t k, int64_t n,
                bool vbmi, bool* ran_vbmi = nullptr) {
    cpu::UseFp8Vbmi(vbmi);
    std::vector<float> y(m * n, std::nanf(""));
    const int64_t calls = cpu::Fp8VbmiCalls();
    CpuBackend().LinearWeights(D(x.data()), v, nullptr, D(y.data()), m, k, n);
    if (ran_vbmi != nullptr) *ran_vbmi = cpu::Fp8VbmiCalls() > calls;
    EXPECT_TRUE(vbmi || cpu::Fp8VbmiCalls() == calls) << "VBMI kernel ran while turned off";
    return y;
  };
  int64_t compared = 0, subnormal_codes = 0, used = 0;
  // Scales of weights up to 448 * 2^-8 per block (real checkpoints: below 1), then ones up to
  // 448 * 2^10 (one of them 2^8), out of the VBMI kernel's range. The rows from `begin` on
  // (a slice starting inside a 128-row block, as MLA's kv_a_proj_with_mqa is used).
  for (const auto& [k, n_all, max_scale_exp, begin] :
       {std::tuple<int64_t, int64_t, int, int64_t>{896, 260, -8, 0}, {300, 131, -8, 0},
        {37, 9, -8, 0}, {200, 300, -8, 70}, {1024, 128, 10, 0}}) {
    Tensor codes = Tensor::Zeros(DType::kF8E4M3, {n_all, k});
    auto* c = static_cast<uint8_t*>(codes.mutable_raw_data());
    for (int64_t i = 0; i < n_all * k; ++i) {
      uint8_t b = static_cast<uint8_t>(i < 256 ? i : rng());
      if ((b & 0x7F) == 0x7F) b ^= 1;  // no NaN codes
      c[i] = b;
      subnormal_codes += (b & 0x78) == 0;
    }
    const int64_t block_rows = (n_all + 127) / 128, block_cols = (k + 127) / 128;
    std::vector<float> scales(block_rows * block_cols);
    for (float& s : scales) s = std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, static_cast<int>(rng() % (max_scale_exp + 31)) - 30);
    if (max_scale_exp > 6) scales[0] = 256.0f;
    const WeightView whole{DType::kF8E4M3, D(codes.raw_data()), D(scales.data()), n_all, k, 0};
    const cpu::HostWeights all{DType::kF8E4M3, codes.raw_data(), scales.data(), n_all, k, 0};
    const int64_t n = n_all - begin;
    const WeightView v = whole.Rows(begin, n);
    const cpu::HostWeights host = all.Rows(begin, n);
    for (int64_t m : {1, 2, 3, 4, 5, 6, 16, 33}) {
      std::vector<float> x = Random(m * k, static_cast<uint32_t>(m + k));
      for (int64_t i = 0; i < m * k; i += 7) x[i] = 0;
      for (float factor : {1.0f, 1e3f, 1e30f, 1e-30f, 1e-38f}) {
        std::vector<float> xs = x;
        for (float& e : xs) e *= factor;
        const std::vector<float> want = run(xs, v, m, k, n, false);
        bool ran = false;
        const std::vector<float> got = run(xs, v, m, k, n, true, &ran);
        const bool applies = cpu::Fp8VbmiApplies(xs.data(), host, m, k, n);
        EXPECT_EQ(ran, applies) << "m=" << m << " x times " << factor;
        if (max_scale_exp < 0 && (factor == 1.0f || factor == 1e3f)) {
          EXPECT_TRUE(applies) << "m=" << m << " x times " << factor;
        }
        if (factor == 1e30f || factor == 1e-38f || max_scale_exp > 6) {
          EXPECT_FALSE(applies) << "m=" << m << " x times " << factor;
        }
        used += applies;
        EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
            << "k=" << k << " n=" << n << " m=" << m << " x times " << factor;
        compared += m * n;
      }
      // A NaN in row 1 of x out of range: row 0, out of range too, must not take the VBMI kernel.
      if (m >= 2) {
        std::vector<float> xs = x;
        for (float& e : xs) e *= 1e30f;
        xs[k + 3] = std::nanf("");
        EXPECT_FALSE(cpu::Fp8VbmiApplies(xs.data(), host, m, k, n)) << "NaN, m=" << m;
        const std::vector<float> want = run(xs, v, m, k, n, false);
        const std::vector<float> got = run(xs, v, m, k, n, true);
        EXPECT_EQ(std::memcmp(want.data(), got.data(), n * sizeof(float)), 0) << "NaN, row 0, m=" << m;
      }
    }
    // Denormal inputs flushed to zero (DAZ, which some libraries set): the VBMI kernel's
    // subnormal code values would read as 0, so it must not be used.
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x0040);
    const std::vector<float> x = Random(3 * k, 99);
    EXPECT_FALSE(cpu::Fp8VbmiApplies(x.data(), host, 3, k, n)) << "DAZ";
    const std::vector<float> want = run(x, v, 3, k, n, false);
    const std::vector<float> got = run(x, v, 3, k, n, true);
    // One group of 4 weight rows, one task, so run on this thread: the half kernel's bits do
    // not depend on DAZ (its scalar tail reads subnormal codes as vcvtph2ps does, not as 0).
    const WeightView group = v.Rows(0, 4);
    const std::vector<float> group_daz = run(x, group, 1, k, 4, false);
    _mm_setcsr(csr);
    const std::vector<float> group_plain = run(x, group, 1, k, 4, false);
    EXPECT_EQ(std::memcmp(group_daz.data(), group_plain.data(), 4 * sizeof(float)), 0)
        << "DAZ changed the half kernel, k=" << k;
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << "DAZ, k=" << k;
  }
  std::printf("%lld outputs compared, %lld subnormal codes\n", static_cast<long long>(compared),
              static_cast<long long>(subnormal_codes));
  EXPECT_GT(subnormal_codes, 100);
  EXPECT_GT(used, 0);
  cpu::UseFp8Vbmi(true);
  cpu::SetDecodeKernel(saved);
}

TEST(QuantizedGemm, TilesAreBoundedAndShareTheRowsOut) {
  // The scratch a tile needs stays bounded whatever the layer shape: decode-like calls at most
  // 128 rows in 128 KiB (L2; at least 4 rows), prefill-like ones 4 MiB (at least 16 rows); for
  // those every thread gets the same number of tiles, and no more than that bound needs.
  for (int threads : {1, 2, 3, 16}) {
    for (int64_t m : {1, 16, 17, 512, 4096}) {
      for (int64_t k : {64, 896, 4864, 18944}) {
        for (int64_t n : {1, 128, 896, 4864, 151936}) {
          const int64_t t = cpu::LinearWeightsTileRows(m, k, n, threads);
          const std::string at = "m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" +
                                 std::to_string(n) + " threads=" + std::to_string(threads);
          EXPECT_GE(t, 1) << at;
          if (m <= 16) {
            EXPECT_LE(t, 128) << at;
            EXPECT_LE(t * k * 4, std::max<int64_t>(int64_t{128} << 10, 4 * k * 4)) << at;
            continue;
          }
          const int64_t most = std::max<int64_t>((int64_t{1} << 20) / k, 16);  // rows in 4 MiB
          EXPECT_LE(t, most) << at;
          const int64_t per_thread = (n + threads - 1) / threads;
          EXPECT_EQ((per_thread + t - 1) / t, (per_thread + most - 1) / most) << "fewest tiles, " << at;
          EXPECT_LE((n + t - 1) / t, threads * ((per_thread + t - 1) / t)) << "balanced, " << at;
          if (per_thread <= most) EXPECT_EQ(t, per_thread) << "one tile each, " << at;
        }
      }
    }
  }
}

}  // namespace
}  // namespace grpo
