// The CUDA backend's attention kernels (cuda_kernels.h): causal attention over packed sequences
// (FlashAttention-2-style forward saving the log-sum-exp, backward recomputing the
// probabilities from it), split-K attention of new tokens over the paged KV cache, and the
// cache's writes and block copies.
//
// Every attention kernel is one shape (attention_plan.h has the sizes and why): a block of 8
// warps holds kAttentionTile = 32 "resident" rows in shared memory, warp w rows 4w .. 4w + 3,
// and streams tiles of 32 other rows through shared memory, lane j owning streamed row j:
//   - scores: lane j computes the dot products of its streamed row with the warp's 4 resident
//     rows (ScoreRows), so a warp holds a 4 x 32 block of scores, one column per lane, and row
//     maxima and sums are warp reductions (no shared memory);
//   - products with the streamed tile (P V, dS K, P^T dO, dS^T Q): lane l accumulates dims
//     l, l + 32, ... of the warp's 4 rows in registers, taking each weight w_ij from lane j by
//     a shuffle (AccumulateRows).
// All f32 on the CUDA cores (no TF32: the backend's f32 mode promises 1e-5 against the CPU), in
// a fixed order: results are the same on every run. Tiled, not tuned: no tensor cores, no
// asynchronous copies or double buffering, scalar shared-memory loads.
//
//   forward (FlashForwardKernel): block = (query tile of a sequence, head); key tiles from the
//     sequence's start to the query tile's last row, online softmax in f32 (running max and sum
//     per row, the accumulator rescaled when the max grows), lse = max + log(sum) saved.
//   backward: D = rowsum(dO * O) (RowDotOutKernel), then two passes that each recompute
//     P = exp(scale q.k - lse) and dS = P (dO.v - D) scale per tile: dK/dV by key tile
//     (FlashDkDvKernel, block = (key tile, kv head), over the group's heads and the query tiles
//     at and below it) and dQ by query tile (FlashDqKernel, block = (query tile, head), over the
//     key tiles up to it). Two passes instead of FlashAttention-2's atomic adds into dQ: each
//     output row has one owner block, so no atomics and the same bits on every run, as the CPU
//     backend's attention (docs/model.md) and every other reduction of this backend (docs/gpu.md)
//     promise. The price is computing P and dS twice.
//   cached (CachedAttentionKernel): block = (work item of the plan, kv head); the resident rows
//     are (new token, query head of the group) pairs, so the heads sharing a kv head read each
//     cached row once; keys read through the block table. Long contexts are split into chunks
//     (attention_plan.h's PlanCachedAttention: flash-decoding) written as partial outputs with
//     their log-sum-exp and merged by CombineChunksKernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "model/ops/cuda/attention_plan.h"
#include "model/ops/cuda/cuda_kernels.h"
#include "model/ops/cuda/kernel_utils.cuh"

