// Backend: the device seam. It owns every number the model touches (parameters, gradients,
// optimizer state, activations, KV cache, routing tables, logits) and every numerical op over
// them, as forward/backward pairs (llm.c style). Model, engine and learner code call only this
// interface; model/ops/cpu is the CPU backend, model/ops/cpu_guarded the test backend whose
// memory the host cannot touch, and model/ops/cuda the CUDA backend (f32 on one GPU).
//
// Memory. Device memory is handed out as Buffers (typed: f32, bf16, f8e4m3, int32, f64) and
// addressed by DevicePtr<T> (device_ptr.h), which host code cannot dereference. Data moves
// between host and device only through the directed transfers CopyHostToDevice,
// CopyDeviceToHost and CopyDeviceToDevice; every backend counts the host<->device bytes and calls
// (TransferStats).
//
// Ordering. Ops and transfers are ordered on the backend's one stream: each sees the results of
// those called before it. They may return before they finish (a GPU backend enqueues them); the
// host bytes of a CopyDeviceToHost are valid only after Synchronize(), and the host source of a
// CopyHostToDevice may be reused as soon as the call returns. The CPU backend runs everything
// synchronously (Synchronize is a no-op), but callers must still call Synchronize before reading
// downloaded bytes: cpu_guarded poisons the host bytes of a download until then.
//
// Arguments. Every array an op reads or writes is a DevicePtr: token ids, targets, positions,
// expert row lists and combine weights are small int32/f32 device buffers the caller uploads.
// Launch metadata stays host data: sizes, scalars, option structs and the packed-batch offsets
// (`seq_offsets`, `q_offsets`, `past`, `row_offsets`: a few integers per sequence). A GPU backend
// uploads those itself where a kernel needs them and counts the bytes in its TransferStats.
//
// Conventions: row-major; `dx`-style input gradients are OVERWRITTEN unless the op says
// otherwise; parameter gradients (`dw`, `db`, `dtable`) are ACCUMULATED (+=) so several uses of
// a parameter (tied embeddings, experts over several calls) sum up. A null gradient pointer
// skips that gradient. Packed batches: `seq_offsets` has num_seqs+1 entries; sequence s covers
// rows [seq_offsets[s], seq_offsets[s+1]) and attends causally within itself only.
#ifndef GRPO_MODEL_OPS_BACKEND_H_
#define GRPO_MODEL_OPS_BACKEND_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "model/ops/device_ptr.h"

namespace grpo {

class Backend;

// Aborts naming the dtypes: a typed Buffer accessor used on a buffer of another dtype.
[[noreturn]] void AbortBufferDType(DType have, DType want);

// A typed array in a backend's memory. UNINITIALIZED: ops overwrite their outputs; code that
// accumulates zeroes first (Backend::Zero). With the environment variable GRPO_POISON_BUFFERS=1
// new buffers are filled with NaN (f32) or 0xFF bytes, so a read of unwritten memory shows up in
// tests (the model tests run with it). The typed accessors check the dtype (a mismatch aborts:
// it is a programming error).
class Buffer {
 public:
  Buffer() = default;
  // `numel` elements of `dtype` (f32, bf16, f8e4m3, int32 or f64).
  Buffer(Backend* backend, int64_t numel, DType dtype = DType::kF32);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // f32 elements.
  DevicePtr<float> data() { return As<float>(DType::kF32); }
  DevicePtr<const float> data() const { return As<const float>(DType::kF32); }
  DevicePtr<int32_t> i32() { return As<int32_t>(DType::kI32); }
  DevicePtr<const int32_t> i32() const { return As<const int32_t>(DType::kI32); }
  DevicePtr<double> f64() { return As<double>(DType::kF64); }
  DevicePtr<void> raw() { return data_; }
  DevicePtr<const void> raw() const { return data_; }

  DType dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  int64_t size() const { return numel_; }
  int64_t bytes() const { return numel_ * static_cast<int64_t>(DTypeSize(dtype_)); }
  bool empty() const { return numel_ == 0; }
  Backend* backend() const { return backend_; }
  // True when the buffer aliases host memory (Backend::ImportHost on the CPU backend).
  bool aliases_host() const { return !owned_; }

 private:
  friend class Backend;
  template <class T>
  DevicePtr<T> As(DType want) const;
  void Release();

