// libFuzzer property check of the narrowing conversions: for any f32 bit pattern, the e4m3
// result is a nearest code (no neighbour is strictly closer), ties go to the even code, the
// saturation and NaN rules hold, and bf16/f16 widen back exactly to a nearest value.
// Built and run by tools/fuzz_smoke.sh (clang, outside Bazel).
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "core/float_formats.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckE4M3(float x) {
  const uint8_t q = grpo::F32ToFp8E4M3(x);
  if (std::isnan(x)) return Check((q & 0x7F) == 0x7F);
  Check(std::signbit(x) == ((q & 0x80) != 0));
  const double a = std::fabs(static_cast<double>(x));
  const uint8_t mag = q & 0x7F;
  Check(mag != 0x7F);
  if (a >= 448.0) return Check(mag == 0x7E);
  const double v = grpo::Fp8E4M3ToF32(mag);
  const double err = std::fabs(v - a);
  for (int d : {-1, 1}) {
    const int nb = mag + d;
    if (nb < 0 || nb > 0x7E) continue;
    const double alt_err = std::fabs(grpo::Fp8E4M3ToF32(static_cast<uint8_t>(nb)) - a);
    Check(err < alt_err || (err == alt_err && (mag & 1) == 0));
  }
}

void CheckBf16(float x) {
  const uint16_t h = grpo::F32ToBf16(x);
  const float back = grpo::Bf16ToF32(h);
  if (std::isnan(x)) return Check(std::isnan(back));
  Check(grpo::F32ToBf16(back) == h);
  if (std::isinf(x)) return Check(back == x);
  if (std::isinf(back) && !std::isinf(x)) {
    Check(std::fabs(x) >= 3.3895313892515355e38f);  // past the bf16 overflow midpoint
    return;
  }
  // No bf16 neighbour is strictly closer.
  const double err = std::fabs(static_cast<double>(back) - x);
  for (int d : {-1, 1}) {
    const float alt = grpo::Bf16ToF32(static_cast<uint16_t>(h + d));
    if (std::isnan(alt) || std::signbit(alt) != std::signbit(back)) continue;
    Check(err <= std::fabs(static_cast<double>(alt) - x));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (size_t i = 0; i + 4 <= size; i += 4) {
    uint32_t bits;
    std::memcpy(&bits, data + i, 4);
    const float x = std::bit_cast<float>(bits);
    CheckE4M3(x);
    CheckBf16(x);
    Check(grpo::F32ToFp8E4M3(grpo::Fp8E4M3ToF32(static_cast<uint8_t>(bits))) ==
              static_cast<uint8_t>(bits) ||
          (bits & 0x7F) == 0x7F);
  }
  return 0;
}
