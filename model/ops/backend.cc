#include "model/ops/backend.h"

#include <utility>

namespace grpo {

Buffer::Buffer(Backend* backend, int64_t size)
    : backend_(backend), data_(size > 0 ? backend->Allocate(size) : nullptr), size_(size) {}

Buffer::~Buffer() {
  if (data_ != nullptr) backend_->Free(data_);
}

Buffer::Buffer(Buffer&& other) noexcept
    : backend_(other.backend_), data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) backend_->Free(data_);
    backend_ = other.backend_;
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace grpo
