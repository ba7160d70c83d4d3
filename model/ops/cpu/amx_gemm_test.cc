// The AMX prefill kernel against the same products summed in double and against the reference
// path (widen the weights exactly, then sgemm), for bf16 and FP8-block weights. Skipped where the
// CPU or the OS cannot run AMX.
//
// Tolerance: every product of x's three bf16 parts with a weight is exact, so the only error is
// the f32 sum's (and, for FP8, one rounding of each block's sum times its scale): the assertion
// is the f32 dot product's bound, |y - y_ref| <= 1e-6 · Σ_k |x_k w_jk|, which a wrong code, scale,
// part or tile is off by far more.
#include "model/ops/cpu/amx_gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/float_formats.h"
#include "core/fp8_block.h"
#include "core/tensor.h"
#include "model/ops/cpu/cpu_backend.h"
#include "model/ops/cpu/quantized_gemm.h"
#include "model/ops/cpu/quantized_test_weights.h"
#include "model/ops/cpu/vector_kernels.h"

namespace grpo {
namespace {

using test::Random;

// A [n, k] weight in each format (quantized_test_weights.h), viewed as the kernels read it.
struct Weights : test::QuantizedWeights {
  cpu::HostWeights Bf16() const {
    return {DType::kBF16, bf16.raw_data(), nullptr, bf16.dim(0), bf16.dim(1), 0};
  }
  cpu::HostWeights Fp8() const {
    return {DType::kF8E4M3, fp8.raw_data(), scale_inv.data<float>(), fp8.dim(0), fp8.dim(1), 0};
  }
};

Weights Make(int64_t n, int64_t k, uint32_t seed) { return {test::MakeQuantizedWeights(n, k, seed)}; }

// y against x · ref[rows row0.., k]^T summed in double, within tol · Σ|x·w|.
void ExpectNearDouble(const std::vector<float>& y, const std::vector<float>& x, const Tensor& ref,
                      int64_t row0, int64_t m, int64_t k, int64_t n, const std::string& what) {
  const float* w = ref.data<float>() + row0 * k;
  int64_t bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0, mag = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = double{x[i * k + c]} * w[j * k + c];
        sum += p;
        mag += std::fabs(p);
      }
      if (!(std::fabs(y[i * n + j] - sum) <= 1e-6 * mag) && bad++ < 5) {
        ADD_FAILURE() << what << " at (" << i << ", " << j << "): " << y[i * n + j] << " vs "
                      << sum << " (Σ|x·w| " << mag << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

class AmxGemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu::AmxAvailable()) GTEST_SKIP() << "no AMX on this CPU or OS";
  }
};

TEST_F(AmxGemmTest, MatchesDoubleAndTheReferenceOnOddShapes) {
  struct Shape { int64_t m, k, n; };
  // Rows of x past a 32-row block, k past a 32-column step and a 128-column block, n past a
  // 16-column tile and a 32-column panel; several column chunks and 256-row chunks of x.
  for (const Shape s : {Shape{65, 128, 32}, Shape{100, 200, 300}, Shape{77, 7, 3}, Shape{5, 40, 20},
                        Shape{300, 896, 130}, Shape{513, 130, 1100}, Shape{70, 4864, 40}}) {
    const Weights q = Make(s.n, s.k, static_cast<uint32_t>(s.m + s.k + s.n));
    const std::vector<float> x = Random(s.m * s.k, 5);
    const std::string shape = " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) +
                              " n=" + std::to_string(s.n);
    for (const bool fp8 : {false, true}) {
      const cpu::HostWeights w = fp8 ? q.Fp8() : q.Bf16();
      std::vector<float> y(s.m * s.n, std::nanf(""));
      ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), w, y.data(), s.m, s.k, s.n));
      ExpectNearDouble(y, x, fp8 ? q.fp8_ref : q.bf16_ref, 0, s.m, s.k, s.n,
                       (fp8 ? "fp8" : "bf16") + shape);
      // The reference path (AMX off) within the same bound of the same double sum.
      ASSERT_FALSE(cpu::UseAmx(false));
      std::vector<float> ref(s.m * s.n);
      cpu::LinearWeightsQuantized(x.data(), w, nullptr, ref.data(), s.m, s.k, s.n);
      cpu::UseAmx(true);
      ExpectNearDouble(ref, x, fp8 ? q.fp8_ref : q.bf16_ref, 0, s.m, s.k, s.n,
                       std::string("reference ") + (fp8 ? "fp8" : "bf16") + shape);
    }
  }
}

