// The KV cache hook: where CausalLM::ForwardStep reads and writes the keys and values of past
// positions. The rollout engine implements KvCacheView over a paged, reference-counted block
// pool (so the G samples of a group share their prompt's rows); DenseKvCache is the simple
// contiguous implementation for tests and single-stream generation.
//
// One cache row per (layer, sequence, position), KvCacheRowWidth floats:
//   standard attention: [k of the nkv heads (after q/k norm and RoPE) | v of the nkv heads]
//   MLA (deepseek_v3):  [normalized latent c (kv_lora_rank) | RoPE'd shared key (qk_rope_head_dim)]
// i.e. MLA caches the compressed latent, not per-head keys and values, and decodes with the
// absorbed projections (multi-query attention over [c | k_pe] with c as the value).
#ifndef GRPO_MODEL_KV_CACHE_H_
#define GRPO_MODEL_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/model_config.h"
#include "model/ops/backend.h"

namespace grpo {

class KvCacheView {
 public:
  virtual ~KvCacheView() = default;
  // The device address of the row of `position` of cache sequence `seq` in decoder layer
  // `layer` (in the memory of the model's backend). ForwardStep only asks for positions below
  // past + new tokens of a sequence, and writes each new position once.
  virtual DevicePtr<float> Row(int64_t layer, int64_t seq, int64_t position) = 0;
};

// Floats per cache row for this architecture.
int64_t KvCacheRowWidth(const ModelConfig& config);

// Room for `capacity` positions of each of `num_seqs` sequences, allocated (zeroed) up front in
// `backend`'s memory (the model's backend).
class DenseKvCache final : public KvCacheView {
 public:
  DenseKvCache(const ModelConfig& config, int64_t num_seqs, int64_t capacity, Backend& backend);
  DevicePtr<float> Row(int64_t layer, int64_t seq, int64_t position) override;
  int64_t capacity() const { return capacity_; }
  int64_t bytes() const { return data_.bytes(); }

 private:
  int64_t layers_, num_seqs_, capacity_, width_;
  Buffer data_;
};

}  // namespace grpo

#endif  // GRPO_MODEL_KV_CACHE_H_