  Backend* backend_ = nullptr;
  DevicePtr<void> data_;
  int64_t numel_ = 0;
  DType dtype_ = DType::kF32;
  bool owned_ = true;  // false: aliases host memory (Backend::ImportHost), not freed
};

// Host<->device traffic of a backend since it was created or last reset.
struct TransferStats {
  int64_t host_to_device_bytes = 0, host_to_device_calls = 0;
  int64_t device_to_host_bytes = 0, device_to_host_calls = 0;
  int64_t total_bytes() const { return host_to_device_bytes + device_to_host_bytes; }
};

// A projection matrix W [rows, cols] (row-major) as the model holds it: f32, bf16, or FP8 E4M3
// with 128x128 block scales (`weight_scale_inv`, core/fp8_block.h), in device memory. A view may
// be rows [row_begin, row_begin + rows) of a larger stored matrix (MLA's kv_a_proj_with_mqa is
// used as two row slices): `data` and `scales` always point at the whole matrix's first row, so
// the block scale of a row is found by its row in the whole matrix. bf16 data may be unaligned
// (a view into a safetensors mapping); f32 data and scales are float-aligned.
struct WeightView {
  DType dtype = DType::kF32;                // kF32, kBF16 or kF8E4M3
  DevicePtr<const void> data;               // the whole matrix
  DevicePtr<const float> scales;            // kF8E4M3: [ceil(total rows/128), ceil(cols/128)]
  int64_t rows = 0, cols = 0;               // of this view
  int64_t row_begin = 0;                    // first row of the view in the whole matrix

