#include "model/kv_cache.h"

#include <cstdio>
#include <cstdlib>

namespace grpo {

int64_t KvCacheRowWidth(const ModelConfig& c, bool batch_invariant) {
  if (c.mla && batch_invariant) {
    return c.num_attention_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim);
  }
  if (c.mla) return c.kv_lora_rank + c.qk_rope_head_dim;
  return 2 * c.num_key_value_heads * c.head_dim;
}

DenseKvCache::DenseKvCache(const ModelConfig& config, int64_t num_seqs, int64_t capacity,
                           Backend& backend)
    : data_(&backend, num_seqs * config.num_hidden_layers * capacity *
                          KvCacheRowWidth(config, backend.batch_invariant())),
      pool_{data_.data(), num_seqs, config.num_hidden_layers, capacity,
            KvCacheRowWidth(config, backend.batch_invariant())} {
  backend.Zero(data_.data(), data_.numel());
}

void DenseKvCache::AppendBlockTable(int64_t seq, int64_t length, std::vector<int32_t>* ids) {
  if (seq < 0 || seq >= pool_.num_blocks || length < 0 || length > pool_.block_size) {
    std::fprintf(stderr, "fatal: DenseKvCache sequence %lld with %lld positions out of range\n",
                 static_cast<long long>(seq), static_cast<long long>(length));
    std::abort();
  }
  if (length > 0) ids->push_back(static_cast<int32_t>(seq));
}

}  // namespace grpo