namespace grpo::cuda {
namespace {

constexpr int kTile = static_cast<int>(kAttentionTile);
constexpr int kRows = static_cast<int>(kRowsPerWarp);
constexpr int kBlockThreads = static_cast<int>(kAttentionThreads);
constexpr unsigned kFullMask = 0xffffffffu;
// Each kernel is a template on kSlots, the f32 accumulators per lane and row: dims lane + 32 b,
// b < kSlots, launched with the fewest slots that hold the call's dims (WithSlots).

// min(n, limit) as an int (limit <= kTile).
__device__ inline int Fewer(int n, int64_t limit) {
  return limit < n ? static_cast<int>(limit) : n;
}

// The s with offsets[s] <= t < offsets[s + 1] (offsets: n + 1 ascending entries).
__device__ inline int64_t SequenceOf(const int64_t* offsets, int64_t n, int64_t t) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// A shared-memory tile of kTile rows of `dims` floats at a pitch of dims + 1 (odd when dims is
// even: lane j reading column d of row j hits bank (j (dims + 1) + d) % 32, 32 different banks).
struct SharedTile {
  float* data;
  int dims;
  __device__ int pitch() const { return dims + 1; }
  __device__ float* row(int r) const { return data + r * pitch(); }
  // The tile after this one in shared memory.
  __device__ float* end() const { return data + kTile * pitch(); }
};

// Fills the tile (the whole block takes part): row r < valid from global memory at row_of(r),
// the other rows zero. Callers put a __syncthreads() between this and the tile's readers.
template <class RowOf>
__device__ inline void LoadTile(const SharedTile& tile, int valid, RowOf row_of) {
  for (int r = threadIdx.x / kWarp; r < kTile; r += kBlockThreads / kWarp) {
    const float* src = r < valid ? row_of(r) : nullptr;
    for (int d = threadIdx.x % kWarp; d < tile.dims; d += kWarp) {
      tile.row(r)[d] = src != nullptr ? src[d] : 0.0f;
    }
  }
}

// s[a] = dot(rows.row(first + a), column) over the tile's dims, in dim order.
__device__ inline void ScoreRows(const SharedTile& rows, int first, const float* column,
                                 float (&s)[kRows]) {
#pragma unroll
  for (int a = 0; a < kRows; ++a) s[a] = 0.0f;
  for (int d = 0; d < rows.dims; ++d) {
    const float c = column[d];
#pragma unroll
    for (int a = 0; a < kRows; ++a) s[a] = __fmaf_rn(rows.row(first + a)[d], c, s[a]);
  }
}

// acc[a][b] += sum over j < kTile of w_j[a] * streamed.row(j)[lane + 32 b], where w_j[a] is
// lane j's w[a] (a shuffle): the warp's rows times the streamed tile, in j order.
template <int kSlots>
__device__ inline void AccumulateRows(const float (&w)[kRows], const SharedTile& streamed,
                                      int lane, float (&acc)[kRows][kSlots]) {
  for (int j = 0; j < kTile; ++j) {
    float x[kSlots];
#pragma unroll
    for (int b = 0; b < kSlots; ++b) {
      const int d = lane + kWarp * b;
      x[b] = d < streamed.dims ? streamed.row(j)[d] : 0.0f;
    }
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      const float wj = __shfl_sync(kFullMask, w[a], j);
#pragma unroll
      for (int b = 0; b < kSlots; ++b) acc[a][b] = __fmaf_rn(wj, x[b], acc[a][b]);
    }
  }
}

// Writes dims lane + 32 b (< dims) of acc[a] times `factor` to dst.
template <int kSlots>
__device__ inline void StoreRow(const float (&acc)[kSlots], float factor, int dims, int lane,
                                float* dst) {
#pragma unroll
  for (int b = 0; b < kSlots; ++b) {
    const int d = lane + kWarp * b;
    if (d < dims) dst[d] = acc[b] * factor;
  }
}

// The online softmax of a warp's kRows resident rows: running max and sum per row (the same in
// every lane) and the rows' output accumulators (dims lane + 32 b).
template <int kSlots>
struct OnlineSoftmaxRows {
  float max[kRows], sum[kRows], acc[kRows][kSlots];

  __device__ OnlineSoftmaxRows() {
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      max[a] = -INFINITY;
      sum[a] = 0.0f;
#pragma unroll
      for (int b = 0; b < kSlots; ++b) acc[a][b] = 0.0f;
    }
  }

  // Adds a streamed tile: s[a] is row a's scaled score of the lane's key (-inf where masked);
  // rows with active[a] false (the same in every lane) are left alone. An active row must see
  // at least one key in its first tile, so its max is finite from then on.
  __device__ void Add(const float (&s)[kRows], const bool (&active)[kRows],
                      const SharedTile& values, int lane) {
    float p[kRows];
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      p[a] = 0.0f;
      if (!active[a]) continue;
      const float new_max = fmaxf(max[a], WarpMax(s[a]));
      const float rescale = expf(max[a] - new_max);  // 0 on the first tile
      p[a] = expf(s[a] - new_max);                   // 0 where masked
      sum[a] = __fmaf_rn(sum[a], rescale, WarpSum(p[a]));
#pragma unroll
      for (int b = 0; b < kSlots; ++b) acc[a][b] *= rescale;
      max[a] = new_max;
    }
    AccumulateRows(p, values, lane, acc);
  }
  __device__ float Lse(int a) const { return max[a] + logf(sum[a]); }
};

// ---- training: packed sequences ------------------------------------------------------------

