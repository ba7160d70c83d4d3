// Backend: every numerical op the model families use, as forward/backward pairs over plain f32
// buffers (llm.c style). Model code calls only this interface and allocates its buffers through
// it, so it does not know which backend runs; model/ops/cpu is the one built today, and a CUDA
// backend implements the same interface over device memory. Projection weights may also be
// read in bf16 or FP8 block form (WeightView, LinearWeights) for inference.
//
// Conventions: row-major; `dx`-style input gradients are OVERWRITTEN unless the op says
// otherwise; parameter gradients (`dw`, `db`, `dtable`) are ACCUMULATED (+=) so several uses of
// a parameter (tied embeddings, experts over several calls) sum up. A null gradient pointer
// skips that gradient. Packed batches: `seq_offsets` has num_seqs+1 entries; sequence s covers
// rows [seq_offsets[s], seq_offsets[s+1]) and attends causally within itself only.
#ifndef GRPO_MODEL_OPS_BACKEND_H_
#define GRPO_MODEL_OPS_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "core/dtype.h"

namespace grpo {

class Backend;

// A buffer of floats owned by a backend (host memory for the CPU backend). UNINITIALIZED: ops
// overwrite their outputs; code that accumulates zeroes first (Backend::Zero). With the
// environment variable GRPO_POISON_BUFFERS=1 new buffers are filled with NaN, so a read of
// unwritten memory shows up in tests (the model tests run with it).
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* backend, int64_t size);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  Backend* backend_ = nullptr;
  float* data_ = nullptr;
  int64_t size_ = 0;
};

// A projection matrix W [rows, cols] (row-major) as the model holds it: f32, bf16, or FP8 E4M3
// with 128x128 block scales (`weight_scale_inv`, core/fp8_block.h). A view may be rows
// [row_begin, row_begin + rows) of a larger stored matrix (MLA's kv_a_proj_with_mqa is used as
// two row slices): `data` and `scales` always point at the whole matrix's first row, so the
// block scale of a row is found by its row in the whole matrix. bf16 data may be unaligned
// (a view into a safetensors mapping); f32 data and scales are float-aligned.
struct WeightView {
  DType dtype = DType::kF32;      // kF32, kBF16 or kF8E4M3
  const void* data = nullptr;     // the whole matrix
  const float* scales = nullptr;  // kF8E4M3: [ceil(total rows/128), ceil(cols/128)]
  int64_t rows = 0, cols = 0;     // of this view
  int64_t row_begin = 0;          // first row of the view in the whole matrix

  static WeightView F32(const float* w, int64_t rows, int64_t cols) {
    return WeightView{DType::kF32, w, nullptr, rows, cols, 0};
  }
  // Rows [begin, begin + count) of this view.
  WeightView Rows(int64_t begin, int64_t count) const {
    WeightView v = *this;
    v.row_begin = row_begin + begin;
    v.rows = count;
    return v;
  }
  // kF32 only: the view's first row.
  const float* f32() const { return static_cast<const float*>(data) + row_begin * cols; }
};

// How RoPE pairs the dimensions of a head: (i, i + d/2) as in Llama/Qwen ("rotate half"), or
// (2i, 2i+1) as in DeepSeek-V3 checkpoints ("interleaved").
enum class RopeLayout { kRotateHalf, kInterleaved };

// Where RoPE rotates in an activation: dims [offset, offset + 2*half) of each of `heads` heads
// in each of `rows` rows; head h of row t starts at x + t*row_stride + h*head_stride.
struct RopeSpan {
  int64_t rows = 0, heads = 0;
  int64_t row_stride = 0, head_stride = 0;
  int64_t offset = 0, half = 0;
  RopeLayout layout = RopeLayout::kRotateHalf;
};

// The heads of an attention call: nh query heads over nkv key/value heads (GQA: query head h
// reads kv head h / (nh / nkv)); q and k have dqk dims per head, v and the output dv. `scale`
// multiplies q.k before the softmax.
struct AttentionHeads {
  int64_t nh = 0, nkv = 0, dqk = 0, dv = 0;
  float scale = 1.0f;
};

// Where a KV-cache row holds kv head g's key (k_offset + g*dqk) and value (v_offset + g*dv).
struct CacheRowLayout {
  int64_t k_offset = 0, v_offset = 0;
};

// The paged KV cache as kernels index it (the vLLM / FlashInfer layout): one backend buffer of
// `num_blocks` blocks, each holding `block_size` consecutive positions of one sequence in every
// layer: row (block b, layer l, position-in-block i) starts at
//   data + ((b * num_layers + l) * block_size + i) * row_width.
// MLA's latent cache is the same pool with its own row width (model/kv_cache.h).
struct KvCachePool {
  float* data = nullptr;
  int64_t num_blocks = 0, num_layers = 0, block_size = 0, row_width = 0;
};

