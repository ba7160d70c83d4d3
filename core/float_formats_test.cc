// Float format conversions against references we did not write:
//  - fp8 e4m3fn / e5m2: a brute-force reference in double that lists every code's value from
//    the OCP spec formula and picks the nearest (ties to the even code), checked exhaustively on
//    all 256 codes, every rounding boundary (midpoints and their f32 neighbours) and random f32.
//    Debian's PyTorch 1.13 has no float8 dtype; the GPU test compares with torch.float8_e4m3fn.
//  - bf16 / f16: PyTorch's own conversions, on every boundary we can list plus random bit
//    patterns.
#include "core/float_formats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "testing/python_reference.h"

namespace grpo {
namespace {

struct MiniFloat {
  int exp_bits;
  int man_bits;
  int bias;
  bool fn;  // "finite" variant: no inf, only all-ones is NaN (e4m3fn)
};
constexpr MiniFloat kE4M3{4, 3, 7, true};
constexpr MiniFloat kE5M2{5, 2, 15, false};

// Value of a non-negative code by the spec formula; NaN for NaN codes, inf for inf.
double SpecValue(const MiniFloat& f, uint32_t code) {
  const uint32_t e = code >> f.man_bits;
  const uint32_t m = code & ((1u << f.man_bits) - 1);
  const uint32_t emax = (1u << f.exp_bits) - 1;
  if (f.fn) {
    if (e == emax && m == (1u << f.man_bits) - 1) return std::nan("");
  } else if (e == emax) {
    return m == 0 ? INFINITY : std::nan("");
  }
  const double frac = static_cast<double>(m) / (1u << f.man_bits);
  if (e == 0) return frac * std::pow(2.0, 1 - f.bias);
  return (1.0 + frac) * std::pow(2.0, static_cast<int>(e) - f.bias);
}

// All finite non-negative codes in increasing value order (code order is value order).
std::vector<uint32_t> FiniteCodes(const MiniFloat& f) {
  std::vector<uint32_t> codes;
  for (uint32_t c = 0; c < (1u << (f.exp_bits + f.man_bits)); ++c) {
    if (std::isfinite(SpecValue(f, c))) codes.push_back(c);
  }
  return codes;
}

// Reference narrowing: nearest finite code, ties to the even code. Beyond the largest finite
// value: saturate (fn variant) or go to inf once past the midpoint to the next power (IEEE).
uint32_t ReferenceEncode(const MiniFloat& f, float x) {
  const uint32_t sign = std::signbit(x) ? (1u << (f.exp_bits + f.man_bits)) : 0;
  const std::vector<uint32_t> codes = FiniteCodes(f);
  const uint32_t max_code = codes.back();
  if (std::isnan(x)) return f.fn ? (sign | ((1u << (f.exp_bits + f.man_bits)) - 1)) : 0xFFFFFFFF;
  const double a = std::fabs(static_cast<double>(x));
  const double max_val = SpecValue(f, max_code);
  if (f.fn && a >= max_val) return sign | max_code;
  if (!f.fn) {
    // IEEE: overflow threshold is max + half an ulp at the top binade.
    const double ulp = std::pow(2.0, static_cast<int>(max_code >> f.man_bits) - f.bias - f.man_bits);
    if (a >= max_val + ulp / 2) return sign | (max_code + 1);  // inf code
  }
  uint32_t best = codes[0];
  double best_d = INFINITY;
  for (uint32_t c : codes) {
    const double d = std::fabs(SpecValue(f, c) - a);
    if (d < best_d || (d == best_d && (c & 1u) == 0)) {
      best = c;
      best_d = d;
    }
  }
  return sign | best;
}

// Inputs that probe every rounding decision: each code's value, each midpoint between
// neighbours, the f32 neighbours of both, the overflow region, f32 specials and subnormals,
// and random bit patterns over the whole f32 range.
std::vector<float> BoundaryInputs(const MiniFloat& f) {
  std::vector<float> xs;
  const std::vector<uint32_t> codes = FiniteCodes(f);
  auto add_with_neighbours = [&](double v) {
    const float x = static_cast<float>(v);
    for (float y : {x, std::nextafter(x, INFINITY), std::nextafter(x, -INFINITY)}) {
      xs.push_back(y);
      xs.push_back(-y);
    }
  };
  for (size_t i = 0; i < codes.size(); ++i) {
    add_with_neighbours(SpecValue(f, codes[i]));
    if (i + 1 < codes.size()) {
      add_with_neighbours((SpecValue(f, codes[i]) + SpecValue(f, codes[i + 1])) / 2);
    }
  }
  const double top = SpecValue(f, codes.back());
  for (double v : {top * 1.03125, top * 1.0625, top * 1.07, top * 1.125, top * 1.25, top * 2, 1e30})
    add_with_neighbours(v);
  for (float v : {0.0f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(),
                  std::numeric_limits<float>::max(), INFINITY}) {
    xs.push_back(v);
    xs.push_back(-v);
  }
  std::mt19937 rng(1234);
  for (int i = 0; i < 200000; ++i) {
    xs.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  }
  // Random values in the format's own range, where most of the interesting rounding is.
  std::uniform_real_distribution<float> in_range(static_cast<float>(-top * 1.1),
                                                 static_cast<float>(top * 1.1));
  for (int i = 0; i < 200000; ++i) xs.push_back(in_range(rng));
  return xs;
}

TEST(Fp8E4M3, DecodesEveryCodeAsTheSpecSays) {
  int nan_codes = 0;
  for (uint32_t c = 0; c < 256; ++c) {
    const double expected = SpecValue(kE4M3, c & 0x7F) * ((c & 0x80) ? -1 : 1);
    const float got = Fp8E4M3ToF32(static_cast<uint8_t>(c));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      ++nan_codes;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << "code " << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;
    }
  }
  EXPECT_EQ(nan_codes, 2);  // 0x7F and 0xFF only
  EXPECT_EQ(Fp8E4M3ToF32(0x7E), 448.0f);
  EXPECT_EQ(Fp8E4M3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
}

TEST(Fp8E4M3, EveryCodeRoundTrips) {
  for (uint32_t c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;  // NaN
    EXPECT_EQ(F32ToFp8E4M3(Fp8E4M3ToF32(static_cast<uint8_t>(c))), c) << "code " << c;
  }
}

TEST(Fp8E4M3, RoundsLikeTheReferenceOnEveryBoundary) {
  int64_t checked = 0;
  for (float x : BoundaryInputs(kE4M3)) {
    const uint32_t want = ReferenceEncode(kE4M3, x);
    const uint32_t got = F32ToFp8E4M3(x);
    if (std::isnan(x)) {
      EXPECT_EQ(got & 0x7F, 0x7Fu);
      continue;
    }
    ASSERT_EQ(got, want) << "x=" << x << " bits=0x" << std::hex << std::bit_cast<uint32_t>(x);
    ++checked;
  }
  EXPECT_GT(checked, 400000);
}

TEST(Fp8E4M3, EdgeCasesStated) {
  EXPECT_EQ(F32ToFp8E4M3(448.0f), 0x7E);
  EXPECT_EQ(F32ToFp8E4M3(464.0f), 0x7E);  // the tie to the would-be 480 goes to even, and saturates
  EXPECT_EQ(F32ToFp8E4M3(1e9f), 0x7E);
  EXPECT_EQ(F32ToFp8E4M3(INFINITY), 0x7E);
  EXPECT_EQ(F32ToFp8E4M3(-INFINITY), 0xFE);
  EXPECT_EQ(F32ToFp8E4M3(std::nanf("")), 0x7F);
  EXPECT_EQ(F32ToFp8E4M3(-0.0f), 0x80);
  // Halfway between 0 and the smallest subnormal rounds to 0 (even); just above rounds up.
  EXPECT_EQ(F32ToFp8E4M3(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(F32ToFp8E4M3(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01);
  // 1 + 1/16 is halfway between 1 (0x38, even) and 1.125 (0x39): goes to 1.
  EXPECT_EQ(F32ToFp8E4M3(1.0625f), 0x38);
  EXPECT_EQ(F32ToFp8E4M3(1.1875f), 0x3A);  // halfway 1.125/1.25 goes to 1.25 (even)
}

TEST(Fp8E5M2, DecodesAndRoundsLikeTheReference) {
  for (uint32_t c = 0; c < 256; ++c) {
    const double expected = SpecValue(kE5M2, c & 0x7F) * ((c & 0x80) ? -1 : 1);
    const float got = Fp8E5M2ToF32(static_cast<uint8_t>(c));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << c;
    }
  }
  for (float x : BoundaryInputs(kE5M2)) {
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(Fp8E5M2ToF32(F32ToFp8E5M2(x))));
      continue;
    }
    ASSERT_EQ(F32ToFp8E5M2(x), ReferenceEncode(kE5M2, x)) << "x=" << x;
  }
  EXPECT_EQ(Fp8E5M2ToF32(F32ToFp8E5M2(57344.0f)), 57344.0f);
  EXPECT_TRUE(std::isinf(Fp8E5M2ToF32(F32ToFp8E5M2(61440.0f))));  // tie with inf goes to inf
}

// bf16 and f16 against PyTorch's conversions (round to nearest even, IEEE overflow).
TEST(HalfFormats, MatchPyTorch) {
  GRPO_REQUIRE_TORCH();
  std::vector<float> xs;
  std::mt19937 rng(99);
  for (int i = 0; i < 300000; ++i) xs.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  // Exact ties and their neighbours for bf16 (low 16 bits = 0x8000) and f16 (low 13 = 0x1000).
  for (int i = 0; i < 50000; ++i) {
    const uint32_t r = static_cast<uint32_t>(rng());
    for (uint32_t bits : {(r & 0xFFFF0000u) | 0x8000u, (r & 0xFFFFE000u) | 0x1000u}) {
      for (uint32_t d : {0u, 1u, 0xFFFFFFFFu}) xs.push_back(std::bit_cast<float>(bits + d));
    }
  }
  for (float v : {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65520.0f, 65519.99f, 3.4e38f,
                  std::numeric_limits<float>::denorm_min(), 5.96e-8f, 2.98e-8f, 6.1e-5f}) {
    xs.push_back(v);
  }
  const std::string dir = testing::MakeTempDir("halfref");
  ASSERT_TRUE(testing::WriteBinaryFile(dir + "/in.f32", xs.data(), xs.size() * 4).ok());
  const char* script = R"PY(
import sys, torch
d = sys.argv[1]
x = torch.frombuffer(bytearray(open(d + '/in.f32', 'rb').read()), dtype=torch.float32)
open(d + '/bf16.bin', 'wb').write(x.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
open(d + '/f16.bin', 'wb').write(x.to(torch.float16).view(torch.int16).numpy().tobytes())
)PY";
  auto run = testing::RunPythonScript(script, {dir});
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  auto bf16 = testing::ReadBinaryFile(dir + "/bf16.bin");
  auto f16 = testing::ReadBinaryFile(dir + "/f16.bin");
  ASSERT_TRUE(bf16.ok() && f16.ok());
  ASSERT_EQ(bf16->size(), xs.size() * 2);
  ASSERT_EQ(f16->size(), xs.size() * 2);
  for (size_t i = 0; i < xs.size(); ++i) {
    uint16_t want_bf16, want_f16;
    std::memcpy(&want_bf16, bf16->data() + 2 * i, 2);
    std::memcpy(&want_f16, f16->data() + 2 * i, 2);
    if (std::isnan(xs[i])) {
      EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(xs[i]))));
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(xs[i]))));
      continue;
    }
    ASSERT_EQ(F32ToBf16(xs[i]), want_bf16) << "x=" << xs[i];
    ASSERT_EQ(F32ToF16(xs[i]), want_f16) << "x=" << xs[i];
    // Widening is exact: the f32 of the narrow value narrows back to itself.
    ASSERT_EQ(F32ToBf16(Bf16ToF32(want_bf16)), want_bf16);
    ASSERT_EQ(F32ToF16(F16ToF32(want_f16)), want_f16);
  }
}

}  // namespace
}  // namespace grpo
