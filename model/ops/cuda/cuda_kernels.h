// The CUDA backend's kernels, as host functions that enqueue them on a stream. Plain C++ (no
// CUDA syntax) so the backend (cuda_backend.cc, compiled by the host compiler) can call them;
// the kernels themselves are in the .cu files beside this header, built by nvcc.
//
// Every pointer is a device address; sizes and scalars are host values. Each launcher checks
// its launch (GRPO_CUDA_CHECK). Semantics are those of the Backend method of the same name
// (model/ops/backend.h) and match the CPU backend's kernels (model/ops/cpu/) formula for formula;
// where the summation order differs (parallel reductions), results agree to rounding.
#ifndef GRPO_MODEL_OPS_CUDA_CUDA_KERNELS_H_
#define GRPO_MODEL_OPS_CUDA_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "model/ops/backend.h"
#include "model/ops/cuda/attention_plan.h"

namespace grpo::cuda {

// ---- elementwise and rows (elementwise.cu) --------------------------------------------------
void LaunchFill(cudaStream_t s, float* x, int64_t n, float value);
// dst[i] = bf16(src[i]) rounded to nearest even, NaN kept quiet (core/float_formats F32ToBf16).
void LaunchCastBf16(cudaStream_t s, const float* src, uint16_t* dst, int64_t n);
// *count += the number of NaN or infinite values in src[0, n).
void LaunchCountNonfinite(cudaStream_t s, const float* src, int64_t n, int32_t* count);
void LaunchAdd(cudaStream_t s, const float* src, float* dst, int64_t n);
void LaunchScale(cudaStream_t s, float* x, int64_t n, float c);
// y[r, c] += b[c] for r < rows, c < cols.
void LaunchAddBias(cudaStream_t s, const float* b, float* y, int64_t rows, int64_t cols);
// db[c] += sum over r of dy[r, c] (rows summed in order, as the CPU does).
void LaunchColumnSumAccumulate(cudaStream_t s, const float* dy, float* db, int64_t rows,
                               int64_t cols);
// C[r * ldc + c] = beta * C (0 when beta == 0) for an m x n block: a GEMM with k == 0.
void LaunchScaleMatrix(cudaStream_t s, float* c, int64_t m, int64_t n, int64_t ldc, float beta);

// A WeightView with its pointers unwrapped.
struct RawWeights {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  const float* scales = nullptr;
  int64_t rows = 0, cols = 0, row_begin = 0;
};
void LaunchWidenWeightRows(cudaStream_t s, const RawWeights& w, int64_t row_begin, int64_t row_end,
                           float* out);

void LaunchEmbedding(cudaStream_t s, const int32_t* ids, const float* table, float* out,
                     int64_t rows, int64_t dim);
void LaunchEmbeddingBackward(cudaStream_t s, const int32_t* ids, const float* dout, float* dtable,
                             int64_t rows, int64_t dim);
void LaunchRmsNorm(cudaStream_t s, const float* x, const float* w, float* y, float* rstd,
                   int64_t rows, int64_t dim, float eps);
void LaunchRmsNormBackward(cudaStream_t s, const float* dy, const float* x, const float* w,
                           const float* rstd, float* dx, float* dw, int64_t rows, int64_t dim);
void LaunchRope(cudaStream_t s, float* x, const RopeSpan& span, const int32_t* positions,
                const float* cos, const float* sin, bool inverse);
void LaunchSwiGlu(cudaStream_t s, const float* gate, const float* up, float* out, int64_t n);
void LaunchSwiGluBackward(cudaStream_t s, const float* dout, const float* gate, const float* up,
                          float* dgate, float* dup, int64_t n);
void LaunchGatherRows(cudaStream_t s, const float* src, const int32_t* rows, const float* scale,
                      float* dst, int64_t n, int64_t dim);
void LaunchScatterAddRows(cudaStream_t s, const float* src, const int32_t* rows,
                          const float* scale, float* dst, int64_t n, int64_t dim);
void LaunchCopyRows(cudaStream_t s, const float* src, int64_t src_stride, float* dst,
                    int64_t dst_stride, int64_t rows, int64_t cols, bool accumulate);
void LaunchRowDot(cudaStream_t s, const float* a, const float* b, float* out, int64_t n,
                  int64_t dim);
void LaunchLogSoftmaxTargets(cudaStream_t s, const float* logits, const int32_t* targets,
                             float* logprobs, float* entropy, int64_t rows, int64_t vocab);
void LaunchLogSoftmaxTargetsBackward(cudaStream_t s, const float* logits, const int32_t* targets,
                                     const float* weights, float* dlogits, int64_t rows,
                                     int64_t vocab);
// Backend::DivergenceRows / DivergenceRowsBackward; `reverse`: KL(p || q), else KL(q || p).
void LaunchDivergenceRows(cudaStream_t s, bool reverse, const float* logits, const float* teacher,
                          float* out, int64_t rows, int64_t vocab);
void LaunchDivergenceRowsBackward(cudaStream_t s, bool reverse, const float* logits,
                                  const float* teacher, const float* weights, float* dlogits,
                                  int64_t rows, int64_t vocab);
// Blocks of SumSquares' first pass: `partials` holds kSumSquaresBlocks doubles.
inline constexpr int kSumSquaresBlocks = 256;
void LaunchSumSquares(cudaStream_t s, const float* x, int64_t n, double* partials, double* out);
void LaunchAdamW(cudaStream_t s, float* p, const float* g, float* m, float* v, int64_t n,
                 const AdamWScalars& sc);

// ---- attention and the paged cache (attention.cu) -------------------------------------------
// Tiles, limits and the split-K plan: attention_plan.h. `tiles` (num_tiles of them) is
// TileSequences(seq_offsets, kAttentionTile) on the device; the heads pass TrainingHeadsProblem.
// `d_rows` scratch: [T, nh] floats. dq, dk, dv are written without atomics, the same bits on
// every run.
void LaunchAttention(cudaStream_t s, const float* q, const float* k, const float* v, float* out,
                     float* lse, const RowTile* tiles, int64_t num_tiles,
                     const AttentionHeads& heads);
void LaunchAttentionBackward(cudaStream_t s, const float* dout, const float* q, const float* k,
                             const float* v, const float* out, const float* lse, float* dq,
                             float* dk, float* dv, float* d_rows, const RowTile* tiles,
                             int64_t num_tiles, int64_t total_rows, const AttentionHeads& heads);

// KvCachePool / BlockTables unwrapped; the int64 arrays are device copies of the launch
// metadata (q_offsets and table offsets: num_seqs + 1 entries; past: num_seqs).
struct RawCache {
  float* data = nullptr;
  int64_t num_blocks = 0, num_layers = 0, block_size = 0, row_width = 0;
};
struct RawSeqs {
  const int32_t* block_ids = nullptr;
  const int64_t* table_offsets = nullptr;
  const int64_t* q_offsets = nullptr;
  const int64_t* past = nullptr;
  int64_t num_seqs = 0, total_rows = 0;  // total_rows = q_offsets[num_seqs]
};
// A CachedAttentionPlan on the device: its items, its partial_base (split only) and the scratch
// for the partial results (split only: partial_rows * dv and partial_rows floats).
struct RawCachedPlan {
  const CachedWorkItem* items = nullptr;
  int64_t num_items = 0;
  int64_t chunk_keys = 0;
  bool split = false;
  const int64_t* partial_base = nullptr;
  float* partial_out = nullptr;
  float* partial_lse = nullptr;
};
// The heads pass CachedHeadsProblem.
void LaunchCachedAttention(cudaStream_t s, const float* q, float* out, const RawCache& pool,
                           int64_t layer, const RawSeqs& seqs, const AttentionHeads& heads,
                           const CacheRowLayout& layout, const RawCachedPlan& plan);
void LaunchWriteCache(cudaStream_t s, const float* src, int64_t src_stride, const RawCache& pool,
                      int64_t layer, const RawSeqs& seqs, int64_t col, int64_t cols);
void LaunchCopyCacheBlocks(cudaStream_t s, const RawCache& pool, const int32_t* from,
                           const int32_t* to, int64_t n);

// ---- mixture of experts (routing.cu) --------------------------------------------------------
// The largest router the routing kernels hold per thread.
inline constexpr int64_t kMaxExperts = 512;
inline constexpr int64_t kMaxExpertGroups = 64;
inline constexpr int64_t kMaxTopK = 64;
void LaunchRoute(cudaStream_t s, const RouterSpec& spec, const float* logits, const float* bias,
                 int64_t tokens, bool forced, int32_t* experts, float* scores, float* weights);
void LaunchRouteBackward(cudaStream_t s, const RouterSpec& spec, const float* scores,
                         const int32_t* experts, const float* dweights, int64_t tokens,
                         float* dlogits);
// The token permutation of MoeExperts, as cpu::GroupByExpert (model/ops/cpu/router.h): rows
// and slots [tokens*k] of the choices in (expert, t, j) order, counts [num_experts].
void LaunchGroupByExpert(cudaStream_t s, const int32_t* experts, int64_t tokens, int64_t k,
                         int64_t num_experts, int32_t* rows, int32_t* slots, int32_t* counts);
// The permutation's offsets [num_experts + 1] from its counts (exclusive prefix sum).
void LaunchExpertOffsets(cudaStream_t s, const int32_t* counts, int64_t num_experts,
                         int32_t* offsets);
// Between the permuted rows (expert e's at [offsets[e], offsets[e+1])) and a padded layout of
// `capacity` rows per expert (expert e's at [e * capacity, e * capacity + count)): Pad writes
// every padded row (zeros past an expert's count), Unpad only the permuted rows. The counts
// must not exceed capacity.
void LaunchPadExpertRows(cudaStream_t s, const float* src, const int32_t* offsets,
                         int64_t num_experts, int64_t capacity, int64_t dim, float* dst);
void LaunchUnpadExpertRows(cudaStream_t s, const float* src, const int32_t* offsets,
                           int64_t num_experts, int64_t capacity, int64_t dim, float* dst);
// rows[i] = slots[i] / k.
void LaunchSlotTokens(cudaStream_t s, const int32_t* slots, int64_t n, int64_t k, int32_t* rows);

// ---- sampling (sampling.cu) -----------------------------------------------------------------
// One draw's options as the kernel reads them (SamplingRow, uploaded).
struct DeviceDraw {
  double temperature, top_p, min_p, uniform;
  int64_t top_k, row;
  int64_t sorted_row;  // the draw's row in `sorted` (filtered draws), else -1
};
// Sorting for filtered draws: the rows of `logits` listed in `sort_rows` (n_sort of them) are
// sorted descending by logit, ties to the lower index, into `sorted` [n_sort, vocab] as 64-bit
// keys; `keys_scratch` [n_sort * vocab] and `sort_temp` (sort_temp_bytes) are scratch.
// SortScratchBytes gives sort_temp_bytes for n_sort rows.
int64_t SortScratchBytes(int64_t n_sort, int64_t vocab);
void LaunchSortRows(cudaStream_t s, const float* logits, int64_t vocab, const int64_t* sort_rows,
                    int64_t n_sort, uint64_t* keys_scratch, uint64_t* sorted,
                    const int64_t* segment_offsets, void* sort_temp, int64_t sort_temp_bytes);
void LaunchSample(cudaStream_t s, const float* logits, int64_t vocab, const DeviceDraw* draws,
                  int64_t n, const uint64_t* sorted, int32_t* tokens, float* logprobs,
                  float* raw_logprobs);

}  // namespace grpo::cuda

#endif  // GRPO_MODEL_OPS_CUDA_CUDA_KERNELS_H_