template <int kSlots>
__global__ void __launch_bounds__(kBlockThreads)
    FlashForwardKernel(const float* q, const float* k, const float* v, float* out, float* lse,
                       const RowTile* tiles, AttentionHeads hd) {
  extern __shared__ float smem[];
  const SharedTile qs{smem, static_cast<int>(hd.dqk)};
  const SharedTile ks{qs.end(), static_cast<int>(hd.dqk)};
  const SharedTile vs{ks.end(), static_cast<int>(hd.dv)};
  const RowTile tile = tiles[blockIdx.x];
  const int64_t h = blockIdx.y, g = h / (hd.nh / hd.nkv);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, first = warp * kRows;
  LoadTile(qs, static_cast<int>(tile.end - tile.begin),
           [&](int r) { return q + ((tile.begin + r) * hd.nh + h) * hd.dqk; });
  OnlineSoftmaxRows<kSlots> st;
  for (int64_t k0 = tile.seq_begin; k0 < tile.end; k0 += kTile) {
    __syncthreads();  // the previous key tile's readers are done
    const int keys = Fewer(kTile, tile.end - k0);
    LoadTile(ks, keys, [&](int r) { return k + ((k0 + r) * hd.nkv + g) * hd.dqk; });
    LoadTile(vs, keys, [&](int r) { return v + ((k0 + r) * hd.nkv + g) * hd.dv; });
    __syncthreads();
    float s[kRows];
    bool active[kRows];
    ScoreRows(qs, first, ks.row(lane), s);
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      const int64_t row = tile.begin + first + a, key = k0 + lane;
      active[a] = row < tile.end && k0 <= row;  // the key tile holds a key the row sees
      s[a] = key <= row ? hd.scale * s[a] : -INFINITY;
    }
    st.Add(s, active, vs, lane);
  }
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    const int64_t row = tile.begin + first + a;
    if (row >= tile.end) continue;
    StoreRow(st.acc[a], 1.0f / st.sum[a], vs.dims, lane, out + (row * hd.nh + h) * hd.dv);
    if (lane == 0) lse[row * hd.nh + h] = st.Lse(a);
  }
}

// d_rows[t, h] = sum_d dout[t, h, d] * out[t, h, d], one warp per (t, h).
__global__ void RowDotOutKernel(const float* dout, const float* out, float* d_rows,
                                int64_t total_rows, AttentionHeads hd) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= total_rows * hd.nh) return;
  const float* a = dout + w * hd.dv;
  const float* b = out + w * hd.dv;
  float s = 0.0f;
  for (int64_t d = lane; d < hd.dv; d += kWarp) s = __fmaf_rn(a[d], b[d], s);
  s = WarpSum(s);
  if (lane == 0) d_rows[w] = s;
}

// The softmax gradient of one score: p = exp(scale s - lse) (0 where masked) and
// ds = p (dp - D) scale.
__device__ inline void ScoreGradient(float s, float dp, float row_lse, float row_d, bool visible,
                                     float scale, float& p, float& ds) {
  p = visible ? expf(scale * s - row_lse) : 0.0f;
  ds = p * (dp - row_d) * scale;
}