TEST_F(AmxGemmTest, PrefillGoesThroughAmx) {
  const Weights q = Make(64, 256, 1);
  const std::vector<float> x = Random(100 * 256, 2);
  std::vector<float> y(100 * 64), b(64, 0.5f), y_b(100 * 64);
  const int64_t before = cpu::AmxCalls();
  cpu::LinearWeightsQuantized(x.data(), q.Fp8(), nullptr, y.data(), 100, 256, 64);
  EXPECT_EQ(cpu::AmxCalls(), before + 1);
  cpu::LinearWeightsQuantized(x.data(), q.Fp8(), b.data(), y_b.data(), 100, 256, 64);
  for (int64_t i = 0; i < 100 * 64; ++i) ASSERT_EQ(y_b[i], y[i] + 0.5f) << i;
  // Decoding (at most kDecodeMaxRows rows) keeps its register kernels.
  cpu::LinearWeightsQuantized(x.data(), q.Fp8(), nullptr, y.data(), cpu::kDecodeMaxRows, 256, 64);
  EXPECT_EQ(cpu::AmxCalls(), before + 2);
}

TEST_F(AmxGemmTest, EveryFp8CodeWidensToItsValue) {
  // Row j of W holds code j at column c (all 254 non-NaN codes, subnormals included) and x picks
  // column c alone. With x = 1, y is code · scale rounded once, exactly the reference's widened
  // weight. With x = -(1 + 2^-9 + 2^-17), whose hi, mid and lo parts are all non-zero, y is
  // code · x · scale rounded once (code · x is exact in f32): each part's products must be there.
  // Two 128-column blocks with different scales.
  const int64_t n = 256, k = 256;
  std::vector<uint8_t> codes(n * k, 0);
  for (int64_t j = 0; j < n; ++j) {
    codes[j * k + (j % 200)] = static_cast<uint8_t>(j);
    codes[j * k + 255] = static_cast<uint8_t>(j);
  }
  std::vector<float> scales = {0.75f, 3.0f, 1.0f / 3, 1e-3f};  // [2 block rows][2 block cols]
  const cpu::HostWeights w{DType::kF8E4M3, codes.data(), scales.data(), n, k, 0};
  const int64_t m = 2 * 200 + 32;
  std::vector<float> x(m * k, 0.0f);
  const float three_parts = -(1.0f + 0x1p-9f + 0x1p-17f);
  for (int64_t c = 0; c < 200; ++c) x[c * k + c] = 1.0f, x[(200 + c) * k + c] = three_parts;
  for (int64_t i = 400; i < m; ++i) x[i * k + 255] = 1.0f;
  std::vector<float> y(m * n);
  ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), w, y.data(), m, k, n));
  std::vector<float> widened(n * k);
  cpu::WidenWeightRows(w, 0, n, widened.data());
  for (int64_t j = 0; j < n; ++j) {
    if ((j & 0x7F) == 0x7F) continue;  // NaN codes are rejected at load
    const float v0 = widened[j * k + (j % 200)], v1 = widened[j * k + 255];
    EXPECT_EQ(y[(j % 200) * n + j], v0) << "code " << j << " block 0";
    const double scale = scales[(j / 128) * 2 + (j % 200) / 128];
    const double code = Fp8E4M3ToF32(static_cast<uint8_t>(j));
    EXPECT_EQ(y[(200 + j % 200) * n + j], static_cast<float>(code * three_parts * scale))
        << "code " << j << " times " << three_parts;
    EXPECT_EQ(y[400 * n + j], v1) << "code " << j << " block 1";
  }
}

TEST_F(AmxGemmTest, RowsOfXAreIndependentOfTheirBatch) {
  // Row i of a 300-row prompt equals row i of its first 65 or 97 rows, bit for bit.
  const int64_t k = 300, n = 200;
  const Weights q = Make(n, k, 9);
  const std::vector<float> x = Random(300 * k, 10);
  for (const cpu::HostWeights& w : {q.Bf16(), q.Fp8()}) {
    std::vector<float> all(300 * n);
    ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), w, all.data(), 300, k, n));
    for (const int64_t m : {65, 97}) {
      std::vector<float> part(m * n);
      ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), w, part.data(), m, k, n));
      EXPECT_EQ(std::memcmp(part.data(), all.data(), part.size() * sizeof(float)), 0) << m;
    }
  }
}

