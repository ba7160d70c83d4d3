// The CUDA backend's attention kernels (cuda_kernels.h): causal attention over packed sequences
// (forward saving the log-sum-exp, backward recomputing the probabilities from it), attention of
// new tokens over the paged KV cache, and the cache's writes and block copies.
//
// Simple and exact first: one warp per (query row, head), each lane holding head dims lane,
// lane + 32, ... in registers (head dims up to kMaxAttentionHeadDim), keys visited one at a time
// with an online softmax (running max and sum, FlashAttention's recurrence), so memory is O(T)
// whatever the sequence length. The backward runs three kernels, none with atomics: D = rowsum
// (dout * out); dq by query row; dk and dv by key row (each key row's warp loops over the query
// rows and heads that see it). Not yet tiled through shared memory: correct, not fast.
#include <cuda_runtime.h>

#include <cstdint>

#include "model/ops/cuda/cuda_kernels.h"
#include "model/ops/cuda/kernel_utils.cuh"

namespace grpo::cuda {
namespace {

constexpr int kLanesDims = kMaxAttentionHeadDim / kWarp;  // head dims per lane
constexpr int kWarpsPerBlock = 4;

// The warp's global index and its lane.
__device__ inline int64_t WarpIndex() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
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

// Loads dims lane + 32 i (< dim) of a head row into registers (0 beyond dim).
__device__ inline void LoadHead(const float* row, int64_t dim, int lane, float (&x)[kLanesDims]) {
#pragma unroll
  for (int i = 0; i < kLanesDims; ++i) {
    const int64_t d = lane + kWarp * i;
    x[i] = d < dim ? row[d] : 0.0f;
  }
}

// The dot product of registers x with a head row, summed over the warp (all lanes get it).
__device__ inline float DotHead(const float (&x)[kLanesDims], const float* row, int64_t dim,
                                int lane) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < kLanesDims; ++i) {
    const int64_t d = lane + kWarp * i;
    if (d < dim) s = __fmaf_rn(x[i], row[d], s);
  }
  return WarpSum(s);
}

// The online-softmax state of one query row: running max, sum and output accumulator.
struct OnlineSoftmax {
  float max = -INFINITY;
  float sum = 0.0f;
  float acc[kLanesDims] = {};

  // Adds key j's score and value row.
  __device__ void Add(float score, const float* v, int64_t dv, int lane) {
    const float new_max = fmaxf(max, score);
    const float rescale = expf(max - new_max);  // 0 on the first key
    const float p = expf(score - new_max);
    sum = __fmaf_rn(sum, rescale, p);
#pragma unroll
    for (int i = 0; i < kLanesDims; ++i) {
      const int64_t d = lane + kWarp * i;
      if (d < dv) acc[i] = __fmaf_rn(acc[i], rescale, p * v[d]);
    }
    max = new_max;
  }
  __device__ void Store(float* out, int64_t dv, int lane) const {
    const float inv = 1.0f / sum;
#pragma unroll
    for (int i = 0; i < kLanesDims; ++i) {
      const int64_t d = lane + kWarp * i;
      if (d < dv) out[d] = acc[i] * inv;
    }
  }
  __device__ float Lse() const { return max + logf(sum); }
};

__global__ void AttentionForwardKernel(const float* q, const float* k, const float* v, float* out,
                                       float* lse, const int64_t* seq_offsets, int64_t num_seqs,
                                       int64_t total_rows, AttentionHeads hd) {
  const int64_t w = WarpIndex();
  const int lane = threadIdx.x % kWarp;
  if (w >= total_rows * hd.nh) return;
  const int64_t t = w / hd.nh, h = w % hd.nh, g = h / (hd.nh / hd.nkv);
  const int64_t start = seq_offsets[SequenceOf(seq_offsets, num_seqs + 1, t)];
  float qr[kLanesDims];
  LoadHead(q + (t * hd.nh + h) * hd.dqk, hd.dqk, lane, qr);
  OnlineSoftmax st;
  for (int64_t j = start; j <= t; ++j) {
    const float score = hd.scale * DotHead(qr, k + (j * hd.nkv + g) * hd.dqk, hd.dqk, lane);
    st.Add(score, v + (j * hd.nkv + g) * hd.dv, hd.dv, lane);
  }
  st.Store(out + (t * hd.nh + h) * hd.dv, hd.dv, lane);
  if (lane == 0) lse[t * hd.nh + h] = st.Lse();
}