// The block tables of the sequences of one call, packed: position p of sequence s lives in
// block ids[offsets[s] + p / block_size], row p % block_size. offsets has num_seqs + 1 entries.
// (On a device backend `ids` is a small int32 device buffer.)
struct BlockTables {
  const int32_t* ids = nullptr;
  std::span<const int64_t> offsets;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  virtual float* Allocate(int64_t size) = 0;  // uninitialized (see Buffer)
  virtual void Free(float* data) = 0;
  virtual void Copy(const float* src, float* dst, int64_t size) = 0;
  virtual void Zero(float* data, int64_t size) = 0;
  // dst[i] += src[i]
  virtual void Add(const float* src, float* dst, int64_t size) = 0;

  // ---- linear layers --------------------------------------------------------------------------
  // y[m,n] = x[m,k] · w[n,k]^T (+ b[n]).
  virtual void Linear(const float* x, const float* w, const float* b, float* y, int64_t m,
                      int64_t k, int64_t n) = 0;
  // dx = dy · w (overwritten, or added when accumulate_dx); dw += dy^T · x; db += colsum(dy).
  virtual void LinearBackward(const float* dy, const float* x, const float* w, float* dx,
                              float* dw, float* db, int64_t m, int64_t k, int64_t n,
                              bool accumulate_dx) = 0;

  // y[m,n] = x[m,k] · W[n,k]^T (+ b[n]) for a weight in any WeightView format (w.rows == n,
  // w.cols == k). bf16/FP8 weights are widened to f32 a tile of output rows at a time into a
  // small per-thread scratch, each tile then one GEMM: the whole f32 matrix is never
  // materialized. For f32 it is Linear. Inference only (there is no backward).
  virtual void LinearWeights(const float* x, const WeightView& w, const float* b, float* y,
                             int64_t m, int64_t k, int64_t n) = 0;
  // out[(r - row_begin) * w.cols + c] = W[r, c] widened to f32, for rows [row_begin, row_end) of
  // the view: the same values LinearWeights multiplies with (f32(q) * scale for FP8).
  virtual void WidenWeightRows(const WeightView& w, int64_t row_begin, int64_t row_end,
                               float* out) = 0;