TEST_F(AmxGemmTest, RowSlicesAcrossBlockRows) {
  // A view starting inside a 128-row block (MLA's kv_a_proj_with_mqa is used as two row slices):
  // its 16-column tiles straddle the block edge, so a tile's columns take different scales.
  const Weights q = Make(300, 260, 4);
  const std::vector<float> x = Random(80 * 260, 6);
  for (const auto& [begin, count] : {std::pair<int64_t, int64_t>{100, 60}, {250, 50}, {7, 293}}) {
    std::vector<float> y(80 * count);
    ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), q.Fp8().Rows(begin, count), y.data(), 80, 260, count));
    ExpectNearDouble(y, x, q.fp8_ref, begin, 80, 260, count, "fp8 rows " + std::to_string(begin));
    ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), q.Bf16().Rows(begin, count), y.data(), 80, 260, count));
    ExpectNearDouble(y, x, q.bf16_ref, begin, 80, 260, count, "bf16 rows " + std::to_string(begin));
  }
}

TEST_F(AmxGemmTest, LongPromptsRunInPassesOfBoundedSplit) {
  // 2100 rows of 4096 columns split into three bf16 parts take 52 MB, more than one pass's
  // 48 MiB: two passes, each row's result as in one. A non-finite value in the last row is found
  // before the first pass writes anything.
  const int64_t m = 2100, k = 4096, n = 40;
  const Weights q = Make(n, k, 12);
  std::vector<float> x = Random(m * k, 13);
  for (const cpu::HostWeights& w : {q.Bf16(), q.Fp8()}) {
    std::vector<float> y(m * n);
    ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), w, y.data(), m, k, n));
    ExpectNearDouble(y, x, w.dtype == DType::kBF16 ? q.bf16_ref : q.fp8_ref, 0, m, k, n,
                     "two passes");
    std::vector<float> first(100 * n);
    ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), w, first.data(), 100, k, n));
    EXPECT_EQ(std::memcmp(first.data(), y.data(), first.size() * sizeof(float)), 0);
  }
  x[m * k - 1] = INFINITY;
  std::vector<float> y(m * n, 1.0f);
  EXPECT_FALSE(cpu::LinearWeightsAmx(x.data(), q.Fp8(), y.data(), m, k, n));
  for (float v : y) ASSERT_EQ(v, 1.0f) << "y written";
}

TEST_F(AmxGemmTest, SeveralWeightsOverOneXGiveEachItsOwnBits) {
  // A layer's q, k and v (here bf16, FP8 and an FP8 row slice) over one x, split once: each y is
  // what LinearWeightsAmx gives it alone; through LinearWeightsQuantizedSameInput with biases,
  // what LinearWeightsQuantized gives.
  const int64_t m = 150, k = 300;
  const Weights a = Make(200, k, 31), b = Make(48, k, 32), c = Make(260, k, 33);
  const cpu::HostWeights ws[] = {a.Bf16(), b.Fp8(), c.Fp8().Rows(100, 70)};
  const int64_t ns[] = {200, 48, 70};
  const std::vector<float> x = Random(m * k, 34);
  std::vector<std::vector<float>> y(3), alone(3);
  std::vector<cpu::AmxOutput> outs;
  for (int i = 0; i < 3; ++i) {
    y[i].assign(m * ns[i], 0.0f);
    alone[i].assign(m * ns[i], 0.0f);
    outs.push_back({&ws[i], y[i].data(), ns[i]});
    ASSERT_TRUE(cpu::LinearWeightsAmx(x.data(), ws[i], alone[i].data(), m, k, ns[i]));
  }
  ASSERT_TRUE(cpu::LinearWeightsAmxSameInput(x.data(), outs, m, k));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(std::memcmp(y[i].data(), alone[i].data(), y[i].size() * sizeof(float)), 0) << i;
  }
  const std::vector<float> bias = Random(200, 35);
  std::vector<cpu::QuantizedOutput> quantized;
  for (int i = 0; i < 3; ++i) {
    std::fill(y[i].begin(), y[i].end(), 0.0f);
    quantized.push_back({&ws[i], i == 1 ? nullptr : bias.data(), y[i].data(), ns[i]});
  }
  const int64_t calls = cpu::AmxCalls();
  cpu::LinearWeightsQuantizedSameInput(x.data(), quantized, m, k);
  EXPECT_EQ(cpu::AmxCalls(), calls + 1);  // one call for the three
  for (int i = 0; i < 3; ++i) {
    cpu::LinearWeightsQuantized(x.data(), ws[i], quantized[i].b, alone[i].data(), m, k, ns[i]);
    EXPECT_EQ(std::memcmp(y[i].data(), alone[i].data(), y[i].size() * sizeof(float)), 0) << i;
  }
  // 2^113 is in range for bf16, not for FP8: with one FP8 weight among them, no y is written.
  std::vector<float> huge = x;
  huge[5] = 0x1p113f;
  for (auto& v : y) std::fill(v.begin(), v.end(), 1.0f);
  EXPECT_FALSE(cpu::LinearWeightsAmxSameInput(huge.data(), outs, m, k));
  for (const auto& v : y)
    for (float e : v) ASSERT_EQ(e, 1.0f) << "y written";
  EXPECT_TRUE(cpu::LinearWeightsAmxSameInput(huge.data(), std::span(outs).first(1), m, k));
}