  static WeightView F32(DevicePtr<const float> w, int64_t rows, int64_t cols) {
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
  DevicePtr<const float> f32() const { return data.As<const float>() + row_begin * cols; }
};

// How RoPE pairs the dimensions of a head: (i, i + d/2) as in Llama/Qwen ("rotate half"), or
// (2i, 2i+1) as in DeepSeek-V3 checkpoints ("interleaved").
enum class RopeLayout { kRotateHalf, kInterleaved };

// A divergence between a model's next-token distribution p = softmax(logits) and a teacher's
// q = softmax(teacher_logits) (full-distribution distillation, Backend::DivergenceRows).
enum class Divergence {
  kReverseKl,  // KL(p || q) = sum_v p_v (log p_v - log q_v): mode-seeking
  kForwardKl,  // KL(q || p) = sum_v q_v (log q_v - log p_v): cross-entropy to q, minus q's entropy
};

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
  DevicePtr<float> data;
  int64_t num_blocks = 0, num_layers = 0, block_size = 0, row_width = 0;
};

// The block tables of the sequences of one call, packed: position p of sequence s lives in
// block ids[offsets[s] + p / block_size], row p % block_size. offsets has num_seqs + 1 entries.
// `ids` is a small int32 device buffer the caller uploads; `offsets` is launch metadata.
struct BlockTables {
  DevicePtr<const int32_t> ids;
  std::span<const int64_t> offsets;
};

// A mixture-of-experts router (model/model_config.h's router fields):
//   softmax (qwen3_moe): p = softmax(logits); choose the top-k of p; weights = p at the choice,
//     divided by their sum when norm_topk_prob.
//   sigmoid (deepseek_v3, "noaux_tc"): s = sigmoid(logits); choice scores c = s + bias (the
//     correction bias only steers the choice); group score = sum of the top-2 c in each of
//     n_group groups; keep the topk_group best groups; c of experts outside them is set to 0
//     (as HF transformers does); choose the top-k of c; weights = s (no bias) at the choice,
//     divided by (sum + 1e-20) when norm_topk_prob, times routed_scaling_factor.
// Ties in a top-k go to the lower index.
struct RouterSpec {
  enum class Scoring { kSoftmax, kSigmoid };
  Scoring scoring = Scoring::kSoftmax;
  int64_t num_experts = 0, top_k = 0;
  int64_t n_group = 1, topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
};

// One AdamW step's scalars (learner/optimizer.h gives the formula), f32 as torch's kernel
// takes them: p = p * shrink; m = m*b1 + omb1*g; v = v*b2 + omb2*g*g;
// p = p + neg_step * m / (sqrt(v) / bc2_sqrt + eps).
struct AdamWScalars {
  float shrink = 1.0f, b1 = 0.9f, omb1 = 0.1f, b2 = 0.999f, omb2 = 0.001f;
  float neg_step = 0.0f, bc2_sqrt = 1.0f, eps = 1e-8f;
};

// One draw from a row of logits (rollout/sampler.h has the semantics): softmax(logits /
// temperature) restricted to the tokens surviving top-k, then top-p, then min-p, renormalized;
// temperature 0 is greedy. `uniform` in [0, 1) is the draw from the sample's own RNG (the caller
// keeps one RNG per sample, so draws depend only on the sample's seed); greedy draws ignore it.
// Several draws may read the same row (the G samples of a prompt).
struct SamplingRow {
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  double min_p = 0.0;
  double uniform = 0.0;
  int64_t row = 0;  // the logits row drawn from
};

// The routed experts of one MoE layer. Expert e is a SwiGLU MLP without biases:
//   out_e(x) = down_e . (silu(gate_e . x) * (up_e . x)),
// gate_e, up_e [inter, hidden], down_e [hidden, inter]: any WeightView format (a narrow one is
// widened exactly as LinearWeights widens it, in the backward as LinearWeightsBackward does).
// The spans hold num_experts views each (launch metadata).
struct MoeExpertWeights {
  std::span<const WeightView> gate, up, down;
  int64_t hidden = 0, inter = 0;
  int64_t num_experts() const { return static_cast<int64_t>(gate.size()); }
};

// Their f32 gradients, ACCUMULATED (+=). An empty span, or a null entry, skips that gradient.
struct MoeExpertGrads {
  std::span<const DevicePtr<float>> gate, up, down;
};

// What MoeExperts saves for MoeExpertsBackward, device buffers the caller allocates (sizes from
// tokens, k, inter and hidden alone: nothing waits for the routing). Rows are the tokens*k
// choices in the permuted order: grouped by expert, in (expert, token, j) order.
struct MoeExpertActs {
  DevicePtr<int32_t> slots;     // i32 [tokens*k]: the choice t*k + j of permuted row i
  DevicePtr<int32_t> offsets;   // i32 [num_experts + 1]: expert e has rows [offsets[e], offsets[e+1])
  DevicePtr<float> gate, up;    // f32 [tokens*k, inter]: gate_e . x, up_e . x
  DevicePtr<float> act;         // f32 [tokens*k, inter]: silu(gate) * up
  DevicePtr<float> out;         // f32 [tokens*k, hidden]: out_e(x), not yet weighted
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  // `bytes` of uninitialized device memory, aligned to 64 bytes (see Buffer). Throws
  // std::bad_alloc when out of memory.
  virtual DevicePtr<void> Allocate(int64_t bytes) = 0;
  virtual void Free(DevicePtr<void> data) = 0;
  // A Buffer holding `numel` elements of `dtype` equal to host[0, bytes). A backend whose memory
  // is host memory (cpu) may alias `host` instead of copying (Buffer not owned, nothing is
  // counted): the caller keeps `host` alive and unmodified by the host for the Buffer's
  // lifetime, and ops writing the Buffer write `host`. Other backends (cpu_guarded, cuda) copy.
  // Used for weights too large to hold twice (mmap'd serving checkpoints, f32 masters).
  virtual Buffer ImportHost(const void* host, DType dtype, int64_t numel);

  // Directed transfers, counted in TransferStats (see Ordering above).
  void CopyHostToDevice(const void* host, DevicePtr<void> dst, int64_t bytes);
  void CopyDeviceToHost(DevicePtr<const void> src, void* host, int64_t bytes);
  virtual void CopyDeviceToDevice(DevicePtr<const void> src, DevicePtr<void> dst,
                                  int64_t bytes) = 0;
  // Waits until every op and transfer called so far has finished.
  virtual void Synchronize() = 0;

  TransferStats transfer_stats() const;
  void ResetTransferStats();

  // dst[i] = 0 / dst[i] += src[i] / x[i] *= c.
  virtual void Zero(DevicePtr<float> data, int64_t size) = 0;
  virtual void Add(DevicePtr<const float> src, DevicePtr<float> dst, int64_t size) = 0;
  virtual void Scale(DevicePtr<float> x, int64_t size, float c) = 0;

