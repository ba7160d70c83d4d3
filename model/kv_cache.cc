#include "model/kv_cache.h"

#include <cstdio>
#include <cstdlib>

namespace grpo {

int64_t KvCacheRowWidth(const ModelConfig& c) {
  if (c.mla) return c.kv_lora_rank + c.qk_rope_head_dim;
  return 2 * c.num_key_value_heads * c.head_dim;
}

DenseKvCache::DenseKvCache(const ModelConfig& config, int64_t num_seqs, int64_t capacity,
                           Backend& backend)
    : layers_(config.num_hidden_layers), num_seqs_(num_seqs), capacity_(capacity),
      width_(KvCacheRowWidth(config)), data_(&backend, layers_ * num_seqs_ * capacity_ * width_) {
  backend.Zero(data_.data(), data_.numel());
}

DevicePtr<float> DenseKvCache::Row(int64_t layer, int64_t seq, int64_t position) {
  if (layer < 0 || layer >= layers_ || seq < 0 || seq >= num_seqs_ || position < 0 ||
      position >= capacity_) {
    std::fprintf(stderr, "fatal: DenseKvCache row (%lld, %lld, %lld) out of range\n",
                 static_cast<long long>(layer), static_cast<long long>(seq),
                 static_cast<long long>(position));
    std::abort();
  }
  return data_.data() + ((layer * num_seqs_ + seq) * capacity_ + position) * width_;
}

}  // namespace grpo
