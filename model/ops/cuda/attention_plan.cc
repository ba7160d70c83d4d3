#include "model/ops/cuda/attention_plan.h"

#include <algorithm>

namespace grpo::cuda {
namespace {

constexpr int64_t kMaxGridY = 65535;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Tiles of kAttentionTile rows of `dims` floats at a pitch of dims + 1.
int64_t TileBytes(int64_t tiles, int64_t dims) {
  return tiles * kAttentionTile * (dims + 1) * static_cast<int64_t>(sizeof(float));
}

std::string Describe(const AttentionHeads& h) {
  return "heads nh=" + std::to_string(h.nh) + " nkv=" + std::to_string(h.nkv) +
         " dqk=" + std::to_string(h.dqk) + " dv=" + std::to_string(h.dv);
}

// The conditions both kinds share; empty when they hold.
std::string GridProblem(const AttentionHeads& h) {
  if (h.nkv <= 0 || h.nh <= 0 || h.nh % h.nkv != 0) {
    return Describe(h) + ": nh must be a positive multiple of nkv";
  }
  if (h.nh > kMaxGridY) return Describe(h) + ": more than 65535 heads";
  if (h.dqk <= 0 || h.dv <= 0) return Describe(h) + ": head dims must be positive";
  return "";
}

std::string SharedProblem(const AttentionHeads& h, int64_t bytes, int64_t max_bytes) {
  if (bytes <= max_bytes) return "";
  return Describe(h) + ": the kernel's tiles need " + std::to_string(bytes) +
         " bytes of shared memory, more than the " + std::to_string(max_bytes) +
         " a block of this device has";
}

}  // namespace

int64_t ForwardSharedBytes(int64_t dqk, int64_t dv) {
  return TileBytes(2, dqk) + TileBytes(1, dv);
}

int64_t BackwardSharedBytes(int64_t dqk, int64_t dv) {
  return TileBytes(2, dqk) + TileBytes(2, dv);
}

std::string TrainingHeadsProblem(const AttentionHeads& h, int64_t max_shared_bytes) {
  std::string problem = GridProblem(h);
  if (!problem.empty()) return problem;
  if (h.dqk > kMaxAttentionHeadDim || h.dv > kMaxAttentionHeadDim) {
    return Describe(h) + ": head dims up to " + std::to_string(kMaxAttentionHeadDim);
  }
  return SharedProblem(h, std::max(ForwardSharedBytes(h.dqk, h.dv), BackwardSharedBytes(h.dqk, h.dv)),
                       max_shared_bytes);
}

std::string CachedHeadsProblem(const AttentionHeads& h, int64_t max_shared_bytes) {
  std::string problem = GridProblem(h);
  if (!problem.empty()) return problem;
  if (h.dv > kMaxCachedValueDim) {
    return Describe(h) + ": value dims up to " + std::to_string(kMaxCachedValueDim);
  }
  return SharedProblem(h, ForwardSharedBytes(h.dqk, h.dv), max_shared_bytes);
}

std::vector<RowTile> TileSequences(std::span<const int64_t> offsets, int64_t tile_rows) {
  std::vector<RowTile> tiles;
  for (size_t s = 0; s + 1 < offsets.size(); ++s) {
    for (int64_t begin = offsets[s]; begin < offsets[s + 1]; begin += tile_rows) {
      tiles.push_back({begin, std::min(begin + tile_rows, offsets[s + 1]), offsets[s], offsets[s + 1]});
    }
  }
  return tiles;
}

CachedAttentionPlan PlanCachedAttention(std::span<const int64_t> q_offsets,
                                        std::span<const int64_t> past, const AttentionHeads& heads,
                                        int64_t target_blocks) {
  const int64_t num_seqs = static_cast<int64_t>(past.size());
  const int64_t group = heads.nh / heads.nkv;
  auto new_rows = [&](int64_t s) { return q_offsets[s + 1] - q_offsets[s]; };
  auto tiles_of = [&](int64_t s) { return CeilDiv(new_rows(s) * group, kAttentionTile); };
  int64_t blocks = 0, work = 0, max_context = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    if (new_rows(s) == 0) continue;
    const int64_t context = past[s] + new_rows(s);
    blocks += heads.nkv * tiles_of(s);
    work += heads.nkv * tiles_of(s) * context;
    max_context = std::max(max_context, context);
  }
  CachedAttentionPlan plan;
  if (blocks >= target_blocks || max_context <= kMinChunkKeys) {
    plan.chunk_keys = std::max<int64_t>(max_context, 1);
  } else {
    const int64_t keys = std::max(kMinChunkKeys, CeilDiv(work, target_blocks));
    plan.chunk_keys = CeilDiv(keys, kAttentionTile) * kAttentionTile;
  }
  plan.seq_chunks.resize(num_seqs);
  plan.partial_base.resize(num_seqs);
  int64_t partial_tokens = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t n = new_rows(s);
    plan.seq_chunks[s] = CeilDiv(past[s] + n, plan.chunk_keys);
    plan.partial_base[s] = partial_tokens;
    partial_tokens += plan.seq_chunks[s] * n;
    plan.split = plan.split || (n > 0 && plan.seq_chunks[s] > 1);
    for (int64_t tile = 0; tile < tiles_of(s); ++tile) {
      const int64_t pair_begin = tile * kAttentionTile;
      const int64_t last_pair = std::min(pair_begin + kAttentionTile, n * group) - 1;
      const int64_t key_limit = past[s] + last_pair / group + 1;  // the last pair's position + 1
      for (int64_t c = 0; c * plan.chunk_keys < key_limit; ++c) {
        plan.items.push_back({s, pair_begin, c * plan.chunk_keys,
                              std::min((c + 1) * plan.chunk_keys, key_limit), c});
      }
    }
  }
  plan.partial_rows = plan.split ? partial_tokens * heads.nh : 0;
  return plan;
}

}  // namespace grpo::cuda
