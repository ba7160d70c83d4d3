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

int64_t AttentionProbsSize(std::span<const int64_t> seq_offsets, int64_t nh) {
  int64_t total = 0;
  for (size_t s = 0; s + 1 < seq_offsets.size(); ++s) {
    const int64_t len = seq_offsets[s + 1] - seq_offsets[s];
    total += nh * len * len;
  }
  return total;
}

}  // namespace grpo
