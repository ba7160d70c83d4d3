#include "rollout/paged_kv_cache.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

namespace grpo {

KvBlockPool::KvBlockPool(const ModelConfig& config, int64_t num_blocks, int64_t block_size,
                         Backend& backend)
    : backend_(backend), num_blocks_(num_blocks), block_size_(block_size),
      data_(&backend, num_blocks * config.num_hidden_layers * block_size *
                          KvCacheRowWidth(config, backend.batch_invariant())),
      view_{data_.data(), num_blocks, config.num_hidden_layers, block_size,
            KvCacheRowWidth(config, backend.batch_invariant())},
      refs_(num_blocks, 0) {
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

absl::StatusOr<int32_t> KvBlockPool::Allocate() {
  if (free_.empty()) {
    return absl::ResourceExhaustedError("KV cache is full (" + std::to_string(num_blocks_) + " blocks of " +
                                     std::to_string(block_size_) + " positions)");
  }
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[b] = 1;
  return b;
}

void KvBlockPool::Retain(int32_t block) { ++refs_[block]; }

void KvBlockPool::Release(int32_t block) {
  if (refs_[block] <= 0) {
    std::fprintf(stderr, "fatal: KV block %d released more often than retained\n", block);
    std::abort();
  }
  if (--refs_[block] == 0) free_.push_back(block);
}

void KvBlockPool::Copy(int32_t from, int32_t to) {
  // A block holds every layer's rows of its positions: one contiguous device-to-device copy.
  const int64_t block_floats = view_.num_layers * block_size_ * view_.row_width;
  backend_.CopyDeviceToDevice(data_.data() + from * block_floats, data_.data() + to * block_floats,
                              block_floats * static_cast<int64_t>(sizeof(float)));
}


PagedKvCache::~PagedKvCache() {
  for (int64_t s = 0; s < static_cast<int64_t>(seqs_.size()); ++s) FreeSequence(s);
}

int64_t PagedKvCache::AddSequence() {
  seqs_.push_back({});
  return static_cast<int64_t>(seqs_.size()) - 1;
}

int64_t PagedKvCache::Fork(int64_t parent) {
  Sequence child = seqs_[parent];
  for (int32_t b : child.blocks) pool_.Retain(b);
  seqs_.push_back(std::move(child));
  return static_cast<int64_t>(seqs_.size()) - 1;
}

absl::Status PagedKvCache::Reserve(int64_t seq, int64_t length, int64_t write_from) {
  Sequence& s = seqs_[seq];
  const int64_t bs = pool_.block_size();
  const int64_t need = (length + bs - 1) / bs;
  const int64_t first_written = write_from / bs;
  // Count the blocks this needs first, so a failure changes nothing.
  int64_t wanted = std::max<int64_t>(0, need - static_cast<int64_t>(s.blocks.size()));
  for (int64_t i = first_written; i < static_cast<int64_t>(s.blocks.size()) && i < need; ++i) {
    if (pool_.ref_count(s.blocks[i]) > 1) ++wanted;
  }
  if (wanted > pool_.free_blocks()) {
    return absl::ResourceExhaustedError("KV cache needs " + std::to_string(wanted) + " more blocks, " +
                                     std::to_string(pool_.free_blocks()) + " free");
  }
  for (int64_t i = first_written; i < static_cast<int64_t>(s.blocks.size()) && i < need; ++i) {
    if (pool_.ref_count(s.blocks[i]) > 1) {  // copy-on-write
      GRPO_ASSIGN_OR_RETURN(int32_t fresh, pool_.Allocate());
      pool_.Copy(s.blocks[i], fresh);
      pool_.Release(s.blocks[i]);
      s.blocks[i] = fresh;
    }
  }
  while (static_cast<int64_t>(s.blocks.size()) < need) {
    GRPO_ASSIGN_OR_RETURN(int32_t fresh, pool_.Allocate());
    s.blocks.push_back(fresh);
  }
  s.length = std::max(s.length, length);
  return absl::OkStatus();
}

void PagedKvCache::FreeSequence(int64_t seq) {
  Sequence& s = seqs_[seq];
  if (!s.live) return;
  for (int32_t b : s.blocks) pool_.Release(b);
  s.blocks.clear();
  s.length = 0;
  s.live = false;
}

void PagedKvCache::AppendBlockTable(int64_t seq, int64_t length, std::vector<int32_t>* ids) {
  const Sequence& s = seqs_[seq];
  const int64_t bs = pool_.block_size();
  const int64_t need = (length + bs - 1) / bs;
  if (length < 0 || need > static_cast<int64_t>(s.blocks.size())) {
    std::fprintf(stderr, "fatal: KV positions [0, %lld) of sequence %lld are not reserved\n",
                 static_cast<long long>(length), static_cast<long long>(seq));
    std::abort();
  }
  ids->insert(ids->end(), s.blocks.begin(), s.blocks.begin() + need);
}

}  // namespace grpo
