#include "data/sampler.h"

#include <numeric>

namespace grpo::data {

std::vector<int64_t> EpochSampler::EpochOrder(int64_t size, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), 0);
  if (!shuffle) return order;
  SplitMix64 rng(seed * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(epoch) + 0x632BE59BD9B4E019ull));
  for (int64_t i = size - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

absl::StatusOr<EpochSampler> EpochSampler::Create(int64_t size, uint64_t seed, bool shuffle, Cursor start) {
  if (size <= 0) return absl::InvalidArgumentError("sampler: dataset is empty");
  if (start.epoch < 0 || start.position < 0 || start.position > size) {
    return absl::InvalidArgumentError("sampler: cursor (epoch " + std::to_string(start.epoch) + ", position " +
                                   std::to_string(start.position) + ") outside a dataset of " +
                                   std::to_string(size));
  }
  return EpochSampler(size, seed, shuffle, start);
}

EpochSampler::EpochSampler(int64_t size, uint64_t seed, bool shuffle, Cursor start)
    : size_(size), seed_(seed), shuffle_(shuffle), cursor_(start) {
  if (cursor_.position == size_) cursor_ = {cursor_.epoch + 1, 0};
  order_ = EpochOrder(size_, seed_, cursor_.epoch, shuffle_);
}

int64_t EpochSampler::Next() {
  const int64_t index = order_[static_cast<size_t>(cursor_.position)];
  if (++cursor_.position == size_) {
    cursor_ = {cursor_.epoch + 1, 0};
    order_ = EpochOrder(size_, seed_, cursor_.epoch, shuffle_);
  }
  return index;
}

std::vector<int64_t> EpochSampler::NextBatch(int64_t n) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) out.push_back(Next());
  return out;
}

}  // namespace grpo::data