// dK and dV of a key tile and kv head: resident rows are keys, streamed rows are queries.
template <int kSlots>
__global__ void __launch_bounds__(kBlockThreads)
    FlashDkDvKernel(const float* dout, const float* q, const float* k, const float* v,
                    const float* lse, const float* d_rows, float* dk, float* dv,
                    const RowTile* tiles, AttentionHeads hd) {
  extern __shared__ float smem[];
  const SharedTile ks{smem, static_cast<int>(hd.dqk)};
  const SharedTile vs{ks.end(), static_cast<int>(hd.dv)};
  const SharedTile qs{vs.end(), static_cast<int>(hd.dqk)};
  const SharedTile dos{qs.end(), static_cast<int>(hd.dv)};
  const RowTile tile = tiles[blockIdx.x];
  const int64_t g = blockIdx.y, group = hd.nh / hd.nkv;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, first = warp * kRows;
  const int keys = static_cast<int>(tile.end - tile.begin);
  LoadTile(ks, keys, [&](int r) { return k + ((tile.begin + r) * hd.nkv + g) * hd.dqk; });
  LoadTile(vs, keys, [&](int r) { return v + ((tile.begin + r) * hd.nkv + g) * hd.dv; });
  float dk_acc[kRows][kSlots] = {}, dv_acc[kRows][kSlots] = {};
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t i0 = tile.begin; i0 < tile.seq_end; i0 += kTile) {
      const int queries = Fewer(kTile, tile.seq_end - i0);
      __syncthreads();  // the previous query tile's readers are done
      LoadTile(qs, queries, [&](int r) { return q + ((i0 + r) * hd.nh + h) * hd.dqk; });
      LoadTile(dos, queries, [&](int r) { return dout + ((i0 + r) * hd.nh + h) * hd.dv; });
      __syncthreads();
      const int64_t query = i0 + lane;  // the lane's streamed row
      const bool real_query = lane < queries;
      const float row_lse = real_query ? lse[query * hd.nh + h] : 0.0f;
      const float row_d = real_query ? d_rows[query * hd.nh + h] : 0.0f;
      float s[kRows], dp[kRows], p[kRows], ds[kRows];
      ScoreRows(ks, first, qs.row(lane), s);
      ScoreRows(vs, first, dos.row(lane), dp);
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
        const int64_t key = tile.begin + first + a;
        const bool visible = key < tile.end && real_query && key <= query;
        ScoreGradient(s[a], dp[a], row_lse, row_d, visible, hd.scale, p[a], ds[a]);
      }
      AccumulateRows(p, dos, lane, dv_acc);   // dV_j += sum_i P_ij dO_i
      AccumulateRows(ds, qs, lane, dk_acc);   // dK_j += sum_i dS_ij Q_i
    }
  }
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    const int64_t key = tile.begin + first + a;
    if (key >= tile.end) continue;
    StoreRow(dk_acc[a], 1.0f, ks.dims, lane, dk + (key * hd.nkv + g) * hd.dqk);
    StoreRow(dv_acc[a], 1.0f, vs.dims, lane, dv + (key * hd.nkv + g) * hd.dv);
  }
}

// dQ of a query tile and head: resident rows are queries, streamed rows are keys.
template <int kSlots>
__global__ void __launch_bounds__(kBlockThreads)
    FlashDqKernel(const float* dout, const float* q, const float* k, const float* v,
                  const float* lse, const float* d_rows, float* dq, const RowTile* tiles,
                  AttentionHeads hd) {
  extern __shared__ float smem[];
  const SharedTile qs{smem, static_cast<int>(hd.dqk)};
  const SharedTile dos{qs.end(), static_cast<int>(hd.dv)};
  const SharedTile ks{dos.end(), static_cast<int>(hd.dqk)};
  const SharedTile vs{ks.end(), static_cast<int>(hd.dv)};
  const RowTile tile = tiles[blockIdx.x];
  const int64_t h = blockIdx.y, g = h / (hd.nh / hd.nkv);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, first = warp * kRows;
  const int rows = static_cast<int>(tile.end - tile.begin);
  LoadTile(qs, rows, [&](int r) { return q + ((tile.begin + r) * hd.nh + h) * hd.dqk; });
  LoadTile(dos, rows, [&](int r) { return dout + ((tile.begin + r) * hd.nh + h) * hd.dv; });
  float row_lse[kRows], row_d[kRows];
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    const int64_t row = tile.begin + first + a;
    row_lse[a] = row < tile.end ? lse[row * hd.nh + h] : 0.0f;
    row_d[a] = row < tile.end ? d_rows[row * hd.nh + h] : 0.0f;
  }
  float dq_acc[kRows][kSlots] = {};
  for (int64_t k0 = tile.seq_begin; k0 < tile.end; k0 += kTile) {
    __syncthreads();
    const int keys = Fewer(kTile, tile.end - k0);
    LoadTile(ks, keys, [&](int r) { return k + ((k0 + r) * hd.nkv + g) * hd.dqk; });
    LoadTile(vs, keys, [&](int r) { return v + ((k0 + r) * hd.nkv + g) * hd.dv; });
    __syncthreads();
    float s[kRows], dp[kRows], p[kRows], ds[kRows];
    ScoreRows(qs, first, ks.row(lane), s);
    ScoreRows(dos, first, vs.row(lane), dp);
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      const int64_t row = tile.begin + first + a, key = k0 + lane;
      const bool visible = row < tile.end && key <= row;
      ScoreGradient(s[a], dp[a], row_lse[a], row_d[a], visible, hd.scale, p[a], ds[a]);
    }
    AccumulateRows(ds, ks, lane, dq_acc);  // dQ_i += sum_j dS_ij K_j
  }
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    const int64_t row = tile.begin + first + a;
    if (row < tile.end) StoreRow(dq_acc[a], 1.0f, qs.dims, lane, dq + (row * hd.nh + h) * hd.dqk);
  }
}