  // ---- linear layers --------------------------------------------------------------------------
  // y[m,n] = x[m,k] · w[n,k]^T (+ b[n]).
  virtual void Linear(DevicePtr<const float> x, DevicePtr<const float> w,
                      DevicePtr<const float> b, DevicePtr<float> y, int64_t m, int64_t k,
                      int64_t n) = 0;
  // dx = dy · w (overwritten, or added when accumulate_dx); dw += dy^T · x; db += colsum(dy).
  virtual void LinearBackward(DevicePtr<const float> dy, DevicePtr<const float> x,
                              DevicePtr<const float> w, DevicePtr<float> dx, DevicePtr<float> dw,
                              DevicePtr<float> db, int64_t m, int64_t k, int64_t n,
                              bool accumulate_dx) = 0;

  // y[m,n] = x[m,k] · W[n,k]^T (+ b[n]) for a weight in any WeightView format (w.rows == n,
  // w.cols == k). On the CPU, bf16/FP8 weights are widened to f32 a tile of output rows at a
  // time into a small per-thread scratch, each tile then one GEMM: the whole f32 matrix is never
  // materialized. A backend may instead multiply the narrow operands directly (the CUDA
  // backend's bf16 and FP8 block-scaled cuBLASLt GEMMs, which round x to the weight's format:
  // docs/gpu.md) within the format's rounding contract (docs/numerics.md). For f32 it is
  // Linear. Inference only (there is no backward).
  virtual void LinearWeights(DevicePtr<const float> x, const WeightView& w,
                             DevicePtr<const float> b, DevicePtr<float> y, int64_t m, int64_t k,
                             int64_t n) = 0;
  // One output of LinearWeightsSameInput: y[m, n] = x · W^T (+ b; b may be null).
  struct LinearOutput {
    WeightView w;
    DevicePtr<const float> b;
    DevicePtr<float> y;
    int64_t n;
  };
  // LinearWeights for several weights over the same x (a layer's q, k and v projections, an
  // MLP's gate and up), each output the bits LinearWeights gives it alone. The default calls
  // LinearWeights per output; the CPU backend prepares x for its AMX kernel once for all.
  virtual void LinearWeightsSameInput(DevicePtr<const float> x, std::span<const LinearOutput> outs,
                                      int64_t m, int64_t k);
  // An MLP's down projection over its activation where no backward reads it (inference, and
  // the first pass of a forward with recompute): y[m, n] = SwiGlu(gate, up) · W^T (+ b), gate
  // and up [m, k], the bits of SwiGlu into a buffer and then LinearWeights, which is what the
  // default does. The CPU backend makes the activation a row at a time as its AMX kernel
  // prepares x, never storing it.
  virtual void SwiGluLinearWeights(DevicePtr<const float> gate, DevicePtr<const float> up,
                                   const WeightView& w, DevicePtr<const float> b,
                                   DevicePtr<float> y, int64_t m, int64_t k, int64_t n);
  // The backward of LinearWeights, for mixed-precision training (a bf16 compute copy of an f32
  // master, CausalLM::SetComputeDType): dx = dy · W with W taken exactly as LinearWeights
  // takes it (overwritten, or added when accumulate_dx); dw += dy^T · x and db += colsum(dy)
  // in f32, the gradient with respect to the narrow values, which the caller applies to the f32
  // master (straight-through). For an f32 view it is LinearBackward, bit for bit. The default
  // widens the whole view into a scratch Buffer (WidenWeightRows) and calls LinearBackward.
  virtual void LinearWeightsBackward(DevicePtr<const float> dy, DevicePtr<const float> x,
                                     const WeightView& w, DevicePtr<float> dx, DevicePtr<float> dw,
                                     DevicePtr<float> db, int64_t m, int64_t k, int64_t n,
                                     bool accumulate_dx);
  // out[(r - row_begin) * w.cols + c] = W[r, c] widened to f32, for rows [row_begin, row_end) of
  // the view: the same values LinearWeights multiplies with (f32(q) * scale for FP8).
  virtual void WidenWeightRows(const WeightView& w, int64_t row_begin, int64_t row_end,
                               DevicePtr<float> out) = 0;

