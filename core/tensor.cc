#include "core/tensor.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/float_formats.h"

namespace grpo {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  const size_t n = t.nbytes();
  // 64-byte alignment suits every dtype and SIMD loads.
  void* p = std::aligned_alloc(64, (n + 63) / 64 * 64 + 64);
  if (p == nullptr) throw std::bad_alloc();  // an error for the command, not an abort (cli/subcommand.h)
  std::memset(p, 0, n);
  t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  t.writable_ = true;
  return t;
}

absl::StatusOr<Tensor> Tensor::FromF32(Shape shape, std::span<const float> values) {
  if (NumElements(shape) != static_cast<int64_t>(values.size())) {
    return absl::InvalidArgumentError("shape " + ShapeToString(shape) + " needs " +
                                   std::to_string(NumElements(shape)) + " values, got " +
                                   std::to_string(values.size()));
  }
  Tensor t = Zeros(DType::kF32, std::move(shape));
  if (!values.empty()) std::memcpy(t.mutable_raw_data(), values.data(), values.size_bytes());
  return t;
}

Tensor Tensor::View(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.owner_ = std::move(owner);
  t.writable_ = false;
  return t;
}

void* Tensor::mutable_raw_data() {
  if (!writable_) {
    std::fprintf(stderr, "fatal: write access to a read-only tensor view; Clone() it first\n");
    std::abort();
  }
  return const_cast<void*>(data_);
}

absl::StatusOr<Tensor> Tensor::Reshape(Shape shape) const {
  if (NumElements(shape) != numel()) {
    return absl::InvalidArgumentError("cannot reshape " + ShapeToString(shape_) + " to " +
                                   ShapeToString(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Clone() const {
  Tensor t = Zeros(dtype_, shape_);
  if (nbytes() > 0) std::memcpy(t.mutable_raw_data(), data_, nbytes());
  return t;
}

Tensor Tensor::ToF32() const {
  Tensor t = Zeros(DType::kF32, shape_);
  ConvertToF32(dtype_, data_, static_cast<size_t>(numel()), t.mutable_data<float>());
  return t;
}

absl::StatusOr<Tensor> Tensor::CastTo(DType dtype) const {
  if (dtype == dtype_) return Clone();
  const Tensor f32 = dtype_ == DType::kF32 ? *this : ToF32();
  Tensor t = Zeros(dtype, shape_);
  GRPO_RETURN_IF_ERROR(ConvertFromF32(f32.data<float>(), static_cast<size_t>(numel()), dtype,
                                      t.mutable_raw_data()));
  return t;
}

namespace {

template <typename T>
void WidenInts(const void* src, size_t count, float* dst) {
  const auto* bytes = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, bytes + i * sizeof(T), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

template <typename Bits, float (*Widen)(Bits)>
void WidenFloats(const void* src, size_t count, float* dst) {
  const auto* bytes = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < count; ++i) {
    Bits v;
    std::memcpy(&v, bytes + i * sizeof(Bits), sizeof(Bits));
    dst[i] = Widen(v);
  }
}

template <typename Bits, Bits (*Narrow)(float)>
void NarrowFloats(const float* src, size_t count, void* dst) {
  auto* bytes = static_cast<unsigned char*>(dst);
  for (size_t i = 0; i < count; ++i) {
    const Bits v = Narrow(src[i]);
    std::memcpy(bytes + i * sizeof(Bits), &v, sizeof(Bits));
  }
}

}  // namespace

void ConvertToF32(DType dtype, const void* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::kF32: std::memcpy(dst, src, count * sizeof(float)); return;
    case DType::kBF16: return WidenFloats<uint16_t, Bf16ToF32>(src, count, dst);
    case DType::kF16: return WidenFloats<uint16_t, F16ToF32>(src, count, dst);
    case DType::kF8E4M3: return WidenFloats<uint8_t, Fp8E4M3ToF32>(src, count, dst);
    case DType::kF8E5M2: return WidenFloats<uint8_t, Fp8E5M2ToF32>(src, count, dst);
    case DType::kF64: return WidenInts<double>(src, count, dst);
    case DType::kBool:
    case DType::kU8: return WidenInts<uint8_t>(src, count, dst);
    case DType::kI8: return WidenInts<int8_t>(src, count, dst);
    case DType::kI16: return WidenInts<int16_t>(src, count, dst);
    case DType::kU16: return WidenInts<uint16_t>(src, count, dst);
    case DType::kI32: return WidenInts<int32_t>(src, count, dst);
    case DType::kU32: return WidenInts<uint32_t>(src, count, dst);
    case DType::kI64: return WidenInts<int64_t>(src, count, dst);
    case DType::kU64: return WidenInts<uint64_t>(src, count, dst);
  }
}

absl::Status ConvertFromF32(const float* src, size_t count, DType dtype, void* dst) {
  switch (dtype) {
    case DType::kF32: std::memcpy(dst, src, count * sizeof(float)); return absl::OkStatus();
    case DType::kBF16: NarrowFloats<uint16_t, F32ToBf16>(src, count, dst); return absl::OkStatus();
    case DType::kF16: NarrowFloats<uint16_t, F32ToF16>(src, count, dst); return absl::OkStatus();
    case DType::kF8E4M3: NarrowFloats<uint8_t, F32ToFp8E4M3>(src, count, dst); return absl::OkStatus();
    case DType::kF8E5M2: NarrowFloats<uint8_t, F32ToFp8E5M2>(src, count, dst); return absl::OkStatus();
    case DType::kF64: {
      auto* bytes = static_cast<unsigned char*>(dst);
      for (size_t i = 0; i < count; ++i) {
        const double v = src[i];
        std::memcpy(bytes + i * sizeof(double), &v, sizeof(double));
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("cannot convert f32 to " + std::string(DTypeName(dtype)));
  }
}

}  // namespace grpo