// ---- decoding: the paged cache -------------------------------------------------------------

// Row (block, layer, offset) of the paged pool.
__device__ inline float* CacheRow(const RawCache& pool, int64_t layer, int32_t block,
                                  int64_t offset) {
  return pool.data +
         ((static_cast<int64_t>(block) * pool.num_layers + layer) * pool.block_size + offset) *
             pool.row_width;
}

// Position p of sequence s: its cache row.
__device__ inline float* SeqRow(const RawCache& pool, int64_t layer, const RawSeqs& seqs,
                                int64_t s, int64_t p) {
  const int32_t block = seqs.block_ids[seqs.table_offsets[s] + p / pool.block_size];
  return CacheRow(pool, layer, block, p % pool.block_size);
}

// Resident row r of a work item: pair item.pair_begin + r of its sequence's kv group.
struct CachedRow {
  bool real = false;     // a pair of the sequence
  int64_t t = 0, h = 0;  // packed query row and head
  int64_t index = 0;     // the row's index among the sequence's new rows
  int64_t position = 0;  // its position in the sequence
};

__device__ inline CachedRow CachedRowOf(const CachedWorkItem& item, const RawSeqs& seqs,
                                        const AttentionHeads& hd, int64_t g, int r) {
  const int64_t group = hd.nh / hd.nkv;
  const int64_t q_begin = seqs.q_offsets[item.seq];
  const int64_t pair = item.pair_begin + r;
  CachedRow row;
  row.real = pair < (seqs.q_offsets[item.seq + 1] - q_begin) * group;
  row.index = pair / group;
  row.t = q_begin + row.index;
  row.h = g * group + pair % group;
  row.position = seqs.past[item.seq] + row.index;
  return row;
}

template <int kSlots>
__global__ void __launch_bounds__(kBlockThreads)
    CachedAttentionKernel(const float* q, float* out, RawCache pool, int64_t layer, RawSeqs seqs,
                          AttentionHeads hd, CacheRowLayout layout, RawCachedPlan plan) {
  extern __shared__ float smem[];
  const SharedTile qs{smem, static_cast<int>(hd.dqk)};
  const SharedTile ks{qs.end(), static_cast<int>(hd.dqk)};
  const SharedTile vs{ks.end(), static_cast<int>(hd.dv)};
  const CachedWorkItem item = plan.items[blockIdx.x];
  const int64_t g = blockIdx.y;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, first = warp * kRows;
  LoadTile(qs, kTile, [&](int r) -> const float* {
    const CachedRow row = CachedRowOf(item, seqs, hd, g, r);
    return row.real ? q + (row.t * hd.nh + row.h) * hd.dqk : nullptr;
  });
  CachedRow rows[kRows];
#pragma unroll
  for (int a = 0; a < kRows; ++a) rows[a] = CachedRowOf(item, seqs, hd, g, first + a);
  OnlineSoftmaxRows<kSlots> st;
  for (int64_t k0 = item.key_begin; k0 < item.key_end; k0 += kTile) {
    __syncthreads();
    const int keys = Fewer(kTile, item.key_end - k0);
    LoadTile(ks, keys, [&](int r) {
      return SeqRow(pool, layer, seqs, item.seq, k0 + r) + layout.k_offset + g * hd.dqk;
    });
    LoadTile(vs, keys, [&](int r) {
      return SeqRow(pool, layer, seqs, item.seq, k0 + r) + layout.v_offset + g * hd.dv;
    });
    __syncthreads();
    float s[kRows];
    bool active[kRows];
    ScoreRows(qs, first, ks.row(lane), s);
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      const int64_t key = k0 + lane;
      active[a] = rows[a].real && k0 <= rows[a].position;
      s[a] = key <= rows[a].position && key < item.key_end ? hd.scale * s[a] : -INFINITY;
    }
    st.Add(s, active, vs, lane);
  }
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    const CachedRow& row = rows[a];
    // Rows before the chunk's first key have no part in it (the combine skips this chunk).
    if (!row.real || row.position < item.key_begin) continue;
    if (!plan.split) {
      StoreRow(st.acc[a], 1.0f / st.sum[a], vs.dims, lane, out + (row.t * hd.nh + row.h) * hd.dv);
      continue;
    }
    const int64_t new_rows = seqs.q_offsets[item.seq + 1] - seqs.q_offsets[item.seq];
    const int64_t partial =
        (plan.partial_base[item.seq] + item.chunk * new_rows + row.index) * hd.nh + row.h;
    StoreRow(st.acc[a], 1.0f / st.sum[a], vs.dims, lane, plan.partial_out + partial * hd.dv);
    if (lane == 0) plan.partial_lse[partial] = st.Lse(a);
  }
}