  // The inverse direction, for serving copies made on the device (the rollout engine's weights,
  // weight updates in one process): converts the f32 matrix src [rows, cols] (row-major) into
  // `dtype` at dst, bit-identical to the host conversions:
  //   kF32      a copy;
  //   kBF16     each value rounded to nearest even (core/float_formats.h F32ToBf16);
  //   kF8E4M3   core/fp8_block.h QuantizeFp8Block: per 128x128 block (partial at the edges)
  //             scales[b] = amax / 448 (1 for an all-zero block) into the f32 `scales`
  //             [ceil(rows/128), ceil(cols/128)], codes e4m3(x / scales[b]) rounded to nearest
  //             even, saturating. `scales` is unused for the other dtypes (may be null).
  // `nonfinite` (an int32 device scalar, may be null) is INCREASED by the number of NaN or
  // infinite values in src, so one download checks many calls: such a value poisons its FP8
  // block (what dst and scales then hold is unspecified), and a caller must not serve it.
  virtual void QuantizeWeight(DevicePtr<const float> src, int64_t rows, int64_t cols,
                              DType dtype, DevicePtr<void> dst, DevicePtr<float> scales,
                              DevicePtr<int32_t> nonfinite) = 0;

  // C[m,n] = alpha * op(A) · op(B) + beta * C, row-major with leading dimensions (BLAS sgemm).
  virtual void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    DevicePtr<const float> a, int64_t lda, DevicePtr<const float> b, int64_t ldb,
                    float beta, DevicePtr<float> c, int64_t ldc) = 0;

  // ---- embedding ----------------------------------------------------------------------------
  // out[t] = table[ids[t]].
  virtual void Embedding(DevicePtr<const int32_t> ids, DevicePtr<const float> table,
                         DevicePtr<float> out, int64_t rows, int64_t dim) = 0;
  // dtable[ids[t]] += dout[t].
  virtual void EmbeddingBackward(DevicePtr<const int32_t> ids, DevicePtr<const float> dout,
                                 DevicePtr<float> dtable, int64_t rows, int64_t dim) = 0;

  // ---- normalization ------------------------------------------------------------------------
  // y = x * rstd * w per row of `dim`, rstd = 1/sqrt(mean(x^2) + eps) (saved for backward).
  virtual void RmsNorm(DevicePtr<const float> x, DevicePtr<const float> w, DevicePtr<float> y,
                       DevicePtr<float> rstd, int64_t rows, int64_t dim, float eps) = 0;
  virtual void RmsNormBackward(DevicePtr<const float> dy, DevicePtr<const float> x,
                               DevicePtr<const float> w, DevicePtr<const float> rstd,
                               DevicePtr<float> dx, DevicePtr<float> dw, int64_t rows,
                               int64_t dim) = 0;

  // ---- rotary position embedding ------------------------------------------------------------
  // Rotates, in place, the span's dims of row t by angle positions[t] * freq_i, with cos/sin
  // tables of shape [max_position, span.half]. `inverse` rotates by the opposite angle, which is
  // the backward of the forward rotation (applied to the gradient in place).
  virtual void Rope(DevicePtr<float> x, const RopeSpan& span, DevicePtr<const int32_t> positions,
                    DevicePtr<const float> cos, DevicePtr<const float> sin, bool inverse) = 0;

  // ---- attention ----------------------------------------------------------------------------
  // Causal attention within each packed sequence, FlashAttention-style. q: [T, nh, dqk],
  // k: [T, nkv, dqk], v: [T, nkv, dv], out: [T, nh, dv] (sizes from `heads`). lse: [T, nh]
  // receives the log-sum-exp of each row's scaled, masked scores (log sum_j exp(scale q.k_j)),
  // the one number per row and head the backward needs: the probabilities are never stored
  // (O(T) memory, not O(L^2)); a backend computes them block by block (online softmax over key
  // blocks) in scratch whose size does not depend on the sequence lengths.
  virtual void Attention(DevicePtr<const float> q, DevicePtr<const float> k,
                         DevicePtr<const float> v, DevicePtr<float> out, DevicePtr<float> lse,
                         std::span<const int64_t> seq_offsets, const AttentionHeads& heads) = 0;
  // The backward of Attention from its inputs, its output `out` and its `lse`: recomputes the
  // probabilities block by block (P = exp(scale q.k - lse)) and uses D_i = rowsum(dout_i * out_i)
  // for the softmax gradient. dq, dk, dv overwritten; extra memory is block-sized scratch only.
  virtual void AttentionBackward(DevicePtr<const float> dout, DevicePtr<const float> q,
                                 DevicePtr<const float> k, DevicePtr<const float> v,
                                 DevicePtr<const float> out, DevicePtr<const float> lse,
                                 DevicePtr<float> dq, DevicePtr<float> dk, DevicePtr<float> dv,
                                 std::span<const int64_t> seq_offsets,
                                 const AttentionHeads& heads) = 0;