// d_rows[t, h] = sum_d dout[t, h, d] * out[t, h, d].
__global__ void RowDotOutKernel(const float* dout, const float* out, float* d_rows,
                                int64_t total_rows, AttentionHeads hd) {
  const int64_t w = WarpIndex();
  const int lane = threadIdx.x % kWarp;
  if (w >= total_rows * hd.nh) return;
  const float* a = dout + w * hd.dv;
  const float* b = out + w * hd.dv;
  float s = 0.0f;
  for (int64_t d = lane; d < hd.dv; d += kWarp) s = __fmaf_rn(a[d], b[d], s);
  s = WarpSum(s);
  if (lane == 0) d_rows[w] = s;
}

// dq of query row t, head h: sum over visible keys j of dS_tj k_j, dS = P (dP - D) scale.
__global__ void AttentionDqKernel(const float* dout, const float* q, const float* k,
                                  const float* v, const float* lse, const float* d_rows, float* dq,
                                  const int64_t* seq_offsets, int64_t num_seqs,
                                  int64_t total_rows, AttentionHeads hd) {
  const int64_t w = WarpIndex();
  const int lane = threadIdx.x % kWarp;
  if (w >= total_rows * hd.nh) return;
  const int64_t t = w / hd.nh, h = w % hd.nh, g = h / (hd.nh / hd.nkv);
  const int64_t start = seq_offsets[SequenceOf(seq_offsets, num_seqs + 1, t)];
  float qr[kLanesDims], dor[kLanesDims], acc[kLanesDims] = {};
  LoadHead(q + w * hd.dqk, hd.dqk, lane, qr);
  LoadHead(dout + w * hd.dv, hd.dv, lane, dor);
  const float row_lse = lse[w], row_d = d_rows[w];
  for (int64_t j = start; j <= t; ++j) {
    const float* kj = k + (j * hd.nkv + g) * hd.dqk;
    const float p = expf(hd.scale * DotHead(qr, kj, hd.dqk, lane) - row_lse);
    const float dp = DotHead(dor, v + (j * hd.nkv + g) * hd.dv, hd.dv, lane);
    const float ds = p * (dp - row_d) * hd.scale;
#pragma unroll
    for (int i = 0; i < kLanesDims; ++i) {
      const int64_t d = lane + kWarp * i;
      if (d < hd.dqk) acc[i] = __fmaf_rn(ds, kj[d], acc[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < kLanesDims; ++i) {
    const int64_t d = lane + kWarp * i;
    if (d < hd.dqk) dq[w * hd.dqk + d] = acc[i];
  }
}

// dk and dv of key row j, kv head g: over the heads of the group and the query rows i >= j of
// the sequence, dv_j += P_ij dout_i and dk_j += dS_ij q_i.
__global__ void AttentionDkDvKernel(const float* dout, const float* q, const float* k,
                                    const float* v, const float* lse, const float* d_rows,
                                    float* dk, float* dv, const int64_t* seq_offsets,
                                    int64_t num_seqs, int64_t total_rows, AttentionHeads hd) {
  const int64_t w = WarpIndex();
  const int lane = threadIdx.x % kWarp;
  if (w >= total_rows * hd.nkv) return;
  const int64_t j = w / hd.nkv, g = w % hd.nkv, group = hd.nh / hd.nkv;
  const int64_t end = seq_offsets[SequenceOf(seq_offsets, num_seqs + 1, j) + 1];
  float kr[kLanesDims], vr[kLanesDims], dk_acc[kLanesDims] = {}, dv_acc[kLanesDims] = {};
  LoadHead(k + w * hd.dqk, hd.dqk, lane, kr);
  LoadHead(v + w * hd.dv, hd.dv, lane, vr);
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t i = j; i < end; ++i) {
      const int64_t row = i * hd.nh + h;
      const float* qi = q + row * hd.dqk;
      const float* doi = dout + row * hd.dv;
      const float p = expf(hd.scale * DotHead(kr, qi, hd.dqk, lane) - lse[row]);
      const float dp = DotHead(vr, doi, hd.dv, lane);
      const float ds = p * (dp - d_rows[row]) * hd.scale;
#pragma unroll
      for (int x = 0; x < kLanesDims; ++x) {
        const int64_t d = lane + kWarp * x;
        if (d < hd.dv) dv_acc[x] = __fmaf_rn(p, doi[d], dv_acc[x]);
        if (d < hd.dqk) dk_acc[x] = __fmaf_rn(ds, qi[d], dk_acc[x]);
      }
    }
  }
#pragma unroll
  for (int x = 0; x < kLanesDims; ++x) {
    const int64_t d = lane + kWarp * x;
    if (d < hd.dv) dv[w * hd.dv + d] = dv_acc[x];
    if (d < hd.dqk) dk[w * hd.dqk + d] = dk_acc[x];
  }
}

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

__global__ void CachedAttentionKernel(const float* q, float* out, RawCache pool, int64_t layer,
                                      RawSeqs seqs, AttentionHeads hd, CacheRowLayout layout) {
  const int64_t w = WarpIndex();
  const int lane = threadIdx.x % kWarp;
  if (w >= seqs.total_rows * hd.nh) return;
  const int64_t t = w / hd.nh, h = w % hd.nh, g = h / (hd.nh / hd.nkv);
  const int64_t s = SequenceOf(seqs.q_offsets, seqs.num_seqs + 1, t);
  const int64_t pos = seqs.past[s] + t - seqs.q_offsets[s];
  float qr[kLanesDims];
  LoadHead(q + w * hd.dqk, hd.dqk, lane, qr);
  OnlineSoftmax st;
  for (int64_t p = 0; p <= pos; ++p) {
    const float* row = SeqRow(pool, layer, seqs, s, p);
    const float score = hd.scale * DotHead(qr, row + layout.k_offset + g * hd.dqk, hd.dqk, lane);
    st.Add(score, row + layout.v_offset + g * hd.dv, hd.dv, lane);
  }
  st.Store(out + w * hd.dv, hd.dv, lane);
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

unsigned WarpGrid(int64_t warps) { return GridFor(warps * kWarp, kWarpsPerBlock * kWarp); }

}  // namespace

void LaunchAttention(cudaStream_t s, const float* q, const float* k, const float* v, float* out,
                     float* lse, const int64_t* seq_offsets, int64_t num_seqs, int64_t total_rows,
                     const AttentionHeads& heads) {
  if (total_rows <= 0) return;
  GRPO_CUDA_LAUNCH(AttentionForwardKernel, WarpGrid(total_rows * heads.nh), kWarpsPerBlock * kWarp,
                   0, s, q, k, v, out, lse, seq_offsets, num_seqs, total_rows, heads);
}

void LaunchAttentionBackward(cudaStream_t s, const float* dout, const float* q, const float* k,
                             const float* v, const float* out, const float* lse, float* dq,
                             float* dk, float* dv, float* d_rows, const int64_t* seq_offsets,
                             int64_t num_seqs, int64_t total_rows, const AttentionHeads& heads) {
  if (total_rows <= 0) return;
  const unsigned threads = kWarpsPerBlock * kWarp;
  GRPO_CUDA_LAUNCH(RowDotOutKernel, WarpGrid(total_rows * heads.nh), threads, 0, s, dout, out,
                   d_rows, total_rows, heads);
  GRPO_CUDA_LAUNCH(AttentionDqKernel, WarpGrid(total_rows * heads.nh), threads, 0, s, dout, q, k,
                   v, lse, d_rows, dq, seq_offsets, num_seqs, total_rows, heads);
  GRPO_CUDA_LAUNCH(AttentionDkDvKernel, WarpGrid(total_rows * heads.nkv), threads, 0, s, dout, q,
                   k, v, lse, d_rows, dk, dv, seq_offsets, num_seqs, total_rows, heads);
}

void LaunchCachedAttention(cudaStream_t s, const float* q, float* out, const RawCache& pool,
                           int64_t layer, const RawSeqs& seqs, const AttentionHeads& heads,
                           const CacheRowLayout& layout) {
  if (seqs.total_rows <= 0) return;
  GRPO_CUDA_LAUNCH(CachedAttentionKernel, WarpGrid(seqs.total_rows * heads.nh),
                   kWarpsPerBlock * kWarp, 0, s, q, out, pool, layer, seqs, heads, layout);
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
