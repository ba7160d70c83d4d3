#include "core/float_formats.h"

#include <array>
#include <bit>
#include <cmath>

namespace grpo {
namespace {

constexpr uint32_t kF32AbsMask = 0x7FFFFFFFu;
constexpr uint32_t kF32Inf = 0x7F800000u;

bool IsNanBits(uint32_t bits) { return (bits & kF32AbsMask) > kF32Inf; }

// Rounds the magnitude |x| (given as f32 bits, not NaN) to a binary format with `man_bits`
// mantissa bits and exponent bias `bias`, to nearest with ties to even. Returns the format's
// magnitude code (exponent field << man_bits | mantissa) before any overflow handling, so a
// result past the format's largest code means "overflowed".
uint32_t RoundMagnitude(uint32_t abs_bits, int man_bits, int bias) {
  const int f32_exp = static_cast<int>(abs_bits >> 23);
  const int min_normal_f32_exp = 127 - bias + 1;
  if (f32_exp < min_normal_f32_exp) {
    // Subnormal (or zero) in the target: count units of the smallest subnormal. The scaling is
    // by a power of two and the result is below 2^(man_bits+1), so it is exact in f32 and the
    // only rounding is rint's, which rounds ties to even in the default rounding mode.
    const float a = std::bit_cast<float>(abs_bits);
    const float units = std::ldexp(a, bias - 1 + man_bits);
    return static_cast<uint32_t>(std::rint(units));
  }
  // Normal: drop the low mantissa bits with round-to-nearest-even. A carry out of the mantissa
  // moves into the exponent, which is exactly right.
  const int shift = 23 - man_bits;
  const uint32_t half_minus_one = (1u << (shift - 1)) - 1;
  const uint32_t odd = (abs_bits >> shift) & 1u;
  const uint32_t rounded = (abs_bits + half_minus_one + odd) >> shift;
  return rounded - (static_cast<uint32_t>(127 - bias) << man_bits);
}

// Decodes a magnitude code of a format with `exp_bits`/`man_bits`/`bias` (finite codes only).
float DecodeMagnitude(uint32_t code, int man_bits, int bias) {
  const uint32_t exp_field = code >> man_bits;
  const uint32_t mantissa = code & ((1u << man_bits) - 1);
  if (exp_field == 0) return std::ldexp(static_cast<float>(mantissa), 1 - bias - man_bits);
  return std::ldexp(static_cast<float>((1u << man_bits) | mantissa),
                    static_cast<int>(exp_field) - bias - man_bits);
}

std::array<float, 256> BuildE4M3Table() {
  std::array<float, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) {
    const uint32_t mag = c & 0x7F;
    float v = (mag == 0x7F) ? std::nanf("") : DecodeMagnitude(mag, 3, 7);
    t[c] = (c & 0x80) ? -v : v;
  }
  return t;
}

std::array<float, 256> BuildE5M2Table() {
  std::array<float, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) {
    const uint32_t mag = c & 0x7F;
    float v;
    if (mag == 0x7C) {
      v = INFINITY;
    } else if (mag > 0x7C) {
      v = std::nanf("");
    } else {
      v = DecodeMagnitude(mag, 2, 15);
    }
    t[c] = (c & 0x80) ? -v : v;
  }
  return t;
}

const std::array<float, 256> kE4M3Table = BuildE4M3Table();
const std::array<float, 256> kE5M2Table = BuildE5M2Table();

}  // namespace

float Bf16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t F32ToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if (IsNanBits(bits)) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // keep it quiet
  const uint32_t odd = (bits >> 16) & 1u;
  return static_cast<uint16_t>((bits + 0x7FFFu + odd) >> 16);  // overflow carries into inf
}

float F16ToF32(uint16_t bits) {
  const uint32_t sign = bits & 0x8000u;
  const uint32_t mag = bits & 0x7FFFu;
  float v;
  if (mag >= 0x7C00u) {
    v = (mag == 0x7C00u) ? INFINITY : std::nanf("");
  } else {
    v = DecodeMagnitude(mag, 10, 15);
  }
  return sign ? -v : v;
}

uint16_t F32ToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & kF32AbsMask;
  if (IsNanBits(bits)) return sign | 0x7E00u;
  if (abs_bits >= kF32Inf) return sign | 0x7C00u;
  const uint32_t code = RoundMagnitude(abs_bits, 10, 15);
  return sign | static_cast<uint16_t>(code >= 0x7C00u ? 0x7C00u : code);
}

float Fp8E4M3ToF32(uint8_t bits) { return kE4M3Table[bits]; }

uint8_t F32ToFp8E4M3(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  if (IsNanBits(bits)) return sign | 0x7Fu;
  const uint32_t abs_bits = bits & kF32AbsMask;
  if (abs_bits >= std::bit_cast<uint32_t>(kFp8E4M3Max)) return sign | 0x7Eu;  // saturate
  const uint32_t code = RoundMagnitude(abs_bits, 3, 7);
  return sign | static_cast<uint8_t>(code > 0x7Eu ? 0x7Eu : code);
}

float Fp8E5M2ToF32(uint8_t bits) { return kE5M2Table[bits]; }

uint8_t F32ToFp8E5M2(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  if (IsNanBits(bits)) return sign | 0x7Eu;
  const uint32_t abs_bits = bits & kF32AbsMask;
  if (abs_bits >= kF32Inf) return sign | 0x7Cu;
  const uint32_t code = RoundMagnitude(abs_bits, 2, 15);
  return sign | static_cast<uint8_t>(code >= 0x7Cu ? 0x7Cu : code);
}

}  // namespace grpo
