#include "core/dtype.h"

#include <string>

namespace grpo {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
  bool floating;
};

constexpr DTypeInfo kInfos[] = {
    {DType::kBool, "BOOL", 1, false},   {DType::kU8, "U8", 1, false},
    {DType::kI8, "I8", 1, false},       {DType::kF8E4M3, "F8_E4M3", 1, true},
    {DType::kF8E5M2, "F8_E5M2", 1, true}, {DType::kI16, "I16", 2, false},
    {DType::kU16, "U16", 2, false},     {DType::kF16, "F16", 2, true},
    {DType::kBF16, "BF16", 2, true},    {DType::kI32, "I32", 4, false},
    {DType::kU32, "U32", 4, false},     {DType::kF32, "F32", 4, true},
    {DType::kF64, "F64", 8, true},      {DType::kI64, "I64", 8, false},
    {DType::kU64, "U64", 8, false},
};

const DTypeInfo& Info(DType dtype) { return kInfos[static_cast<size_t>(dtype)]; }

}  // namespace

size_t DTypeSize(DType dtype) { return Info(dtype).size; }
std::string_view DTypeName(DType dtype) { return Info(dtype).name; }
bool IsFloatingPoint(DType dtype) { return Info(dtype).floating; }

absl::StatusOr<DType> ParseDType(std::string_view name) {
  for (const DTypeInfo& info : kInfos) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError("unknown dtype '" + std::string(name) + "'");
}

}  // namespace grpo