TEST_F(AmxGemmTest, SwiGluDownProjectionIsTheBitsOfSwiGluThenTheProjection) {
  // An MLP's down projection over SwiGlu(gate, up), the activation made as x is split: the bits
  // of SwiGlu into a buffer and then LinearWeightsAmx. k = 300 leaves SwiGlu's vector loop a
  // tail in every row; 2100 rows of 4096 columns run in two passes.
  struct Shape { int64_t m, k, n; };
  for (const Shape s : {Shape{150, 300, 70}, Shape{2100, 4096, 40}}) {
    const Weights q = Make(s.n, s.k, static_cast<uint32_t>(s.k));
    const std::vector<float> gate = Random(s.m * s.k, 41), up = Random(s.m * s.k, 42);
    const std::vector<float> bias = Random(s.n, 43);
    std::vector<float> act(s.m * s.k);
    cpu::SwiGlu(gate.data(), up.data(), act.data(), s.m * s.k);
    for (const cpu::HostWeights& w : {q.Bf16(), q.Fp8()}) {
      const std::string what = std::string(w.dtype == DType::kBF16 ? "bf16" : "fp8") +
                               " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k);
      std::vector<float> y(s.m * s.n), ref(s.m * s.n);
      ASSERT_TRUE(cpu::LinearWeightsAmx(act.data(), w, ref.data(), s.m, s.k, s.n)) << what;
      ASSERT_TRUE(cpu::LinearWeightsAmxSwiGlu(gate.data(), up.data(), w, y.data(), s.m, s.k, s.n))
          << what;
      EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << what;
      if (!cpu::AmxInUse()) continue;  // GRPO_PREFILL_KERNEL=sgemm
      // With a bias, through LinearWeightsQuantized's entry point.
      ASSERT_TRUE(cpu::LinearWeightsQuantizedSwiGluAmx(gate.data(), up.data(), w, bias.data(),
                                                       y.data(), s.m, s.k, s.n))
          << what;
      cpu::LinearWeightsQuantized(act.data(), w, bias.data(), ref.data(), s.m, s.k, s.n);
      EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << what;
    }
  }
  // The activation out of the tiles' range (inf in the last row; found in the last pass) or at
  // most kDecodeMaxRows rows: false, the caller's path.
  const int64_t m = 2100, k = 4096, n = 40;
  const Weights q = Make(n, k, 44);
  std::vector<float> gate = Random(m * k, 45), up = Random(m * k, 46);
  gate[m * k - 1] = 1e30f;
  up[m * k - 1] = 1e30f;
  std::vector<float> y(m * n);
  EXPECT_FALSE(cpu::LinearWeightsAmxSwiGlu(gate.data(), up.data(), q.Fp8(), y.data(), m, k, n));
  if (!cpu::AmxInUse()) return;
  EXPECT_FALSE(cpu::LinearWeightsQuantizedSwiGluAmx(gate.data(), up.data(), q.Fp8(), nullptr,
                                                    y.data(), m, k, n));
  EXPECT_TRUE(cpu::LinearWeightsQuantizedSwiGluAmx(gate.data(), up.data(), q.Fp8(), nullptr,
                                                   y.data(), m - 1, k, n));
  EXPECT_FALSE(cpu::LinearWeightsQuantizedSwiGluAmx(gate.data(), up.data(), q.Fp8(), nullptr,
                                                    y.data(), cpu::kDecodeMaxRows, k, n));
}