  // C[m,n] = alpha * op(A) · op(B) + beta * C, row-major with leading dimensions (BLAS sgemm).
  virtual void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) = 0;

  // ---- embedding ----------------------------------------------------------------------------
  // out[t] = table[ids[t]].
  virtual void Embedding(const int32_t* ids, const float* table, float* out, int64_t rows,
                         int64_t dim) = 0;
  // dtable[ids[t]] += dout[t].
  virtual void EmbeddingBackward(const int32_t* ids, const float* dout, float* dtable,
                                 int64_t rows, int64_t dim) = 0;

  // ---- normalization ------------------------------------------------------------------------
  // y = x * rstd * w per row of `dim`, rstd = 1/sqrt(mean(x^2) + eps) (saved for backward).
  virtual void RmsNorm(const float* x, const float* w, float* y, float* rstd, int64_t rows,
                       int64_t dim, float eps) = 0;
  virtual void RmsNormBackward(const float* dy, const float* x, const float* w,
                               const float* rstd, float* dx, float* dw, int64_t rows,
                               int64_t dim) = 0;

  // ---- rotary position embedding ------------------------------------------------------------
  // Rotates, in place, the span's dims of row t by angle positions[t] * freq_i, with cos/sin
  // tables of shape [max_position, span.half]. `inverse` rotates by the opposite angle, which is
  // the backward of the forward rotation (applied to the gradient in place).
  virtual void Rope(float* x, const RopeSpan& span, const int32_t* positions, const float* cos,
                    const float* sin, bool inverse) = 0;

  // ---- attention ----------------------------------------------------------------------------
  // Causal attention within each packed sequence, FlashAttention-style. q: [T, nh, dqk],
  // k: [T, nkv, dqk], v: [T, nkv, dv], out: [T, nh, dv] (sizes from `heads`). lse: [T, nh]
  // receives the log-sum-exp of each row's scaled, masked scores (log sum_j exp(scale q.k_j)),
  // the one number per row and head the backward needs: the probabilities are never stored
  // (O(T) memory, not O(L^2)); a backend computes them block by block (online softmax over key
  // blocks) in scratch whose size does not depend on the sequence lengths.
  virtual void Attention(const float* q, const float* k, const float* v, float* out, float* lse,
                         std::span<const int64_t> seq_offsets, const AttentionHeads& heads) = 0;
  // The backward of Attention from its inputs, its output `out` and its `lse`: recomputes the
  // probabilities block by block (P = exp(scale q.k - lse)) and uses D_i = rowsum(dout_i * out_i)
  // for the softmax gradient. dq, dk, dv overwritten; extra memory is block-sized scratch only.
  virtual void AttentionBackward(const float* dout, const float* q, const float* k,
                                 const float* v, const float* out, const float* lse, float* dq,
                                 float* dk, float* dv, std::span<const int64_t> seq_offsets,
                                 const AttentionHeads& heads) = 0;

  // Attention of new tokens over the paged cache (decoding and chunked prefill). Sequence s has
  // new tokens q rows [q_offsets[s], q_offsets[s+1]) at positions past[s] + i; they attend
  // causally to positions [0, past[s] + i], read from layer `layer` of `pool` through the
  // sequence's block table (rows laid out as `layout` says). q: [Tn, nh, dqk], out: [Tn, nh, dv]
  // (overwritten).
  virtual void CachedAttention(const float* q, float* out, std::span<const int64_t> q_offsets,
                               std::span<const int64_t> past, const KvCachePool& pool,
                               int64_t layer, const BlockTables& tables,
                               const AttentionHeads& heads, const CacheRowLayout& layout) = 0;
  // Writes the new tokens' rows into layer `layer` of the cache: for token t of sequence s (at
  // position past[s] + t - q_offsets[s]), row floats [col, col + cols) = src[t*src_stride + c].
  virtual void WriteCache(const float* src, int64_t src_stride, const KvCachePool& pool,
                          int64_t layer, const BlockTables& tables,
                          std::span<const int64_t> q_offsets, std::span<const int64_t> past,
                          int64_t col, int64_t cols) = 0;
  // Copies every layer's rows of block from[i] into block to[i], i < n (copy-on-write of blocks
  // that sequences share).
  virtual void CopyCacheBlocks(const KvCachePool& pool, const int32_t* from, const int32_t* to,
                               int64_t n) = 0;

  // ---- activations --------------------------------------------------------------------------
  // out = silu(gate) * up.
  virtual void SwiGlu(const float* gate, const float* up, float* out, int64_t size) = 0;
  // dgate, dup overwritten.
  virtual void SwiGluBackward(const float* dout, const float* gate, const float* up,
                              float* dgate, float* dup, int64_t size) = 0;

  // ---- rows ---------------------------------------------------------------------------------
  // dst[i] = scale[i] * src[rows[i]] for i < n (scale null: 1).
  virtual void GatherRows(const float* src, const int32_t* rows, const float* scale, float* dst,
                          int64_t n, int64_t dim) = 0;
  // dst[rows[i]] += scale[i] * src[i] (scale null: 1). Rows may repeat.
  virtual void ScatterAddRows(const float* src, const int32_t* rows, const float* scale,
                              float* dst, int64_t n, int64_t dim) = 0;
  // dst[r*dst_stride + c] = (or += with accumulate) src[r*src_stride + c], for `rows` rows of
  // `cols` floats. Strided views of packed activations (MLA's key assembly) use it.
  virtual void CopyRows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                        int64_t rows, int64_t cols, bool accumulate) = 0;
  // out[i] = dot(a[i], b[i]) for n rows of `dim`.
  virtual void RowDot(const float* a, const float* b, float* out, int64_t n, int64_t dim) = 0;

  // ---- independent work ---------------------------------------------------------------------
  // Calls task(i) once for every i in [0, n), possibly concurrently: for pieces of work each too
  // small to split (the MoE experts of a decode step). Ops called inside a task run on the
  // task's thread; their results are the same as when called outside.
  virtual void RunIndependent(int64_t n, const std::function<void(int64_t)>& task) = 0;

  // ---- output distribution ------------------------------------------------------------------
  // For each row t of logits [rows, vocab]: logprob[t] = log softmax(logits[t])[targets[t]]
  // (skipped where targets[t] < 0) and entropy[t] of the distribution (entropy may be null).
  virtual void LogSoftmaxTargets(const float* logits, const int32_t* targets, float* logprobs,
                                 float* entropy, int64_t rows, int64_t vocab) = 0;
  // dlogits[t] = weight[t] * (onehot(targets[t]) - softmax(logits[t])): the gradient of
  // sum_t weight[t] * logprob[t]. Rows with targets[t] < 0 get zero. Overwrites dlogits.
  virtual void LogSoftmaxTargetsBackward(const float* logits, const int32_t* targets,
                                         const float* weights, float* dlogits, int64_t rows,
                                         int64_t vocab) = 0;
};

// The CPU backend (OpenBLAS GEMMs, threads from ThreadPool::Default()).
Backend& CpuBackend();

// Bytes the CPU backend has handed out and not taken back (Allocate's size classes), now and at
// most since the last ResetCpuBackendPeak: for tests and benchmarks of activation memory.
struct BackendMemoryStats {
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
};
BackendMemoryStats CpuBackendMemoryStats();
void ResetCpuBackendPeak();  // peak_bytes = live_bytes

}  // namespace grpo

#endif  // GRPO_MODEL_OPS_BACKEND_H_