  // Attention of new tokens over the paged cache (decoding and chunked prefill). Sequence s has
  // new tokens q rows [q_offsets[s], q_offsets[s+1]) at positions past[s] + i; they attend
  // causally to positions [0, past[s] + i], read from layer `layer` of `pool` through the
  // sequence's block table (rows laid out as `layout` says). q: [Tn, nh, dqk], out: [Tn, nh, dv]
  // (overwritten).
  virtual void CachedAttention(DevicePtr<const float> q, DevicePtr<float> out,
                               std::span<const int64_t> q_offsets, std::span<const int64_t> past,
                               const KvCachePool& pool, int64_t layer, const BlockTables& tables,
                               const AttentionHeads& heads, const CacheRowLayout& layout) = 0;
  // Writes the new tokens' rows into layer `layer` of the cache: for token t of sequence s (at
  // position past[s] + t - q_offsets[s]), row floats [col, col + cols) = src[t*src_stride + c].
  virtual void WriteCache(DevicePtr<const float> src, int64_t src_stride, const KvCachePool& pool,
                          int64_t layer, const BlockTables& tables,
                          std::span<const int64_t> q_offsets, std::span<const int64_t> past,
                          int64_t col, int64_t cols) = 0;
  // Copies every layer's rows of block from[i] into block to[i], i < n (copy-on-write of blocks
  // that sequences share); from and to are int32 device buffers.
  virtual void CopyCacheBlocks(const KvCachePool& pool, DevicePtr<const int32_t> from,
                               DevicePtr<const int32_t> to, int64_t n) = 0;

  // ---- activations --------------------------------------------------------------------------
  // out = silu(gate) * up.
  virtual void SwiGlu(DevicePtr<const float> gate, DevicePtr<const float> up,
                      DevicePtr<float> out, int64_t size) = 0;
  // dgate, dup overwritten.
  virtual void SwiGluBackward(DevicePtr<const float> dout, DevicePtr<const float> gate,
                              DevicePtr<const float> up, DevicePtr<float> dgate,
                              DevicePtr<float> dup, int64_t size) = 0;

  // ---- rows ---------------------------------------------------------------------------------
  // dst[i] = scale[i] * src[rows[i]] for i < n (scale null: 1).
  virtual void GatherRows(DevicePtr<const float> src, DevicePtr<const int32_t> rows,
                          DevicePtr<const float> scale, DevicePtr<float> dst, int64_t n,
                          int64_t dim) = 0;
  // dst[rows[i]] += scale[i] * src[i] (scale null: 1). Rows may repeat.
  virtual void ScatterAddRows(DevicePtr<const float> src, DevicePtr<const int32_t> rows,
                              DevicePtr<const float> scale, DevicePtr<float> dst, int64_t n,
                              int64_t dim) = 0;
  // dst[r*dst_stride + c] = (or += with accumulate) src[r*src_stride + c], for `rows` rows of
  // `cols` floats. Strided views of packed activations (MLA's key assembly) use it.
  virtual void CopyRows(DevicePtr<const float> src, int64_t src_stride, DevicePtr<float> dst,
                        int64_t dst_stride, int64_t rows, int64_t cols, bool accumulate) = 0;
  // out[i] = dot(a[i], b[i]) for n rows of `dim`.
  virtual void RowDot(DevicePtr<const float> a, DevicePtr<const float> b, DevicePtr<float> out,
                      int64_t n, int64_t dim) = 0;

