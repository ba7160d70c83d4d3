// A paged KV cache: fixed-size blocks of cache rows, reference counted, so the G samples of a
// group share their prompt's blocks instead of holding G copies.
//
// KvBlockPool owns `num_blocks` blocks; a block holds `block_size` consecutive positions of one
// sequence for every layer (rows of KvCacheRowWidth floats). PagedKvCache maps each sequence's
// positions to blocks through a block table. Fork() gives a new sequence the parent's blocks
// (reference counts go up, nothing is copied); Reserve() before a step allocates the blocks new
// positions need and copies a block that is shared and about to be written (copy-on-write: with
// prompts forked after prefill, only the prompt's last, partial block is ever copied).
// Allocation fails with ResourceExhausted when the pool is empty: the caller's admission control
// decides what to do (wait, or preempt a sequence and recompute it later).
#ifndef GRPO_ROLLOUT_PAGED_KV_CACHE_H_
#define GRPO_ROLLOUT_PAGED_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/kv_cache.h"
#include "model/model_config.h"

namespace grpo {

class KvBlockPool {
 public:
  // The pool lives in `backend`'s memory (the model's backend). On the CPU backend a large pool is
  // reserved, not touched: pages are backed (huge pages where the kernel allows) when a block is
  // first written, so a large budget costs nothing at start-up.
  KvBlockPool(const ModelConfig& config, int64_t num_blocks, int64_t block_size, Backend& backend);
  ~KvBlockPool();
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t bytes() const { return data_.bytes(); }

  // A block with reference count 1, or ResourceExhausted.
  absl::StatusOr<int32_t> Allocate();
  void Retain(int32_t block);
  // Returns the block to the pool when its count reaches 0.
  void Release(int32_t block);
  int32_t ref_count(int32_t block) const { return refs_[block]; }
  // Copies every row of `from` into `to` (a device-to-device copy).
  void Copy(int32_t from, int32_t to);
  DevicePtr<float> Row(int32_t block, int64_t layer, int64_t offset);

 private:
  int64_t layers_, num_blocks_, block_size_, width_;
  Backend& backend_;
  Buffer data_;  // f32, num_blocks * layers * block_size * width
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;
};

class PagedKvCache final : public KvCacheView {
 public:
  explicit PagedKvCache(KvBlockPool& pool) : pool_(pool) {}
  ~PagedKvCache() override;

  // A new empty sequence; returns its id.
  int64_t AddSequence();
  // A new sequence sharing all of `parent`'s blocks and length.
  int64_t Fork(int64_t parent);
  // Makes positions [0, length) addressable and the blocks holding positions >= write_from
  // exclusively owned by `seq` (copying shared ones). On ResourceExhausted nothing changed.
  absl::Status Reserve(int64_t seq, int64_t length, int64_t write_from);
  // Releases the sequence's blocks; the id is not reused.
  void FreeSequence(int64_t seq);
  int64_t length(int64_t seq) const { return seqs_[seq].length; }
  const std::vector<int32_t>& blocks(int64_t seq) const { return seqs_[seq].blocks; }

  DevicePtr<float> Row(int64_t layer, int64_t seq, int64_t position) override;

 private:
  struct Sequence {
    std::vector<int32_t> blocks;
    int64_t length = 0;
    bool live = true;
  };
  KvBlockPool& pool_;
  std::vector<Sequence> seqs_;
};

}  // namespace grpo

#endif  // GRPO_ROLLOUT_PAGED_KV_CACHE_H_
