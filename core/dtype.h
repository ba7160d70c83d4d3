// Element types of tensors, with the names the safetensors format gives them.
//
// Compute happens in f32; bf16 and fp8 (E4M3, E5M2) are storage types widened in the kernels.
// The integer and f16/f64 types exist so that any safetensors file can be read unchanged.
#ifndef GRPO_CORE_DTYPE_H_
#define GRPO_CORE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/status.h"

namespace grpo {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E4M3,  // OCP float8 e4m3fn: no infinities, 0x7F/0xFF are NaN, max 448
  kF8E5M2,  // OCP float8 e5m2: IEEE-like, max 57344
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};

// Size of one element in bytes.
size_t DTypeSize(DType dtype);

// The safetensors name: "F32", "BF16", "F8_E4M3", ...
std::string_view DTypeName(DType dtype);

// Parses a safetensors dtype name; unknown names give InvalidArgument naming the string.
absl::StatusOr<DType> ParseDType(std::string_view name);

// True for the floating-point types (f8, f16, bf16, f32, f64).
bool IsFloatingPoint(DType dtype);

}  // namespace grpo

#endif  // GRPO_CORE_DTYPE_H_