  // ---- mixture of experts -------------------------------------------------------------------
  // For `tokens` rows of `logits` [tokens, E]: writes scores [tokens, E] (softmax or sigmoid),
  // and, unless `forced`, the chosen experts [tokens, k] (listed in choice order); then the
  // combine weights [tokens, k]. `bias` is the correction bias (sigmoid routers; may be null).
  // A forced choice (routing replay) reads `experts` and computes the weights the same way.
  virtual void Route(const RouterSpec& spec, DevicePtr<const float> logits,
                     DevicePtr<const float> bias, int64_t tokens, bool forced,
                     DevicePtr<int32_t> experts, DevicePtr<float> scores,
                     DevicePtr<float> weights) = 0;
  // dlogits [tokens, E] (overwritten) from dweights [tokens, k]: through the chosen experts'
  // scores only; the choice itself and the bias get none.
  virtual void RouteBackward(const RouterSpec& spec, DevicePtr<const float> scores,
                             DevicePtr<const int32_t> experts, DevicePtr<const float> dweights,
                             int64_t tokens, DevicePtr<float> dlogits) = 0;
  // The routed-expert block of a MoE layer, from the routing on the device (Route's `experts`
  // and combine `weights`, [tokens, k]; a token's k experts are distinct; x, y [tokens, hidden]):
  //   y[t] = sum_j weights[t, j] * out_{experts[t, j]}(x[t])      (y overwritten)
  // Permutes the choices by expert (acts.slots, acts.offsets), runs each expert's three
  // products over its rows (one GEMM per expert and matrix over the permuted rows), then
  // un-permutes, weighting and summing each token's k contributions in expert order (the sum
  // does not depend on threads or streams). Callers never download the routing: the counts
  // and offsets stay on the device, so a decode step syncs with the host no more often with MoE
  // layers than without (CUDA: every expert over `tokens` padded rows; above a few thousand
  // padded rows, in prefill and training, it reads the E+1 offsets back to size exact GEMMs,
  // counted in its TransferStats). Shared experts are not included (a plain MLP).
  virtual void MoeExperts(const MoeExpertWeights& w, DevicePtr<const float> x,
                          DevicePtr<const int32_t> experts, DevicePtr<const float> weights,
                          int64_t tokens, int64_t k, const MoeExpertActs& acts,
                          DevicePtr<float> y) = 0;
  // The backward of MoeExperts from its inputs, its saved `acts` and dy [tokens, hidden]:
  //   dx [tokens, hidden] (overwritten) = the routed experts' input gradient,
  //   dweights [tokens, k] (overwritten) = dot(dy[t], out_{experts[t, j]}(x[t])),
  //   the experts' weight gradients ACCUMULATED into g.
  virtual void MoeExpertsBackward(const MoeExpertWeights& w, const MoeExpertGrads& g,
                                  DevicePtr<const float> x, DevicePtr<const float> weights,
                                  const MoeExpertActs& acts, DevicePtr<const float> dy,
                                  int64_t tokens, int64_t k, DevicePtr<float> dx,
                                  DevicePtr<float> dweights) = 0;

  // ---- output distribution ------------------------------------------------------------------
  // For each row t of logits [rows, vocab]: logprob[t] = log softmax(logits[t])[targets[t]]
  // (skipped where targets[t] < 0) and entropy[t] of the distribution (entropy may be null).
  virtual void LogSoftmaxTargets(DevicePtr<const float> logits, DevicePtr<const int32_t> targets,
                                 DevicePtr<float> logprobs, DevicePtr<float> entropy,
                                 int64_t rows, int64_t vocab) = 0;
  // dlogits[t] = weight[t] * (onehot(targets[t]) - softmax(logits[t])): the gradient of
  // sum_t weight[t] * logprob[t]. Rows with targets[t] < 0 get zero. Overwrites dlogits.
  virtual void LogSoftmaxTargetsBackward(DevicePtr<const float> logits,
                                         DevicePtr<const int32_t> targets,
                                         DevicePtr<const float> weights,
                                         DevicePtr<float> dlogits, int64_t rows,
                                         int64_t vocab) = 0;
  // For each row t of logits and teacher [rows, vocab]: out[t] = the divergence `kind` between
  // p = softmax(logits[t]) and q = softmax(teacher[t]) (a term whose probability is 0 counts 0).
  virtual void DivergenceRows(Divergence kind, DevicePtr<const float> logits,
                              DevicePtr<const float> teacher, DevicePtr<float> out, int64_t rows,
                              int64_t vocab) = 0;
  // dlogits[t] += weight[t] * d out[t] / d logits[t], ACCUMULATED (after LogSoftmaxTargetsBackward
  // wrote the logprob term):
  //   kReverseKl: p_v (log p_v - log q_v - out[t]);   kForwardKl: p_v - q_v.
  // Rows with weight 0 are left as they are.
  virtual void DivergenceRowsBackward(Divergence kind, DevicePtr<const float> logits,
                                      DevicePtr<const float> teacher,
                                      DevicePtr<const float> weights, DevicePtr<float> dlogits,
                                      int64_t rows, int64_t vocab) = 0;
  // Draws one token per SamplingRow from logits [*, vocab] (draw i reads row rows[i].row):
  // tokens[i], logprobs[i] (under the sampled distribution) and raw_logprobs[i] (log
  // softmax(logits)[token], no temperature or filters). The results are bit-identical to
  // rollout/sampler.h's SampleToken with the same options and draw. `rows` is launch metadata
  // (a few scalars per draw).
  virtual void Sample(DevicePtr<const float> logits, int64_t vocab,
                      std::span<const SamplingRow> rows, DevicePtr<int32_t> tokens,
                      DevicePtr<float> logprobs, DevicePtr<float> raw_logprobs) = 0;

