// Tensor: the one tensor type of the project. A dense, contiguous, row-major array of one dtype.
//
// A Tensor either owns its bytes (zero-initialized at creation) or is a read-only view of bytes
// owned by something else (an mmap'd safetensors file), kept alive by a shared handle. Copies of
// a Tensor share storage (like a shared_ptr); Clone() makes an independent owning copy.
//
// The data pointer of a view may be unaligned for its dtype (safetensors offsets need not be
// aligned): read elements of a view with memcpy or convert it with ToF32() / CastTo().
#ifndef GRPO_CORE_TENSOR_H_
#define GRPO_CORE_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace grpo {

using Shape = std::vector<int64_t>;

// Number of elements of a shape (1 for a scalar shape {}).
int64_t NumElements(const Shape& shape);
// "[2, 3, 4]"
std::string ShapeToString(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;  // empty: no dtype storage, numel 0

  // A new owning tensor, zero-filled. Throws std::bad_alloc when memory runs out, as operator
  // new does (commands turn it into an error: cli/subcommand.h).
  static Tensor Zeros(DType dtype, Shape shape);
  // A new owning f32 tensor with these values; values.size() must equal the shape's numel.
  static absl::StatusOr<Tensor> FromF32(Shape shape, std::span<const float> values);
  // A read-only view of `data` (numel * dtype size bytes) that keeps `owner` alive.
  static Tensor View(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + rank() : i]; }
  int64_t numel() const { return NumElements(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  bool defined() const { return data_ != nullptr || numel() == 0; }
  bool writable() const { return writable_; }

  const void* raw_data() const { return data_; }
  // Aborts on a read-only view: Clone() it first.
  void* mutable_raw_data();

  // Typed access for owning tensors (aligned). The caller is responsible for T matching dtype().
  template <typename T>
  const T* data() const { return static_cast<const T*>(data_); }
  template <typename T>
  T* mutable_data() { return static_cast<T*>(mutable_raw_data()); }

  // The same storage with another shape of the same number of elements.
  absl::StatusOr<Tensor> Reshape(Shape shape) const;
  // An independent owning copy.
  Tensor Clone() const;
  // A widened f32 copy (exact for every float dtype; integers are converted by value).
  Tensor ToF32() const;
  // An owning copy converted to `dtype`. From f32 to narrow floats rounds as float_formats.h
  // says; other pairs go through f32. Converting to an integer dtype is not supported.
  absl::StatusOr<Tensor> CastTo(DType dtype) const;

 private:
  DType dtype_ = DType::kF32;
  Shape shape_;
  std::shared_ptr<const void> owner_;
  const void* data_ = nullptr;
  bool writable_ = false;
};

// Converts `count` elements of `dtype` at `src` (any alignment) to f32 at `dst`.
void ConvertToF32(DType dtype, const void* src, size_t count, float* dst);
// Converts `count` f32 values to a float dtype at `dst` (any alignment); non-float dtypes fail.
absl::Status ConvertFromF32(const float* src, size_t count, DType dtype, void* dst);

}  // namespace grpo

#endif  // GRPO_CORE_TENSOR_H_
