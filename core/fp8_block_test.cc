// Block quantization checked element by element against an independent computation of the
// DeepSeek-V3 convention done in double precision, and against PyTorch for the dequantization
// arithmetic (torch reproduces `weight_dequant`: q.float() * scale broadcast over 128x128 blocks).
#include "core/fp8_block.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/float_formats.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

Tensor RandomWeight(int64_t rows, int64_t cols, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(rows * cols);
  for (float& x : v) x = dist(rng);
  return *Tensor::FromF32({rows, cols}, v);
}

TEST(Fp8Block, ScalesAndCodesFollowTheConvention) {
  // Partial edge blocks in both directions, and one all-zero block.
  const int64_t rows = 300, cols = 200;
  Tensor w = RandomWeight(rows, cols, 7);
  float* p = w.mutable_data<float>();
  for (int64_t r = 128; r < 256; ++r)
    for (int64_t c = 0; c < 128; ++c) p[r * cols + c] = 0.0f;
  auto q = QuantizeFp8Block(w);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  ASSERT_EQ(q->scale_inv.shape(), (Shape{3, 2}));
  ASSERT_EQ(q->weight.dtype(), DType::kF8E4M3);
  const float* s = q->scale_inv.data<float>();
  for (int64_t br = 0; br < 3; ++br) {
    for (int64_t bc = 0; bc < 2; ++bc) {
      float amax = 0;
      for (int64_t r = br * 128; r < std::min<int64_t>(rows, br * 128 + 128); ++r)
        for (int64_t c = bc * 128; c < std::min<int64_t>(cols, bc * 128 + 128); ++c)
          amax = std::max(amax, std::fabs(p[r * cols + c]));
      const float want = amax == 0 ? 1.0f : amax / 448.0f;
      EXPECT_EQ(s[br * 2 + bc], want) << br << "," << bc;
    }
  }
  EXPECT_EQ(s[1 * 2 + 0], 1.0f);
  // Each code is the nearest e4m3 of w/scale, and the block's amax element maps to +-448.
  const uint8_t* codes = q->weight.data<uint8_t>();
  int at_max = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float sc = s[(r / 128) * 2 + c / 128];
      const float x = p[r * cols + c] / sc;
      const float back = Fp8E4M3ToF32(codes[r * cols + c]);
      // Nearest: no other code is strictly closer.
      const float err = std::fabs(back - x);
      for (int d : {-1, 1}) {
        const int nb = (codes[r * cols + c] & 0x7F) + d;
        if (nb < 0 || nb > 0x7E) continue;
        const float alt = Fp8E4M3ToF32(static_cast<uint8_t>((codes[r * cols + c] & 0x80) | nb));
        EXPECT_LE(err, std::fabs(alt - x));
      }
      if (std::fabs(back) == 448.0f) ++at_max;
    }
  }
  EXPECT_GE(at_max, 5);  // one per non-zero block at least
}

TEST(Fp8Block, RoundTripErrorIsBoundedByHalfAnUlp) {
  Tensor w = RandomWeight(256, 384, 11, 0.02f);
  auto q = QuantizeFp8Block(w);
  ASSERT_TRUE(q.ok());
  auto back = DequantizeFp8Block(q->weight, q->scale_inv);
  ASSERT_TRUE(back.ok());
  const float* a = w.data<float>();
  const float* b = back->data<float>();
  const float* s = q->scale_inv.data<float>();
  for (int64_t i = 0; i < 256 * 384; ++i) {
    const float sc = s[(i / 384 / 128) * 3 + (i % 384) / 128];
    // e4m3 has 3 mantissa bits: relative error <= 2^-4 for normals, absolute <= 2^-10*sc below.
    const float tol = std::max(std::fabs(a[i]) * 0.0625f, std::ldexp(1.0f, -10) * sc) * 1.0001f;
    ASSERT_LE(std::fabs(a[i] - b[i]), tol) << i;
  }
}

TEST(Fp8Block, RejectsBadInput) {
  Tensor v = *Tensor::FromF32({4}, std::vector<float>{1, 2, 3, 4});
  EXPECT_EQ(QuantizeFp8Block(v).status().code(), absl::StatusCode::kInvalidArgument);
  Tensor w = RandomWeight(4, 4, 1);
  w.mutable_data<float>()[5] = NAN;
  auto r = QuantizeFp8Block(w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("[1, 1]"), std::string::npos) << r.status().message();
  auto q = QuantizeFp8Block(RandomWeight(130, 10, 2));
  ASSERT_TRUE(q.ok());
  Tensor bad_scale = Tensor::Zeros(DType::kF32, {1, 1});
  auto d = DequantizeFp8Block(q->weight, bad_scale);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("[2, 1]"), std::string::npos) << d.status().message();
}

TEST(Fp8Block, DequantizationMatchesPyTorch) {
  GRPO_REQUIRE_TORCH();
  Tensor w = RandomWeight(200, 260, 5, 0.05f);
  auto q = QuantizeFp8Block(w);
  ASSERT_TRUE(q.ok());
  auto ours = DequantizeFp8Block(q->weight, q->scale_inv);
  ASSERT_TRUE(ours.ok());
  const std::string dir = testing::MakeTempDir("fp8ref");
  // Torch 1.13 has no float8 dtype: pass the codes' f32 values (exact) and the scales.
  Tensor codes_f32 = q->weight.ToF32();
  ASSERT_TRUE(testing::WriteBinaryFile(dir + "/q.f32", codes_f32.raw_data(), codes_f32.nbytes()).ok());
  ASSERT_TRUE(testing::WriteBinaryFile(dir + "/s.f32", q->scale_inv.raw_data(), q->scale_inv.nbytes()).ok());
  const char* script = R"PY(
import sys, torch
d = sys.argv[1]
q = torch.frombuffer(bytearray(open(d + '/q.f32', 'rb').read()), dtype=torch.float32).view(200, 260)
s = torch.frombuffer(bytearray(open(d + '/s.f32', 'rb').read()), dtype=torch.float32).view(2, 3)
full = s.repeat_interleave(128, 0)[:200].repeat_interleave(128, 1)[:, :260]
open(d + '/out.f32', 'wb').write((q * full).numpy().tobytes())
)PY";
  auto run = testing::RunPythonScript(script, {dir});
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  auto ref = testing::ReadBinaryFile(dir + "/out.f32");
  ASSERT_TRUE(ref.ok());
  ASSERT_EQ(ref->size(), ours->nbytes());
  EXPECT_EQ(std::memcmp(ref->data(), ours->raw_data(), ref->size()), 0);
}

}  // namespace
}  // namespace grpo