// out[t, h] = sum_c exp(lse_c - M) o_c / sum_c exp(lse_c - M) over the chunks c <= position /
// chunk_keys of row t (M their largest lse), one warp per (t, h).
__global__ void CombineChunksKernel(float* out, RawSeqs seqs, AttentionHeads hd,
                                    RawCachedPlan plan) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= seqs.total_rows * hd.nh) return;
  const int64_t t = w / hd.nh, h = w % hd.nh;
  const int64_t s = SequenceOf(seqs.q_offsets, seqs.num_seqs + 1, t);
  const int64_t index = t - seqs.q_offsets[s], new_rows = seqs.q_offsets[s + 1] - seqs.q_offsets[s];
  const int64_t chunks = (seqs.past[s] + index) / plan.chunk_keys + 1;
  auto partial = [&](int64_t c) { return (plan.partial_base[s] + c * new_rows + index) * hd.nh + h; };
  float max_lse = -INFINITY;
  for (int64_t c = 0; c < chunks; ++c) max_lse = fmaxf(max_lse, plan.partial_lse[partial(c)]);
  float total = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) total += expf(plan.partial_lse[partial(c)] - max_lse);
  for (int64_t d = lane; d < hd.dv; d += kWarp) {
    float acc = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) {
      const float weight = expf(plan.partial_lse[partial(c)] - max_lse);
      acc = __fmaf_rn(weight, plan.partial_out[partial(c) * hd.dv + d], acc);
    }
    out[w * hd.dv + d] = acc / total;
  }
}

__global__ void WriteCacheKernel(const float* src, int64_t src_stride, RawCache pool,
                                 int64_t layer, RawSeqs seqs, int64_t col, int64_t cols) {
  GRPO_GRID_LOOP(i, seqs.total_rows * cols) {
    const int64_t t = i / cols, c = i % cols;
    const int64_t s = SequenceOf(seqs.q_offsets, seqs.num_seqs + 1, t);
    const int64_t p = seqs.past[s] + t - seqs.q_offsets[s];
    SeqRow(pool, layer, seqs, s, p)[col + c] = src[t * src_stride + c];
  }
}

__global__ void CopyCacheBlocksKernel(float* data, int64_t block_floats, const int32_t* from,
                                      const int32_t* to, int64_t n) {
  GRPO_GRID_LOOP(i, n * block_floats) {
    const int64_t b = i / block_floats, e = i % block_floats;
    data[static_cast<int64_t>(to[b]) * block_floats + e] =
        data[static_cast<int64_t>(from[b]) * block_floats + e];
  }
}

// Blocks of kWarpsPerBlock warps for one warp per item.
constexpr int kWarpsPerBlock = 4;
unsigned WarpGrid(int64_t warps) { return GridFor(warps * kWarp, kWarpsPerBlock * kWarp); }

// Calls launch(std::integral_constant<int, kSlots>()) with the fewest register slots per lane,
// at most kMaxSlots, that hold `dims` (the callers' checks keep dims within kMaxSlots * 32).
template <int kMaxSlots, class Launch>
void WithSlots(int64_t dims, Launch launch) {
  if (dims <= 2 * kWarp) {
    launch(std::integral_constant<int, 2>());
  } else if (dims <= 4 * kWarp) {
    launch(std::integral_constant<int, 4>());
  } else if (kMaxSlots <= 8 || dims <= 8 * kWarp) {
    launch(std::integral_constant<int, 8>());
  } else {
    launch(std::integral_constant<int, kMaxSlots>());
  }
}

constexpr int kTrainingSlots = static_cast<int>(kMaxAttentionHeadDim) / kWarp;  // 8
constexpr int kCachedSlots = static_cast<int>(kMaxCachedValueDim) / kWarp;      // 16

