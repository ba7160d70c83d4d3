// The KV cache hook: where CausalLM::ForwardStep reads and writes the keys and values of past
// positions. The cache is paged the way GPU engines (vLLM, FlashInfer) page it: one
// backend-owned pool of blocks (Backend's KvCachePool: pool[block][layer][position in
// block][row]) and, per sequence, a block table of int32 block ids, one per block_size
// positions. Kernels (Backend::CachedAttention, WriteCache) index the pool through the tables;
// nobody hands out row pointers. The rollout engine implements KvCacheView over a reference-
// counted block pool (rollout/paged_kv_cache.h: the G samples of a group share their prompt's
// blocks, copy-on-write is a block copy on the backend); DenseKvCache is the simple
// implementation for tests and single-stream generation (one block per sequence).
//
// One cache row per (layer, sequence, position), KvCacheRowWidth floats:
//   standard attention: [k of the nkv heads (after q/k norm and RoPE) | v of the nkv heads]
//   MLA (deepseek_v3):  [normalized latent c (kv_lora_rank) | RoPE'd shared key (qk_rope_head_dim)]
// i.e. MLA caches the compressed latent, not per-head keys and values, and decodes with the
// absorbed projections (multi-query attention over [c | k_pe] with c as the value). On a backend
// in batch-invariant mode (Backend::SetBatchInvariant) MLA caches what training attends over
// instead: [k of the nh heads (nope | rope dims) | v of the nh heads], so a decoded token is
// computed exactly as the learner's Forward computes it (at nh * (dqk + dv) floats a row).
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
  // The pool every sequence's blocks live in.
  virtual KvCachePool pool() = 0;
  // Appends to *ids the block table of cache sequence `seq` for positions [0, length):
  // ceil(length / block_size) block ids. ForwardStep asks for at most past + new tokens of a
  // sequence, and writes each new position once.
  virtual void AppendBlockTable(int64_t seq, int64_t length, std::vector<int32_t>* ids) = 0;
};

// Floats per cache row for this architecture; `batch_invariant`: the row of a backend in
// batch-invariant mode (differs for MLA only).
int64_t KvCacheRowWidth(const ModelConfig& config, bool batch_invariant = false);

// Room for `capacity` positions of each of `num_seqs` sequences, allocated (zeroed) up front in
// `backend`'s memory (the model's backend): sequence s is block s of a pool whose block_size is
// the capacity.
class DenseKvCache final : public KvCacheView {
 public:
  DenseKvCache(const ModelConfig& config, int64_t num_seqs, int64_t capacity,
               Backend& backend);
  KvCachePool pool() override { return pool_; }
  void AppendBlockTable(int64_t seq, int64_t length, std::vector<int32_t>* ids) override;
  int64_t capacity() const { return pool_.block_size; }
  int64_t bytes() const { return data_.bytes(); }

 private:
  Buffer data_;
  KvCachePool pool_;
};

}  // namespace grpo

#endif  // GRPO_MODEL_KV_CACHE_H_
