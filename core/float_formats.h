// Exact conversions between f32 and the narrow float formats we store weights in.
//
// Narrowing rounds to nearest, ties to even, on the exact f32 value (never through an
// intermediate type). Widening is exact. The rules at the edges:
//   bf16, f16:  IEEE behaviour: overflow gives ±inf, NaN stays NaN (quiet), sign kept.
//   fp8 e4m3fn: SATURATING: anything of magnitude >= 448 (including ±inf) becomes ±448; NaN
//               becomes 0x7F (or 0xFF with the sign bit); -0 stays -0. e4m3fn has no infinity.
//               This is the convention of DeepSeek-V3 block quantization (values are clamped to
//               the representable range), not PyTorch's cast, which turns overflow into NaN.
//   fp8 e5m2:   IEEE behaviour like f16 (overflow gives ±inf, NaN stays NaN).
#ifndef GRPO_CORE_FLOAT_FORMATS_H_
#define GRPO_CORE_FLOAT_FORMATS_H_

#include <cstdint>

namespace grpo {

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp8E5M2Max = 57344.0f;

float Bf16ToF32(uint16_t bits);
uint16_t F32ToBf16(float value);

float F16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);

float Fp8E4M3ToF32(uint8_t bits);
uint8_t F32ToFp8E4M3(float value);

float Fp8E5M2ToF32(uint8_t bits);
uint8_t F32ToFp8E5M2(float value);

}  // namespace grpo

#endif  // GRPO_CORE_FLOAT_FORMATS_H_