TEST_F(AmxGemmTest, TheBackendsFallbackOverwritesWhatTheFusedPassesWrote) {
  // Backend::SwiGluLinearWeights on the CPU: an activation out of the tiles' range in the last
  // row of a two-pass prompt stops the fused path after its first pass has written y; the
  // fallback (SwiGlu into a buffer, then LinearWeights) must then give every element, as the two
  // calls do. y starts as NaN; the last row's outputs are inf or NaN either way.
  const int64_t m = 2100, k = 4096, n = 40;
  const Weights q = Make(n, k, 47);
  std::vector<float> gate = Random(m * k, 48), up = Random(m * k, 49);
  const std::vector<float> bias = Random(n, 50);
  gate[m * k - 1] = 1e30f;
  up[m * k - 1] = 1e30f;
  const WeightView w{DType::kF8E4M3, cpu::HostAsDevice(q.fp8.raw_data()),
                     cpu::HostAsDevice(q.scale_inv.data<float>()), n, k, 0};
  Backend& be = CpuBackend();
  std::vector<float> y(m * n, NAN), act(m * k), ref(m * n);
  const int64_t fused = cpu::AmxSwiGluCalls();
  be.SwiGluLinearWeights(cpu::HostAsDevice(gate.data()), cpu::HostAsDevice(up.data()), w,
                         cpu::HostAsDevice(bias.data()), cpu::HostAsDevice(y.data()), m, k, n);
  EXPECT_EQ(cpu::AmxSwiGluCalls(), fused);
  be.SwiGlu(cpu::HostAsDevice(gate.data()), cpu::HostAsDevice(up.data()),
            cpu::HostAsDevice(act.data()), m * k);
  be.LinearWeights(cpu::HostAsDevice(act.data()), w, cpu::HostAsDevice(bias.data()),
                   cpu::HostAsDevice(ref.data()), m, k, n);
  EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0);
  EXPECT_TRUE(std::isfinite(y[(m - 1) * n - 1]));
  // In range, the fused path runs, with the same bits.
  gate[m * k - 1] = up[m * k - 1] = 0.5f;
  std::fill(y.begin(), y.end(), NAN);
  be.SwiGluLinearWeights(cpu::HostAsDevice(gate.data()), cpu::HostAsDevice(up.data()), w,
                         cpu::HostAsDevice(bias.data()), cpu::HostAsDevice(y.data()), m, k, n);
  if (cpu::AmxInUse()) EXPECT_EQ(cpu::AmxSwiGluCalls(), fused + 1);
  be.SwiGlu(cpu::HostAsDevice(gate.data()), cpu::HostAsDevice(up.data()),
            cpu::HostAsDevice(act.data()), m * k);
  be.LinearWeights(cpu::HostAsDevice(act.data()), w, cpu::HostAsDevice(bias.data()),
                   cpu::HostAsDevice(ref.data()), m, k, n);
  EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0);
}

TEST_F(AmxGemmTest, NonFiniteOrHugeXFallsBackToTheReference) {
  const Weights q = Make(40, 64, 2);
  // Over FP8 weights x must also stay below 2^112 (the unscaled block sums must stay finite):
  // 2^113 would overflow them here (codes up to 448, scales below 1).
  for (const float bad : {INFINITY, -INFINITY, std::nanf(""), 0x1p127f, 0x1p113f}) {
    std::vector<float> x = Random(70 * 64, 3);
    x[69 * 64 + 63] = bad;
    std::vector<float> y(70 * 40, 1.0f);
    EXPECT_FALSE(cpu::LinearWeightsAmx(x.data(), q.Fp8(), y.data(), 70, 64, 40)) << bad;
    for (float v : y) ASSERT_EQ(v, 1.0f) << "y written";
    // Through LinearWeightsQuantized: the reference's result, so NaN and inf propagate as there.
    cpu::LinearWeightsQuantized(x.data(), q.Fp8(), nullptr, y.data(), 70, 64, 40);
    std::vector<float> ref(70 * 40);
    cpu::UseAmx(false);
    cpu::LinearWeightsQuantized(x.data(), q.Fp8(), nullptr, ref.data(), 70, 64, 40);
    cpu::UseAmx(true);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << bad;
  }
}

}  // namespace
}  // namespace grpo