// Launches a tiled kernel on (tiles, heads) blocks with `smem` bytes of dynamic shared memory
// (opted into above the default 48 KiB).
template <class Kernel, class... Args>
void LaunchTiled(Kernel kernel, int64_t tiles, int64_t heads, int64_t smem, cudaStream_t s,
                 Args... args) {
  if (tiles <= 0) return;
  GRPO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(heads));
  GRPO_CUDA_LAUNCH(kernel, grid, kBlockThreads, static_cast<size_t>(smem), s, args...);
}

}  // namespace

void LaunchAttention(cudaStream_t s, const float* q, const float* k, const float* v, float* out,
                     float* lse, const RowTile* tiles, int64_t num_tiles,
                     const AttentionHeads& heads) {
  WithSlots<kTrainingSlots>(heads.dv, [&](auto slots) {
    LaunchTiled(FlashForwardKernel<decltype(slots)::value>, num_tiles, heads.nh,
                ForwardSharedBytes(heads.dqk, heads.dv), s, q, k, v, out, lse, tiles, heads);
  });
}

void LaunchAttentionBackward(cudaStream_t s, const float* dout, const float* q, const float* k,
                             const float* v, const float* out, const float* lse, float* dq,
                             float* dk, float* dv, float* d_rows, const RowTile* tiles,
                             int64_t num_tiles, int64_t total_rows, const AttentionHeads& heads) {
  if (total_rows <= 0) return;
  GRPO_CUDA_LAUNCH(RowDotOutKernel, WarpGrid(total_rows * heads.nh), kWarpsPerBlock * kWarp, 0, s,
                   dout, out, d_rows, total_rows, heads);
  const int64_t smem = BackwardSharedBytes(heads.dqk, heads.dv);
  const float* d = d_rows;
  WithSlots<kTrainingSlots>(std::max(heads.dqk, heads.dv), [&](auto slots) {
    LaunchTiled(FlashDkDvKernel<decltype(slots)::value>, num_tiles, heads.nkv, smem, s, dout, q, k,
                v, lse, d, dk, dv, tiles, heads);
  });
  WithSlots<kTrainingSlots>(heads.dqk, [&](auto slots) {
    LaunchTiled(FlashDqKernel<decltype(slots)::value>, num_tiles, heads.nh, smem, s, dout, q, k, v,
                lse, d, dq, tiles, heads);
  });
}

void LaunchCachedAttention(cudaStream_t s, const float* q, float* out, const RawCache& pool,
                           int64_t layer, const RawSeqs& seqs, const AttentionHeads& heads,
                           const CacheRowLayout& layout, const RawCachedPlan& plan) {
  if (plan.num_items <= 0) return;
  const int64_t smem = ForwardSharedBytes(heads.dqk, heads.dv);
  WithSlots<kCachedSlots>(heads.dv, [&](auto slots) {
    LaunchTiled(CachedAttentionKernel<decltype(slots)::value>, plan.num_items, heads.nkv, smem, s,
                q, out, pool, layer, seqs, heads, layout, plan);
  });
  if (plan.split) {
    GRPO_CUDA_LAUNCH(CombineChunksKernel, WarpGrid(seqs.total_rows * heads.nh),
                     kWarpsPerBlock * kWarp, 0, s, out, seqs, heads, plan);
  }
}

void LaunchWriteCache(cudaStream_t s, const float* src, int64_t src_stride, const RawCache& pool,
                      int64_t layer, const RawSeqs& seqs, int64_t col, int64_t cols) {
  if (seqs.total_rows * cols <= 0) return;
  GRPO_CUDA_LAUNCH(WriteCacheKernel, GridFor(seqs.total_rows * cols), kThreads, 0, s, src,
                   src_stride, pool, layer, seqs, col, cols);
}

void LaunchCopyCacheBlocks(cudaStream_t s, const RawCache& pool, const int32_t* from,
                           const int32_t* to, int64_t n) {
  const int64_t block_floats = pool.num_layers * pool.block_size * pool.row_width;
  if (n * block_floats <= 0) return;
  GRPO_CUDA_LAUNCH(CopyCacheBlocksKernel, GridFor(n * block_floats), kThreads, 0, s, pool.data,
                   block_floats, from, to, n);
}

}  // namespace grpo::cuda