  // ---- batch invariance ---------------------------------------------------------------------
  // Batch-invariant mode (recipe rollout.batch_invariant; off by default). While it is on, the
  // forward ops compute every row by the same instructions wherever the row comes from, so the
  // logprob of a token is bit-identical whether the rollout engine computes it (decode or chunked
  // prefill over the paged cache, in any batch) or the learner does (Forward over any packing).
  // With f32 weights:
  //  - Linear, LinearWeights: row i of y is a function of row i of x alone (one fixed summation
  //    order over k per output), whatever m, the other rows and i's place among them;
  //  - Attention and CachedAttention: the output of a query row is computed by one routine from
  //    the query and the keys and values of positions [0, p] in position order, whether they come
  //    from packed activations or through block tables, whatever the other rows and sequences;
  //  - LogSoftmaxTargets: logprob[t] equals Sample's raw_logprob for the same row and token;
  //  - RmsNorm, Rope, the elementwise and row ops and Route are per row in either mode (every
  //    backend must keep them so).
  // Backward ops, Gemm and narrow-weight (bf16/FP8) products are not covered. The mode belongs to
  // the backend object (every model on it); set it before issuing work, never concurrently with
  // ops. Returns whether the backend is now in the asked state: a backend without the mode
  // returns false for on = true (and stays off).
  virtual bool SetBatchInvariant(bool on) { return !on; }
  virtual bool batch_invariant() const { return false; }

  // ---- optimizer ----------------------------------------------------------------------------
  // out[0] = sum of x[i]^2, accumulated in double (f64 device scalar).
  virtual void SumSquares(DevicePtr<const float> x, int64_t size, DevicePtr<double> out) = 0;
  // One AdamW step over `size` elements of a parameter p with gradient g and moments m, v.
  virtual void AdamW(DevicePtr<float> p, DevicePtr<const float> g, DevicePtr<float> m,
                     DevicePtr<float> v, int64_t size, const AdamWScalars& s) = 0;

 protected:
  // Raw access for implementations (device_ptr.h's passkey).
  static BackendAccess Access() { return BackendAccess(); }
  template <class T>
  static T* Raw(DevicePtr<T> p) { return p.get(Access()); }
  template <class T>
  static DevicePtr<T> Wrap(T* p) { return DevicePtr<T>::Wrap(p, Access()); }
  // A Buffer over memory this backend allocated (owned) or over host memory it aliases.
  Buffer MakeBuffer(DevicePtr<void> data, DType dtype, int64_t numel, bool owned);
  // The transfers proper (the public calls count, then call these).
  virtual void DoCopyHostToDevice(const void* host, DevicePtr<void> dst, int64_t bytes) = 0;
  virtual void DoCopyDeviceToHost(DevicePtr<const void> src, void* host, int64_t bytes) = 0;

 private:
  std::atomic<int64_t> h2d_bytes_{0}, h2d_calls_{0}, d2h_bytes_{0}, d2h_calls_{0};
};

template <class T>
DevicePtr<T> Buffer::As(DType want) const {
  if (numel_ > 0 && dtype_ != want) AbortBufferDType(dtype_, want);
  return data_.As<T>();
}

// Uploads host values into a new buffer of matching dtype (int32_t: kI32, float: kF32).
Buffer Upload(Backend& backend, std::span<const int32_t> values);
Buffer Upload(Backend& backend, std::span<const float> values);
// Downloads a whole f32 / int32 / f64 buffer (transfer + Synchronize).
std::vector<float> DownloadF32(Backend& backend, const Buffer& buffer);
std::vector<int32_t> DownloadI32(Backend& backend, const Buffer& buffer);

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
