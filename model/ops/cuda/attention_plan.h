// How the CUDA backend's attention kernels (attention.cu) cut their work into thread blocks, and
// how much shared memory and scratch each needs: plain host arithmetic on the launch metadata,
// tested without a GPU (attention_plan_test.cc). Plain C++ (no CUDA, no Abseil): attention.cu
// includes it for the tile constants and the work-item layouts.
//
// Every attention kernel has the same shape: a block of kAttentionThreads threads (8 warps)
// holds a tile of kAttentionTile "resident" rows, each warp kRowsPerWarp of them, and streams
// tiles of kAttentionTile other rows through shared memory, one per lane. The tiles are sized for
// sm_90 (227 KiB of shared memory per block at most, 228 KiB per SM): four f32 tiles of 32 rows
// of 256 dims (row pitch dim + 1, so the lanes' reads of one column fall in 32 different banks)
// are 128.5 KiB, the backward's largest case; at the usual head dims of 64-128 the forward takes
// 24-48 KiB and several blocks share an SM. Each lane keeps kRowsPerWarp x (dims / 32) f32
// accumulators in registers (32 at 256 dims).
#ifndef GRPO_MODEL_OPS_CUDA_ATTENTION_PLAN_H_
#define GRPO_MODEL_OPS_CUDA_ATTENTION_PLAN_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/ops/backend.h"

namespace grpo::cuda {

inline constexpr int64_t kAttentionTile = 32;     // resident rows per block = streamed rows per step
inline constexpr int64_t kRowsPerWarp = 4;        // resident rows per warp
inline constexpr int64_t kAttentionThreads = 256;  // kAttentionTile / kRowsPerWarp warps
static_assert(kAttentionTile == kRowsPerWarp * (kAttentionThreads / 32));
// Head dims of the training kernels (Attention, AttentionBackward): 8 register slots per lane.
inline constexpr int64_t kMaxAttentionHeadDim = 256;
// Value dims of CachedAttention: up to 16 slots per lane, for MLA's absorbed decode over the
// latent cache (DeepSeek-V3: dv = kv_lora_rank = 512, dqk = 512 + 64 rope dims). Its dqk is
// bounded by shared memory only.
inline constexpr int64_t kMaxCachedValueDim = 512;
// Dynamic shared memory one block may opt into on sm_90 (cudaDevAttrMaxSharedMemoryPerBlockOptin).
inline constexpr int64_t kMaxSharedBytes = 227 * 1024;
// CachedAttention splits a row's keys into chunks of at least this many positions (a multiple of
// kAttentionTile), only while the call has fewer blocks than the GPU has room for.
inline constexpr int64_t kMinChunkKeys = 256;

// Shared memory bytes: Attention and CachedAttention (q, k tiles of dqk dims, a v tile of dv);
// AttentionBackward's two kernels (q, k, dout and v tiles).
int64_t ForwardSharedBytes(int64_t dqk, int64_t dv);
int64_t BackwardSharedBytes(int64_t dqk, int64_t dv);

// Why the kernels cannot take these heads (empty when they can): nh a positive multiple of nkv,
// at most 65535 (a grid dimension), dims positive and within the limits above and the kernel's
// shared memory within max_shared_bytes (the device's opt-in limit per block).
std::string TrainingHeadsProblem(const AttentionHeads& heads,
                                 int64_t max_shared_bytes = kMaxSharedBytes);
std::string CachedHeadsProblem(const AttentionHeads& heads,
                               int64_t max_shared_bytes = kMaxSharedBytes);

// Consecutive packed rows [begin, end) of the sequence [seq_begin, seq_end).
struct RowTile {
  int64_t begin = 0, end = 0;
  int64_t seq_begin = 0, seq_end = 0;
};
// The rows of each packed sequence (offsets: ascending, offsets[0] == 0) cut into tiles of at
// most `tile_rows`, in order; a tile never spans two sequences; empty sequences have none.
std::vector<RowTile> TileSequences(std::span<const int64_t> offsets, int64_t tile_rows);

// One block of CachedAttention (and every kv head: the grid's y): the query rows of one kv
// group of sequence `seq` in pair order, pair p = (new token p / group, query head of the group
// p % group), pairs [pair_begin, pair_begin + kAttentionTile), over cache positions
// [key_begin, key_end), chunk `chunk` of the sequence's keys. key_end is at most the last pair's
// position + 1, so every block has keys to read.
struct CachedWorkItem {
  int64_t seq = 0, pair_begin = 0, key_begin = 0, key_end = 0, chunk = 0;
};

// Split-K ("flash-decoding"): the keys of sequence s (its past[s] + new positions) are cut into
// seq_chunks[s] chunks of chunk_keys positions. Without `split` (one chunk per sequence) the
// blocks write the output; with it each block writes, per row and head it covers, its chunk's
// normalized partial output and log-sum-exp at partial row
//   (partial_base[s] + chunk * new_s + i) * nh + h      (i: the row's index among s's new ones)
// and a combine step merges the chunks c <= position / chunk_keys of each row.
struct CachedAttentionPlan {
  int64_t chunk_keys = 0;
  bool split = false;
  std::vector<CachedWorkItem> items;
  std::vector<int64_t> seq_chunks, partial_base;  // per sequence
  int64_t partial_rows = 0;  // the scratch: partial_rows * dv floats of outputs, partial_rows lse
};

// The plan for q_offsets (num_seqs + 1 ascending entries from 0) and past (num_seqs) with
// `heads`: no split when the call already has target_blocks blocks (GPU's SMs x 2 is the
// backend's choice) or no context is longer than kMinChunkKeys; else chunks of
// ceil(work / target_blocks) positions (work: blocks x positions over the call), at least
// kMinChunkKeys, rounded up to kAttentionTile.
CachedAttentionPlan PlanCachedAttention(std::span<const int64_t> q_offsets,
                                        std::span<const int64_t> past, const AttentionHeads& heads,
                                        int64_t target_blocks);

}  // namespace grpo::cuda

#endif  // GRPO_MODEL_OPS_CUDA_ATTENTION_PLAN_H_
