// A paged KV cache: fixed-size blocks of cache rows, reference counted, so the G samples of a
// group share their prompt's blocks instead of holding G copies.
//
// KvBlockPool owns `num_blocks` blocks in one backend buffer (Backend's KvCachePool layout:
// pool[block][layer][position in block][KvCacheRowWidth floats]); a block holds `block_size`
// consecutive positions of one sequence for every layer. PagedKvCache maps each sequence's
// positions to blocks through a block table (int32 ids), which is what the model's kernels get
// (KvCacheView::AppendBlockTable). Fork() gives a new sequence the parent's blocks (reference
// counts go up, nothing is copied); Reserve() before a step allocates the blocks new positions
// need and copies a block that is shared and about to be written (copy-on-write, a block copy on
// the backend: with prompts forked after prefill, only the prompt's last, partial block is ever
// copied). The bookkeeping (reference counts, free list, tables) stays on the host.
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
  // The pool is allocated on `backend` (the CPU backend reserves large buffers without touching
  // them: pages are backed, huge pages where the kernel allows, when a block is first written).
  KvBlockPool(const ModelConfig& config, int64_t num_blocks, int64_t block_size,
              Backend& backend);
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t bytes() const { return data_.bytes(); }
  // The pool as kernels index it.
  KvCachePool view() const { return view_; }

  // A block with reference count 1, or ResourceExhausted.
  absl::StatusOr<int32_t> Allocate();
  void Retain(int32_t block);
  // Returns the block to the pool when its count reaches 0.
  void Release(int32_t block);
  int32_t ref_count(int32_t block) const { return refs_[block]; }
  // Copies every row of `from` into `to` (a device-to-device copy).
  void Copy(int32_t from, int32_t to);

 private:
  Backend& backend_;
  int64_t num_blocks_, block_size_;
  Buffer data_;
  KvCachePool view_;
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

  KvCachePool pool() override { return pool_.view(); }
  void AppendBlockTable(int64_t seq, int64_t length, std::vector<int32_t>* ids) override;

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
