// The CPU backend. GEMMs are OpenBLAS sgemm calls, each single-threaded: all parallelism comes
// from the shared ThreadPool, splitting work into fixed chunks, so results are bit-for-bit
// reproducible run to run for a given thread count.
#include <cblas.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <type_traits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/float_formats.h"
#include "core/fp8_block.h"
#include "core/thread_pool.h"
#include "model/ops/backend.h"
#include "model/ops/cpu/cpu_backend.h"
#include "model/ops/cpu/quantized_gemm.h"
#include "model/ops/cpu/router.h"
#include "model/ops/cpu/sampling.h"
#include "model/ops/cpu/vector_kernels.h"

namespace grpo {
namespace {

ThreadPool& Pool() { return ThreadPool::Default(); }

// Blocked causal attention (FlashAttention-style): query rows in blocks of kAttnBlock, keys in
// blocks of kKeyBlock. kKeyBlock is a multiple of kAttnBlock, so every row of a query block sees
// at least one key of each key block it visits, and sequences up to kKeyBlock long take one
// key block (no rescaling). Scratch: two [kAttnBlock, kKeyBlock] score blocks per thread.
constexpr int64_t kAttnBlock = 64;
constexpr int64_t kKeyBlock = 256;
static_assert(kKeyBlock % kAttnBlock == 0);

// One (sequence, head) of the packed attention tensors: row r of q starts at q + r * q_stride,
// and so on; `len` rows each.
struct HeadSlices {
  const float* q;
  const float* k;
  const float* v;
  const float* out;  // the forward's output (backward only)
  int64_t q_stride, k_stride, v_stride, out_stride;
  int64_t len, dqk, dv;
  float scale;
};

// Keys of row r visible in the key block starting at c0 of n keys: those at positions <= r.
int64_t VisibleKeys(int64_t r, int64_t c0, int64_t n) { return std::min(n, r + 1 - c0); }

// Forward of query rows [r0, r1): online softmax over the key blocks [0, r1). out rows are the
// unnormalized accumulator until the last block; lse[r * lse_stride] = max + log(sum).
void AttendQueryBlock(const HeadSlices& x, int64_t r0, int64_t r1, float* out, int64_t out_stride,
                      float* lse, int64_t lse_stride, float* scores) {
  const int64_t nq = r1 - r0;
  float row_max[kAttnBlock], row_sum[kAttnBlock];
  std::fill_n(row_max, nq, -std::numeric_limits<float>::infinity());
  std::fill_n(row_sum, nq, 0.0f);
  for (int64_t c0 = 0; c0 < r1; c0 += kKeyBlock) {
    const int64_t nk = std::min(r1, c0 + kKeyBlock) - c0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, x.dqk, x.scale,
                x.q + r0 * x.q_stride, x.q_stride, x.k + c0 * x.k_stride, x.k_stride, 0.0f,
                scores, nk);
    for (int64_t i = 0; i < nq; ++i) {
      float* row = scores + i * nk;
      const int64_t visible = VisibleKeys(r0 + i, c0, nk);
      const float new_max = std::max(row_max[i], cpu::RowMax(row, visible));
      const float rescale = std::exp(row_max[i] - new_max);  // 0 on the first block
      row_sum[i] = row_sum[i] * rescale + cpu::ExpShiftedRow(row, visible, new_max);
      std::fill(row + visible, row + nk, 0.0f);
      row_max[i] = new_max;
      if (c0 > 0 && rescale != 1.0f) {
        float* o = out + (r0 + i) * out_stride;
        for (int64_t d = 0; d < x.dv; ++d) o[d] *= rescale;
      }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, x.dv, nk, 1.0f, scores, nk,
                x.v + c0 * x.v_stride, x.v_stride, c0 == 0 ? 0.0f : 1.0f, out + r0 * out_stride,
                out_stride);
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* o = out + (r0 + i) * out_stride;
    const float inv = 1.0f / row_sum[i];
    for (int64_t d = 0; d < x.dv; ++d) o[d] *= inv;
    lse[(r0 + i) * lse_stride] = row_max[i] + std::log(row_sum[i]);
  }
}

// Backward of query rows [r0, r1) of one head: recomputes P = exp(scale q.k - lse) key block by
// key block and accumulates dq (these rows), dk and dv (the block's keys) with beta = 1.
void AttendQueryBlockBackward(const HeadSlices& x, int64_t r0, int64_t r1, const float* dout,
                              int64_t dout_stride, const float* lse, int64_t lse_stride,
                              float* dq, int64_t dq_stride, float* dk, int64_t dk_stride,
                              float* dv, int64_t dv_stride, float* scores, float* dp) {
  const int64_t nq = r1 - r0;
  float d_row[kAttnBlock];  // D_i = rowsum(dout_i * out_i)
  for (int64_t i = 0; i < nq; ++i) {
    const float* a = dout + (r0 + i) * dout_stride;
    const float* b = x.out + (r0 + i) * x.out_stride;
    float sum = 0.0f;
    for (int64_t d = 0; d < x.dv; ++d) sum += a[d] * b[d];
    d_row[i] = sum;
  }
  const float* q_blk = x.q + r0 * x.q_stride;
  const float* do_blk = dout + r0 * dout_stride;
  for (int64_t c0 = 0; c0 < r1; c0 += kKeyBlock) {
    const int64_t nk = std::min(r1, c0 + kKeyBlock) - c0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, x.dqk, x.scale, q_blk,
                x.q_stride, x.k + c0 * x.k_stride, x.k_stride, 0.0f, scores, nk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, x.dv, 1.0f, do_blk, dout_stride,
                x.v + c0 * x.v_stride, x.v_stride, 0.0f, dp, nk);
    for (int64_t i = 0; i < nq; ++i) {
      float* s_row = scores + i * nk;
      float* dp_row = dp + i * nk;
      const int64_t visible = VisibleKeys(r0 + i, c0, nk);
      // scores -> P, dp -> dS = P * (dP - D) * scale
      cpu::SoftmaxGradRow(s_row, dp_row, visible, lse[(r0 + i) * lse_stride], d_row[i], x.scale);
      std::fill(s_row + visible, s_row + nk, 0.0f);
      std::fill(dp_row + visible, dp_row + nk, 0.0f);
    }
    // dV_j += P^T dO_i;  dQ_i += dS K_j;  dK_j += dS^T Q_i
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, x.dv, nq, 1.0f, scores, nk, do_blk,
                dout_stride, 1.0f, dv + c0 * dv_stride, dv_stride);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, x.dqk, nk, 1.0f, dp, nk,
                x.k + c0 * x.k_stride, x.k_stride, 1.0f, dq + r0 * dq_stride, dq_stride);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, x.dqk, nq, 1.0f, dp, nk, q_blk,
                x.q_stride, 1.0f, dk + c0 * dk_stride, dk_stride);
  }
}

// KvCachePool and BlockTables with their device pointers unwrapped (the kernels' view).
struct HostKvPool {
  float* data = nullptr;
  int64_t num_blocks = 0, num_layers = 0, block_size = 0, row_width = 0;
};
struct HostBlockTables {
  const int32_t* ids = nullptr;
  std::span<const int64_t> offsets;
};

// Row (block, layer, offset) of a paged cache pool.
float* CacheRow(const HostKvPool& pool, int64_t layer, int32_t block, int64_t offset) {
  return pool.data +
         ((static_cast<int64_t>(block) * pool.num_layers + layer) * pool.block_size + offset) *
             pool.row_width;
}

// Attention's tasks, one per (sequence, KV head, run of the query heads sharing it): the heads
// of a run attend together (cpu::AttendQueries reads each key and value row once for all of
// them, with the bits each gets alone). A KV head's `group` query heads are cut into runs only
// as far as needed for two tasks per thread.
class HeadRunTasks {
 public:
  struct Task {
    int64_t seq, kv_head, first_head, heads;
  };
  HeadRunTasks(int64_t num_seqs, int64_t nkv, int64_t group, int64_t threads)
      : num_seqs_(num_seqs), nkv_(nkv), group_(group) {
    const int64_t units = std::max<int64_t>(num_seqs * nkv, 1);
    const int64_t splits = std::clamp<int64_t>((2 * threads + units - 1) / units, 1, group);
    run_ = (group + splits - 1) / splits;
    runs_ = (group + run_ - 1) / run_;
  }
  int64_t size() const { return num_seqs_ * nkv_ * runs_; }
  Task operator[](int64_t task) const {
    const int64_t kv_head = task / runs_ % nkv_, c = task % runs_;
    return Task{task / (nkv_ * runs_), kv_head, kv_head * group_ + c * run_,
                std::min(run_, group_ - c * run_)};
  }

 private:
  int64_t num_seqs_, nkv_, group_, run_, runs_;
};

// The keys of one (sequence, KV head) transposed for cpu::AttendQueriesTransposed, built once
// for all its query rows where there are enough of them to pay for it (a prompt, not a decoding
// step) and the CPU and head sizes take it; the same bits as cpu::AttendQueries either way.
class TransposedKeys {
 public:
  static constexpr int64_t kMinQueries = 8;
  // The transposed keys of rows[0, len) (entries from k_offset), or null where `queries` rows
  // attending do not pay for it or it is not available. `keys` names these keys within the
  // object's life (one attention call's task loop: a sequence and KV head), so that the runs of
  // heads sharing a KV head transpose them once. Valid until the next call.
  const float* For(int64_t keys, int64_t queries, const float* const* rows, int64_t k_offset,
                   int64_t len, const AttentionHeads& heads) {
    if (queries < kMinQueries || !cpu::TransposedKeysAvailable(heads.dqk, heads.dv)) {
      return nullptr;
    }
    if (keys == keys_) return kt_;
    // One buffer per thread, kept across calls (no allocation per layer).
    thread_local std::vector<float> buffer;
    const int64_t floats = cpu::TransposedKeysFloats(len, heads.dqk);
    if (static_cast<int64_t>(buffer.size()) < floats + 16) buffer.resize(floats + 16);
    kt_ = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buffer.data()) + 63) &
                                   ~uintptr_t{63});
    cpu::TransposeKeys(rows, k_offset, len, heads.dqk, kt_);
    keys_ = keys;
    return kt_;
  }

  // `count` heads of one query row (q, out and lse at its first head) over keys [0, len) of
  // the rows: cpu::AttendQueriesTransposed over `kt` (For's result), or cpu::AttendQueries
  // where it is null. The same bits either way.
  static void Attend(const float* kt, const float* q, int64_t count, const float* const* krows,
                     int64_t k_offset, const float* const* vrows, int64_t v_offset, int64_t len,
                     const AttentionHeads& heads, float* scores, float* out, float* lse) {
    if (kt != nullptr) {
      cpu::AttendQueriesTransposed(q, heads.dqk, count, kt, vrows, v_offset, len, heads.dqk,
                                   heads.dv, heads.scale, scores, out, heads.dv, lse);
    } else {
      cpu::AttendQueries(q, heads.dqk, count, krows, k_offset, vrows, v_offset, len, heads.dqk,
                         heads.dv, heads.scale, scores, out, heads.dv, lse);
    }
  }

 private:
  int64_t keys_ = -1;  // which keys kt_ holds
  float* kt_ = nullptr;
};

void ZeroRows(float* x, int64_t stride, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) std::memset(x + r * stride, 0, cols * sizeof(float));
}

// Grain (in rows) such that each chunk has at least ~64k flops of work.
// Up to this many tokens in a batch, MoeExperts runs its experts side by side.
constexpr int64_t kExpertParallelTokens = 64;

int64_t RowGrain(int64_t work_per_row) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, work_per_row));
}

class CpuBackendImpl final : public Backend {
 public:
  CpuBackendImpl(std::unique_ptr<cpu::DeviceArena> arena, const char* name)
      : arena_(std::move(arena)), name_(name) {
    openblas_set_num_threads(1);
    const char* poison = std::getenv("GRPO_POISON_BUFFERS");
    poison_ = poison != nullptr && std::string(poison) == "1";
  }

  const char* name() const override { return name_; }

  // ---- the Backend interface: unwrap the device pointers, run the kernels ------------------
  // With an arena (cpu_guarded) every call is bracketed by arena Enter/Exit; without one the
  // bracket is a null test.
  template <class T>
  static DevicePtr<T> WrapHost(T* p) { return Wrap(p); }

  // Blocks of kLazyBytes and more (a KV cache pool) are mapped, not allocated: their pages are
  // backed (huge pages where the kernel allows) when first written, so a large reserve costs
  // nothing until used. They are zero, never poisoned.
  static constexpr size_t kLazyBytes = size_t{64} << 20;
  DevicePtr<void> Allocate(int64_t bytes) override {
    const size_t n = static_cast<size_t>(std::max<int64_t>(bytes, 1));
    const bool poison = poison_ && n < kLazyBytes;
    if (arena_ != nullptr) {
      void* p = arena_->Allocate(n);
      if (poison) {
        Scope scope(arena_.get(), p);
        std::memset(p, 0xFF, n);
      }
      return Wrap(p);
    }
    void* p = n >= kLazyBytes ? MapLazy(n) : CachedAllocate(bytes);
    if (n >= kLazyBytes) CountMapped(static_cast<int64_t>(n));
    if (poison) std::memset(p, 0xFF, n);  // NaN floats
    return Wrap(p);
  }
  void Free(DevicePtr<void> data) override {
    if (arena_ != nullptr) {
      arena_->Free(Raw(data));
      return;
    }
    char* base = static_cast<char*>(Raw(data)) - kHeader;
    const size_t bytes = *reinterpret_cast<size_t*>(base);
    if (bytes & kMappedFlag) {
      CountMapped(-static_cast<int64_t>(bytes & ~kMappedFlag));
      munmap(base, (bytes & ~kMappedFlag) + kHeader);
    } else {
      CachedFree(Raw(data));
    }
  }
  Buffer ImportHost(const void* host, DType dtype, int64_t numel) override {
    if (arena_ != nullptr) return Backend::ImportHost(host, dtype, numel);
    // Host memory is device memory: alias it.
    return MakeBuffer(Wrap(const_cast<void*>(host)), dtype, numel, /*owned=*/false);
  }
  void CopyDeviceToDevice(DevicePtr<const void> src, DevicePtr<void> dst, int64_t bytes) override {
    Scope scope(arena_.get(), src, dst);
    std::memmove(Raw(dst), Raw(src), static_cast<size_t>(bytes));
  }
  void Synchronize() override {
    if (arena_ != nullptr) arena_->Synchronize();
  }
  void Zero(DevicePtr<float> data, int64_t size) override {
    Scope scope(arena_.get(), data);
    Zero(Raw(data), size);
  }
  void Add(DevicePtr<const float> src, DevicePtr<float> dst, int64_t size) override {
    Scope scope(arena_.get(), src, dst);
    Add(Raw(src), Raw(dst), size);
  }
  void Scale(DevicePtr<float> x, int64_t size, float c) override {
    Scope scope(arena_.get(), x);
    float* p = Raw(x);
    Pool().ParallelFor(size, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] *= c;
    });
  }
  void Linear(DevicePtr<const float> x, DevicePtr<const float> w, DevicePtr<const float> b,
              DevicePtr<float> y, int64_t m, int64_t k, int64_t n) override {
    Scope scope(arena_.get(), x, w, b, y);
    Linear(Raw(x), Raw(w), Raw(b), Raw(y), m, k, n);
  }
  void LinearBackward(DevicePtr<const float> dy, DevicePtr<const float> x, DevicePtr<const float> w,
                      DevicePtr<float> dx, DevicePtr<float> dw, DevicePtr<float> db, int64_t m,
                      int64_t k, int64_t n, bool accumulate_dx) override {
    Scope scope(arena_.get(), dy, x, w, dx, dw, db);
    LinearBackward(Raw(dy), Raw(x), Raw(w), Raw(dx), Raw(dw), Raw(db), m, k, n, accumulate_dx);
  }
  void LinearWeights(DevicePtr<const float> x, const WeightView& w, DevicePtr<const float> b,
                     DevicePtr<float> y, int64_t m, int64_t k, int64_t n) override {
    Scope scope(arena_.get(), x, w, b, y);
    LinearWeights(Raw(x), Host(w), Raw(b), Raw(y), m, k, n);
  }
  // Narrow views share one preparation of x for the AMX kernel (LinearWeightsQuantizedSameInput);
  // f32 views, and the guarded backend (whose Scope checks each call's blocks), go one by one.
  void LinearWeightsSameInput(DevicePtr<const float> x, std::span<const LinearOutput> outs,
                              int64_t m, int64_t k) override {
    bool narrow = arena_ == nullptr;
    for (const LinearOutput& out : outs) narrow = narrow && out.w.dtype != DType::kF32;
    if (!narrow) {
      Backend::LinearWeightsSameInput(x, outs, m, k);
      return;
    }
    std::vector<cpu::HostWeights> weights;
    std::vector<cpu::QuantizedOutput> quantized;
    weights.reserve(outs.size());
    for (const LinearOutput& out : outs) weights.push_back(Host(out.w));
    for (size_t i = 0; i < outs.size(); ++i) {
      quantized.push_back(cpu::QuantizedOutput{&weights[i], Raw(outs[i].b), Raw(outs[i].y), outs[i].n});
    }
    cpu::LinearWeightsQuantizedSameInput(Raw(x), quantized, m, k);
  }
  // Narrow views with AMX multiplying make the activation as x is prepared for the tiles
  // (LinearWeightsQuantizedSwiGluAmx); everything else, and the guarded backend, the default.
  void SwiGluLinearWeights(DevicePtr<const float> gate, DevicePtr<const float> up,
                           const WeightView& w, DevicePtr<const float> b, DevicePtr<float> y,
                           int64_t m, int64_t k, int64_t n) override {
    if (arena_ == nullptr && w.dtype != DType::kF32 &&
        cpu::LinearWeightsQuantizedSwiGluAmx(Raw(gate), Raw(up), Host(w), Raw(b), Raw(y), m, k, n)) {
      return;
    }
    Backend::SwiGluLinearWeights(gate, up, w, b, y, m, k, n);
  }
  // A narrow view is widened whole, in parallel, into host scratch (the CPU backend's device
  // memory is host memory; training already holds the f32 master beside it), then the f32
  // LinearBackward: dx is exactly the product with the widened values.
  void LinearWeightsBackward(DevicePtr<const float> dy, DevicePtr<const float> x,
                             const WeightView& w, DevicePtr<float> dx, DevicePtr<float> dw,
                             DevicePtr<float> db, int64_t m, int64_t k, int64_t n,
                             bool accumulate_dx) override {
    Scope scope(arena_.get(), dy, x, w, dx, dw, db);
    const cpu::HostWeights hw = Host(w);
    if (hw.dtype == DType::kF32) {
      LinearBackward(Raw(dy), Raw(x), hw.f32(), Raw(dx), Raw(dw), Raw(db), m, k, n, accumulate_dx);
      return;
    }
    std::vector<float> widened(dx != nullptr ? static_cast<size_t>(n * k) : 0);
    if (dx != nullptr) {
      Pool().ParallelFor(n, RowGrain(k), [&](int64_t r0, int64_t r1) {
        cpu::WidenWeightRows(hw, r0, r1, widened.data() + r0 * k);
      });
    }
    LinearBackward(Raw(dy), Raw(x), widened.data(), Raw(dx), Raw(dw), Raw(db), m, k, n,
                   accumulate_dx);
  }
  void WidenWeightRows(const WeightView& w, int64_t row_begin, int64_t row_end,
                       DevicePtr<float> out) override {
    Scope scope(arena_.get(), w, out);
    WidenWeightRows(Host(w), row_begin, row_end, Raw(out));
  }
  void QuantizeWeight(DevicePtr<const float> src, int64_t rows, int64_t cols, DType dtype,
                      DevicePtr<void> dst, DevicePtr<float> scales,
                      DevicePtr<int32_t> nonfinite) override {
    Scope scope(arena_.get(), src, dst, scales, nonfinite);
    QuantizeWeight(Raw(src), rows, cols, dtype, Raw(dst), Raw(scales), Raw(nonfinite));
  }
  void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            DevicePtr<const float> a, int64_t lda, DevicePtr<const float> b, int64_t ldb,
            float beta, DevicePtr<float> c, int64_t ldc) override {
    Scope scope(arena_.get(), a, b, c);
    Gemm(trans_a, trans_b, m, n, k, alpha, Raw(a), lda, Raw(b), ldb, beta, Raw(c), ldc);
  }
  void Embedding(DevicePtr<const int32_t> ids, DevicePtr<const float> table, DevicePtr<float> out,
                 int64_t rows, int64_t dim) override {
    Scope scope(arena_.get(), ids, table, out);
    Embedding(Raw(ids), Raw(table), Raw(out), rows, dim);
  }
  void EmbeddingBackward(DevicePtr<const int32_t> ids, DevicePtr<const float> dout,
                         DevicePtr<float> dtable, int64_t rows, int64_t dim) override {
    Scope scope(arena_.get(), ids, dout, dtable);
    EmbeddingBackward(Raw(ids), Raw(dout), Raw(dtable), rows, dim);
  }
  void RmsNorm(DevicePtr<const float> x, DevicePtr<const float> w, DevicePtr<float> y,
               DevicePtr<float> rstd, int64_t rows, int64_t dim, float eps) override {
    Scope scope(arena_.get(), x, w, y, rstd);
    RmsNorm(Raw(x), Raw(w), Raw(y), Raw(rstd), rows, dim, eps);
  }
  void RmsNormBackward(DevicePtr<const float> dy, DevicePtr<const float> x,
                       DevicePtr<const float> w, DevicePtr<const float> rstd, DevicePtr<float> dx,
                       DevicePtr<float> dw, int64_t rows, int64_t dim) override {
    Scope scope(arena_.get(), dy, x, w, rstd, dx, dw);
    RmsNormBackward(Raw(dy), Raw(x), Raw(w), Raw(rstd), Raw(dx), Raw(dw), rows, dim);
  }
  void Rope(DevicePtr<float> x, const RopeSpan& span, DevicePtr<const int32_t> positions,
            DevicePtr<const float> cos, DevicePtr<const float> sin, bool inverse) override {
    Scope scope(arena_.get(), x, positions, cos, sin);
    Rope(Raw(x), span, Raw(positions), Raw(cos), Raw(sin), inverse);
  }
  void Attention(DevicePtr<const float> q, DevicePtr<const float> k, DevicePtr<const float> v,
                 DevicePtr<float> out, DevicePtr<float> lse,
                 std::span<const int64_t> seq_offsets, const AttentionHeads& heads) override {
    Scope scope(arena_.get(), q, k, v, out, lse);
    Attention(Raw(q), Raw(k), Raw(v), Raw(out), Raw(lse), seq_offsets, heads);
  }
  void AttentionBackward(DevicePtr<const float> dout, DevicePtr<const float> q,
                         DevicePtr<const float> k, DevicePtr<const float> v,
                         DevicePtr<const float> out, DevicePtr<const float> lse,
                         DevicePtr<float> dq, DevicePtr<float> dk, DevicePtr<float> dv,
                         std::span<const int64_t> seq_offsets,
                         const AttentionHeads& heads) override {
    Scope scope(arena_.get(), dout, q, k, v, out, lse, dq, dk, dv);
    AttentionBackward(Raw(dout), Raw(q), Raw(k), Raw(v), Raw(out), Raw(lse), Raw(dq), Raw(dk),
                      Raw(dv), seq_offsets, heads);
  }
  void CachedAttention(DevicePtr<const float> q, DevicePtr<float> out,
                       std::span<const int64_t> q_offsets, std::span<const int64_t> past,
                       const KvCachePool& pool, int64_t layer, const BlockTables& tables,
                       const AttentionHeads& heads, const CacheRowLayout& layout) override {
    Scope scope(arena_.get(), q, out, pool, tables);
    CachedAttention(Raw(q), Raw(out), q_offsets, past, HostPool(pool), layer, HostTables(tables),
                    heads, layout);
  }
  void WriteCache(DevicePtr<const float> src, int64_t src_stride, const KvCachePool& pool,
                  int64_t layer, const BlockTables& tables, std::span<const int64_t> q_offsets,
                  std::span<const int64_t> past, int64_t col, int64_t cols) override {
    Scope scope(arena_.get(), src, pool, tables);
    WriteCache(Raw(src), src_stride, HostPool(pool), layer, HostTables(tables), q_offsets, past,
               col, cols);
  }
  void CopyCacheBlocks(const KvCachePool& pool, DevicePtr<const int32_t> from,
                       DevicePtr<const int32_t> to, int64_t n) override {
    Scope scope(arena_.get(), pool, from, to);
    CopyCacheBlocks(HostPool(pool), Raw(from), Raw(to), n);
  }
  void SwiGlu(DevicePtr<const float> gate, DevicePtr<const float> up, DevicePtr<float> out,
              int64_t size) override {
    Scope scope(arena_.get(), gate, up, out);
    SwiGlu(Raw(gate), Raw(up), Raw(out), size);
  }
  void SwiGluBackward(DevicePtr<const float> dout, DevicePtr<const float> gate,
                      DevicePtr<const float> up, DevicePtr<float> dgate, DevicePtr<float> dup,
                      int64_t size) override {
    Scope scope(arena_.get(), dout, gate, up, dgate, dup);
    SwiGluBackward(Raw(dout), Raw(gate), Raw(up), Raw(dgate), Raw(dup), size);
  }
  void GatherRows(DevicePtr<const float> src, DevicePtr<const int32_t> rows,
                  DevicePtr<const float> scale, DevicePtr<float> dst, int64_t n,
                  int64_t dim) override {
    Scope scope(arena_.get(), src, rows, scale, dst);
    GatherRows(Raw(src), Raw(rows), Raw(scale), Raw(dst), n, dim);
  }
  void ScatterAddRows(DevicePtr<const float> src, DevicePtr<const int32_t> rows,
                      DevicePtr<const float> scale, DevicePtr<float> dst, int64_t n,
                      int64_t dim) override {
    Scope scope(arena_.get(), src, rows, scale, dst);
    ScatterAddRows(Raw(src), Raw(rows), Raw(scale), Raw(dst), n, dim);
  }
  void CopyRows(DevicePtr<const float> src, int64_t src_stride, DevicePtr<float> dst,
                int64_t dst_stride, int64_t rows, int64_t cols, bool accumulate) override {
    Scope scope(arena_.get(), src, dst);
    CopyRows(Raw(src), src_stride, Raw(dst), dst_stride, rows, cols, accumulate);
  }
  void RowDot(DevicePtr<const float> a, DevicePtr<const float> b, DevicePtr<float> out, int64_t n,
              int64_t dim) override {
    Scope scope(arena_.get(), a, b, out);
    RowDot(Raw(a), Raw(b), Raw(out), n, dim);
  }
  void Route(const RouterSpec& spec, DevicePtr<const float> logits, DevicePtr<const float> bias,
             int64_t tokens, bool forced, DevicePtr<int32_t> experts, DevicePtr<float> scores,
             DevicePtr<float> weights) override {
    Scope scope(arena_.get(), logits, bias, experts, scores, weights);
    cpu::RouteForward(spec, Raw(logits), Raw(bias), tokens, forced, Raw(experts), Raw(scores),
                      Raw(weights));
  }
  void RouteBackward(const RouterSpec& spec, DevicePtr<const float> scores,
                     DevicePtr<const int32_t> experts, DevicePtr<const float> dweights,
                     int64_t tokens, DevicePtr<float> dlogits) override {
    Scope scope(arena_.get(), scores, experts, dweights, dlogits);
    cpu::RouteBackward(spec, Raw(scores), Raw(experts), Raw(dweights), tokens, Raw(dlogits));
  }
  void MoeExperts(const MoeExpertWeights& w, DevicePtr<const float> x,
                  DevicePtr<const int32_t> experts, DevicePtr<const float> weights, int64_t tokens,
                  int64_t k, const MoeExpertActs& acts, DevicePtr<float> y) override {
    Scope scope(arena_.get(), x, experts, weights, acts, y);
    const int64_t n = tokens * k, E = w.num_experts();
    std::vector<int32_t> rows(n), counts(E);
    cpu::GroupByExpert(Raw(experts), tokens, k, E, rows.data(), Raw(acts.slots), counts.data());
    int32_t* offsets = Raw(acts.offsets);
    offsets[0] = 0;
    for (int64_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
    const std::vector<int32_t> active = ActiveExperts(offsets, E);
    auto expert = [&](int64_t i) { ExpertForward(w, active[i], Raw(x), rows.data(), acts); };
    // Few tokens (decoding): each expert's products are too small to split, so experts run side
    // by side. Many tokens: one expert at a time, each product split across threads.
    const int64_t count = static_cast<int64_t>(active.size());
    if (tokens <= kExpertParallelTokens) {
      Pool().ParallelFor(count, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) expert(i);
      });
    } else {
      for (int64_t i = 0; i < count; ++i) expert(i);
    }
    std::vector<float> slot_weights(n);
    GatherRows(Raw(weights), Raw(acts.slots), nullptr, slot_weights.data(), n, 1);
    float* out = Raw(y);
    Zero(out, tokens * w.hidden);
    for (int32_t e : active) {  // in expert order: the sum does not depend on the threads
      const int64_t at = offsets[e];
      ScatterAddRows(Raw(acts.out) + at * w.hidden, rows.data() + at, slot_weights.data() + at,
                     out, offsets[e + 1] - at, w.hidden);
    }
  }
  void MoeExpertsBackward(const MoeExpertWeights& w, const MoeExpertGrads& g,
                          DevicePtr<const float> x, DevicePtr<const float> weights,
                          const MoeExpertActs& acts, DevicePtr<const float> dy, int64_t tokens,
                          int64_t k, DevicePtr<float> dx, DevicePtr<float> dweights) override {
    Scope scope(arena_.get(), x, weights, acts, dy, dx, dweights);
    const int64_t E = w.num_experts();
    const int32_t* offsets = Raw(acts.offsets);
    Zero(Raw(dx), tokens * w.hidden);
    for (int32_t e : ActiveExperts(offsets, E)) {
      ExpertBackward(w, g, e, k, Raw(x), Raw(weights), acts, Raw(dy), Raw(dx), Raw(dweights));
    }
  }
  void LogSoftmaxTargets(DevicePtr<const float> logits, DevicePtr<const int32_t> targets,
                         DevicePtr<float> logprobs, DevicePtr<float> entropy, int64_t rows,
                         int64_t vocab) override {
    Scope scope(arena_.get(), logits, targets, logprobs, entropy);
    LogSoftmaxTargets(Raw(logits), Raw(targets), Raw(logprobs), Raw(entropy), rows, vocab);
  }
  void LogSoftmaxTargetsBackward(DevicePtr<const float> logits, DevicePtr<const int32_t> targets,
                                 DevicePtr<const float> weights, DevicePtr<float> dlogits,
                                 int64_t rows, int64_t vocab) override {
    Scope scope(arena_.get(), logits, targets, weights, dlogits);
    LogSoftmaxTargetsBackward(Raw(logits), Raw(targets), Raw(weights), Raw(dlogits), rows, vocab);
  }
  void DivergenceRows(Divergence kind, DevicePtr<const float> logits,
                      DevicePtr<const float> teacher, DevicePtr<float> out, int64_t rows,
                      int64_t vocab) override {
    Scope scope(arena_.get(), logits, teacher, out);
    DivergenceRows(kind, Raw(logits), Raw(teacher), Raw(out), rows, vocab);
  }
  void DivergenceRowsBackward(Divergence kind, DevicePtr<const float> logits,
                              DevicePtr<const float> teacher, DevicePtr<const float> weights,
                              DevicePtr<float> dlogits, int64_t rows, int64_t vocab) override {
    Scope scope(arena_.get(), logits, teacher, weights, dlogits);
    DivergenceRowsBackward(kind, Raw(logits), Raw(teacher), Raw(weights), Raw(dlogits), rows, vocab);
  }
  void Sample(DevicePtr<const float> logits, int64_t vocab, std::span<const SamplingRow> rows,
              DevicePtr<int32_t> tokens, DevicePtr<float> logprobs,
              DevicePtr<float> raw_logprobs) override {
    Scope scope(arena_.get(), logits, tokens, logprobs, raw_logprobs);
    const float* x = Raw(logits);
    int32_t* tok = Raw(tokens);
    float* lp = Raw(logprobs);
    float* raw = Raw(raw_logprobs);
    const int64_t n = static_cast<int64_t>(rows.size());
    Pool().ParallelFor(n, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const cpu::SampleResult s = cpu::SampleRow(std::span<const float>(x + rows[r].row * vocab, vocab), rows[r]);
        tok[r] = s.token;
        lp[r] = s.logprob;
        raw[r] = s.raw_logprob;
      }
    });
  }
  bool SetBatchInvariant(bool on) override {
    batch_invariant_.store(on);
    return true;
  }
  bool batch_invariant() const override { return batch_invariant_.load(); }
  void SumSquares(DevicePtr<const float> x, int64_t size, DevicePtr<double> out) override {
    Scope scope(arena_.get(), x, out);
    const float* g = Raw(x);
    double s = 0;
    for (int64_t j = 0; j < size; ++j) s += static_cast<double>(g[j]) * g[j];
    *Raw(out) = s;
  }
  void AdamW(DevicePtr<float> p, DevicePtr<const float> g, DevicePtr<float> m, DevicePtr<float> v,
             int64_t size, const AdamWScalars& s) override {
    Scope scope(arena_.get(), p, g, m, v);
    cpu::AdamWStep(Raw(p), Raw(g), Raw(m), Raw(v), size, s);
  }

 protected:
  void DoCopyHostToDevice(const void* host, DevicePtr<void> dst, int64_t bytes) override {
    Scope scope(arena_.get(), dst);
    std::memcpy(Raw(dst), host, static_cast<size_t>(bytes));
  }
  void DoCopyDeviceToHost(DevicePtr<const void> src, void* host, int64_t bytes) override {
    if (arena_ != nullptr) {
      arena_->CopyToHost(Raw(src), host, static_cast<size_t>(bytes));
    } else {
      std::memcpy(host, Raw(src), static_cast<size_t>(bytes));
    }
  }

 public:
  BackendMemoryStats MemoryStats() {
    SpinGuard lock(lock_);
    return {static_cast<int64_t>(live_bytes_), static_cast<int64_t>(peak_bytes_)};
  }
  void ResetPeak() {
    SpinGuard lock(lock_);
    peak_bytes_ = live_bytes_;
  }

 private:
  void CountMapped(int64_t bytes) {
    SpinGuard lock(lock_);
    live_bytes_ += bytes;
    peak_bytes_ = std::max(peak_bytes_, live_bytes_);
  }
 private:
  // Brackets one op or transfer for the arena: names the device memory the call reads or writes
  // (DevicePtrs, WeightViews, the KV pool and block tables; null pointers are skipped), which
  // the arena opens for the call's duration. Without an arena it is a null test.
  class Scope {
   public:
    template <class... Touched>
    explicit Scope(cpu::DeviceArena* arena, const Touched&... touched) : arena_(arena) {
      static_assert(sizeof...(Touched) <= kMaxTouched / 2, "Scope: too many arguments");
      if (arena_ == nullptr) return;
      (Add(touched), ...);
      arena_->Enter(std::span<const void* const>(touched_.data(), count_));
    }
    ~Scope() {
      if (arena_ != nullptr) arena_->Exit(std::span<const void* const>(touched_.data(), count_));
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    static constexpr size_t kMaxTouched = 24;
    void AddRaw(const void* p) {
      if (p == nullptr) return;
      if (count_ == kMaxTouched) {
        std::fprintf(stderr, "fatal: Scope: more than %zu touched blocks\n", kMaxTouched);
        std::abort();
      }
      touched_[count_++] = p;
    }
    void Add(const void* p) { AddRaw(p); }
    template <class T>
    void Add(DevicePtr<T> p) { AddRaw(Raw(p)); }
    void Add(const WeightView& w) {
      AddRaw(Raw(w.data));
      AddRaw(Raw(w.scales));
    }
    void Add(const KvCachePool& pool) { AddRaw(Raw(pool.data)); }
    void Add(const BlockTables& tables) { AddRaw(Raw(tables.ids)); }
    void Add(const MoeExpertActs& a) {
      for (const void* p : {Raw(a.slots), Raw(a.offsets)}) AddRaw(p);
      for (const void* p : {Raw(a.gate), Raw(a.up), Raw(a.act), Raw(a.out)}) AddRaw(p);
    }

    cpu::DeviceArena* arena_;
    std::array<const void*, kMaxTouched> touched_;
    size_t count_ = 0;
  };
  static HostKvPool HostPool(const KvCachePool& p) {
    return HostKvPool{Raw(p.data), p.num_blocks, p.num_layers, p.block_size, p.row_width};
  }
  static HostBlockTables HostTables(const BlockTables& t) {
    return HostBlockTables{Raw(t.ids), t.offsets};
  }
  static cpu::HostWeights Host(const WeightView& w) {
    return cpu::HostWeights{w.dtype, Raw(w.data), Raw(w.scales), w.rows, w.cols, w.row_begin};
  }

  // ---- the kernels over host addresses -----------------------------------------------------
  // Requests are rounded up to size classes (multiples of 64 bytes up to 4 KiB, then four classes
  // per power of two), so batches whose shapes vary from step to step (RL: every packed batch
  // has another token count) reuse the cached blocks instead of piling up exact sizes.
  static size_t SizeClass(size_t bytes) {
    if (bytes <= 4096) return (bytes + 63) / 64 * 64;
    const int top = 63 - __builtin_clzll(bytes);  // 2^top <= bytes < 2^(top+1)
    const size_t step = size_t{1} << (top - 2);
    return (bytes + step - 1) / step * step;
  }
  // A caching allocator: freed blocks are kept by size class and handed out again, so the same
  // activations of the next step cost neither page faults nor zeroing.
  // Each block carries its size class in a 64-byte header in front of it; freed blocks wait in
  // per-class stacks. The lock is a spin lock: it is held for a push or a pop, and decode steps
  // allocate from several threads at once (a mutex there costs futex calls).
  void* CachedAllocate(int64_t requested) {
    const size_t bytes = SizeClass(static_cast<size_t>(std::max<int64_t>(requested, 1)));
    char* base = nullptr;
    {
      SpinGuard lock(lock_);
      live_bytes_ += bytes;
      peak_bytes_ = std::max(peak_bytes_, live_bytes_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        base = static_cast<char*>(it->second.back());
        it->second.pop_back();
        cached_bytes_ -= bytes;
      }
    }
    if (base == nullptr) {
      base = static_cast<char*>(std::aligned_alloc(64, bytes + kHeader));
      if (base == nullptr) throw std::bad_alloc();  // an error for the command, not an abort
      *reinterpret_cast<size_t*>(base) = bytes;
    }
    return base + kHeader;
  }
  void CachedFree(void* data) {
    char* base = reinterpret_cast<char*>(data) - kHeader;
    const size_t bytes = *reinterpret_cast<size_t*>(base);
    {
      SpinGuard lock(lock_);
      live_bytes_ -= bytes;
      if (cached_bytes_ + bytes <= kMaxCachedBytes) {
        free_[bytes].push_back(base);
        cached_bytes_ += bytes;
        return;
      }
    }
    std::free(base);
  }
  void Zero(float* data, int64_t size) {
    std::memset(data, 0, static_cast<size_t>(size) * sizeof(float));
  }
  void Add(const float* src, float* dst, int64_t size) {
    Pool().ParallelFor(size, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i] += src[i];
    });
  }

  void Linear(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t k,
              int64_t n) {
    if (batch_invariant_.load(std::memory_order_relaxed)) {
      LinearRowwise(x, w, b, y, m, k, n);
      return;
    }
    if (m > cpu::kSmallLinearRows && m >= Pool().num_threads()) {
      Pool().ParallelFor(m, RowGrain(2 * k * n), [&](int64_t r0, int64_t r1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, n, k, 1.0f, x + r0 * k, k,
                    w, k, 0.0f, y + r0 * n, n);
      });
    } else if (m <= cpu::kSmallLinearRows) {
      // Decoding: read each weight row once for all rows of x (no sgemm packing), output
      // columns split across threads in multiples of 4.
      const int64_t quads = (n + 3) / 4;
      Pool().ParallelFor(quads, RowGrain(8 * k * m), [&](int64_t q0, int64_t q1) {
        const int64_t c0 = 4 * q0, c1 = std::min(n, 4 * q1);
        cpu::LinearSmallM(x, w + c0 * k, y + c0, m, k, c1 - c0, n);
      });
    } else {  // fewer rows than threads: split the output columns instead
      Pool().ParallelFor(n, RowGrain(2 * k * m), [&](int64_t c0, int64_t c1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, c1 - c0, k, 1.0f, x, k,
                    w + c0 * k, k, 0.0f, y + c0, n);
      });
    }
    if (b != nullptr) {
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) y[r * n + c] += b[c];
    }
  }

  // Batch-invariant Linear: every row of y by the few-row kernel (one fixed order over k per
  // output, each row independent of the others), in tiles of rows x columns across the pool.
  // Tiles have a multiple of 4 columns, so a column takes the same path whatever m is.
  void LinearRowwise(const float* x, const float* w, const float* b, float* y, int64_t m,
                     int64_t k, int64_t n) {
    constexpr int64_t kTileRows = 24, kTileCols = 128;
    const int64_t row_tiles = (m + kTileRows - 1) / kTileRows;
    const int64_t col_tiles = (n + kTileCols - 1) / kTileCols;
    Pool().ParallelFor(row_tiles * col_tiles, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = (t / col_tiles) * kTileRows, c0 = (t % col_tiles) * kTileCols;
        const int64_t rows = std::min(kTileRows, m - r0), cols = std::min(kTileCols, n - c0);
        cpu::LinearSmallM(x + r0 * k, w + c0 * k, y + r0 * n + c0, rows, k, cols, n);
      }
    });
    if (b != nullptr) {
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) y[r * n + c] += b[c];
    }
  }

  void LinearWeights(const float* x, const cpu::HostWeights& w, const float* b, float* y, int64_t m,
                     int64_t k, int64_t n) {
    if (w.dtype == DType::kF32) {
      Linear(x, w.f32(), b, y, m, k, n);
    } else {
      cpu::LinearWeightsQuantized(x, w, b, y, m, k, n);
    }
  }

  void QuantizeWeight(const float* src, int64_t rows, int64_t cols, DType dtype, void* dst,
                      float* scales, int32_t* nonfinite) {
    const int64_t n = rows * cols;
    if (nonfinite != nullptr) {
      std::atomic<int64_t> bad{0};
      Pool().ParallelFor(n, int64_t{1} << 16, [&](int64_t b, int64_t e) {
        int64_t c = 0;
        for (int64_t i = b; i < e; ++i) c += !std::isfinite(src[i]);
        bad += c;
      });
      *nonfinite += static_cast<int32_t>(std::min<int64_t>(bad, std::numeric_limits<int32_t>::max()));
    }
    switch (dtype) {
      case DType::kF32:
        std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
        return;
      case DType::kBF16:
        Pool().ParallelFor(n, int64_t{1} << 16, [&](int64_t b, int64_t e) {
          auto* out = static_cast<uint16_t*>(dst);
          for (int64_t i = b; i < e; ++i) out[i] = F32ToBf16(src[i]);
        });
        return;
      case DType::kF8E4M3: {
        const int64_t block_rows = (rows + kFp8BlockSize - 1) / kFp8BlockSize;
        Pool().ParallelFor(block_rows, 1, [&](int64_t b, int64_t e) {
          QuantizeFp8BlockRows(src, rows, cols, b, e, static_cast<uint8_t*>(dst), scales);
        });
        return;
      }
      default:
        std::fprintf(stderr, "QuantizeWeight: unsupported dtype %s\n",
                     std::string(DTypeName(dtype)).c_str());
        std::abort();
    }
  }

  void WidenWeightRows(const cpu::HostWeights& w, int64_t row_begin, int64_t row_end,
                       float* out) {
    cpu::WidenWeightRows(w, row_begin, row_end, out);
  }

  void LinearBackward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                      float* db, int64_t m, int64_t k, int64_t n, bool accumulate_dx) {
    if (dx != nullptr) {
      Pool().ParallelFor(m, RowGrain(2 * k * n), [&](int64_t r0, int64_t r1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, k, n, 1.0f, dy + r0 * n,
                    n, w, k, accumulate_dx ? 1.0f : 0.0f, dx + r0 * k, k);
      });
    }
    if (dw != nullptr) {
      Pool().ParallelFor(n, RowGrain(2 * k * m), [&](int64_t c0, int64_t c1) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, k, m, 1.0f, dy + c0, n, x,
                    k, 1.0f, dw + c0 * k, k);
      });
    }
    if (db != nullptr) {
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) db[c] += dy[r * n + c];
    }
  }

  void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
            int64_t ldc) {
    // Split the rows of C over the pool; each chunk is one single-threaded sgemm.
    Pool().ParallelFor(m, RowGrain(2 * k * n), [&](int64_t r0, int64_t r1) {
      const float* a0 = trans_a ? a + r0 : a + r0 * lda;
      cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                  trans_b ? CblasTrans : CblasNoTrans, r1 - r0, n, k, alpha, a0, lda, b, ldb,
                  beta, c + r0 * ldc, ldc);
    });
  }

  void CachedAttention(const float* q, float* out, std::span<const int64_t> q_offsets,
                       std::span<const int64_t> past, const HostKvPool& pool, int64_t layer,
                       const HostBlockTables& tables, const AttentionHeads& heads,
                       const CacheRowLayout& layout) {
    const int64_t nh = heads.nh, nkv = heads.nkv, dqk = heads.dqk, dv = heads.dv;
    const int64_t k_offset = layout.k_offset, v_offset = layout.v_offset;
    const int64_t num_seqs = static_cast<int64_t>(past.size());
    const HeadRunTasks tasks(num_seqs, nkv, nh / nkv, Pool().num_threads());
    Pool().ParallelFor(tasks.size(), 1, [&](int64_t i0, int64_t i1) {
      std::vector<float> scores;
      std::vector<const float*> seq_rows;  // the rows of the task's sequence, from its block table
      TransposedKeys keys;
      int64_t rows_of = -1;
      for (int64_t i = i0; i < i1; ++i) {
        const auto [s, g, h0, count] = tasks[i];
        const int64_t len = past[s] + q_offsets[s + 1] - q_offsets[s];
        if (s != rows_of) {
          const int32_t* blocks = tables.ids + tables.offsets[s];
          seq_rows.resize(len);
          for (int64_t p = 0; p < len; ++p) {
            seq_rows[p] = CacheRow(pool, layer, blocks[p / pool.block_size], p % pool.block_size);
          }
          rows_of = s;
        }
        const float* kt = keys.For(s * nkv + g, q_offsets[s + 1] - q_offsets[s],
                                   seq_rows.data(), k_offset + g * dqk, len, heads);
        for (int64_t t = q_offsets[s]; t < q_offsets[s + 1]; ++t) {
          const int64_t pos = past[s] + (t - q_offsets[s]);
          scores.resize(count * (pos + 1));
          TransposedKeys::Attend(kt, q + (t * nh + h0) * dqk, count, seq_rows.data(),
                                 k_offset + g * dqk, seq_rows.data(), v_offset + g * dv, pos + 1,
                                 heads, scores.data(), out + (t * nh + h0) * dv, nullptr);
        }
      }
    });
  }

  void WriteCache(const float* src, int64_t src_stride, const HostKvPool& pool, int64_t layer,
                  const HostBlockTables& tables, std::span<const int64_t> q_offsets,
                  std::span<const int64_t> past, int64_t col, int64_t cols) {
    for (size_t s = 0; s < past.size(); ++s) {
      const int32_t* blocks = tables.ids + tables.offsets[s];
      for (int64_t t = q_offsets[s]; t < q_offsets[s + 1]; ++t) {
        const int64_t p = past[s] + t - q_offsets[s];
        std::memcpy(CacheRow(pool, layer, blocks[p / pool.block_size], p % pool.block_size) + col,
                    src + t * src_stride, cols * sizeof(float));
      }
    }
  }

  void CopyCacheBlocks(const HostKvPool& pool, const int32_t* from, const int32_t* to,
                       int64_t n) {
    const int64_t block_floats = pool.num_layers * pool.block_size * pool.row_width;
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(pool.data + to[i] * block_floats, pool.data + from[i] * block_floats,
                  block_floats * sizeof(float));
    }
  }

  void Embedding(const int32_t* ids, const float* table, float* out, int64_t rows,
                 int64_t dim) {
    for (int64_t t = 0; t < rows; ++t) {
      std::memcpy(out + t * dim, table + static_cast<int64_t>(ids[t]) * dim, dim * sizeof(float));
    }
  }
  void EmbeddingBackward(const int32_t* ids, const float* dout, float* dtable, int64_t rows,
                         int64_t dim) {
    for (int64_t t = 0; t < rows; ++t) {
      float* dst = dtable + static_cast<int64_t>(ids[t]) * dim;
      for (int64_t i = 0; i < dim; ++i) dst[i] += dout[t * dim + i];
    }
  }

  void RmsNorm(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim,
               float eps) {
    Pool().ParallelFor(rows, RowGrain(4 * dim), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) rstd[r] = cpu::RmsNormRow(x + r * dim, w, y + r * dim, dim, eps);
    });
  }

  void RmsNormBackward(const float* dy, const float* x, const float* w, const float* rstd,
                       float* dx, float* dw, int64_t rows, int64_t dim) {
    // y_i = x_i r w_i, r = (mean(x^2)+eps)^-1/2:  dx_i = r (dy_i w_i) - x_i r^3 / dim * sum_j dy_j w_j x_j
    if (dx != nullptr) {
      Pool().ParallelFor(rows, RowGrain(6 * dim), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          cpu::RmsNormRowBackward(dy + r * dim, x + r * dim, w, rstd[r], dx + r * dim, dim);
        }
      });
    }
    if (dw != nullptr) {
      Pool().ParallelFor(dim, 64, [&](int64_t i0, int64_t i1) {
        for (int64_t r = 0; r < rows; ++r) {
          const float rs = rstd[r];
          for (int64_t i = i0; i < i1; ++i) dw[i] += dy[r * dim + i] * x[r * dim + i] * rs;
        }
      });
    }
  }

  void Rope(float* x, const RopeSpan& span, const int32_t* positions, const float* cos,
            const float* sin, bool inverse) {
    const int64_t rows = span.rows, heads = span.heads, half = span.half, offset = span.offset;
    const int64_t row_stride = span.row_stride, head_stride = span.head_stride;
    const RopeLayout layout = span.layout;
    const float sign = inverse ? -1.0f : 1.0f;
    Pool().ParallelFor(rows, RowGrain(6 * heads * half), [&](int64_t r0, int64_t r1) {
      for (int64_t t = r0; t < r1; ++t) {
        const float* c = cos + static_cast<int64_t>(positions[t]) * half;
        const float* s = sin + static_cast<int64_t>(positions[t]) * half;
        for (int64_t h = 0; h < heads; ++h) {
          float* p = x + t * row_stride + h * head_stride + offset;
          for (int64_t i = 0; i < half; ++i) {
            float* a;
            float* b;
            if (layout == RopeLayout::kRotateHalf) {
              a = p + i;
              b = p + i + half;
            } else {
              a = p + 2 * i;
              b = p + 2 * i + 1;
            }
            const float x0 = *a, x1 = *b, si = sign * s[i];
            *a = x0 * c[i] - x1 * si;
            *b = x1 * c[i] + x0 * si;
          }
        }
      }
    });
  }

  void Attention(const float* q, const float* k, const float* v, float* out, float* lse,
                 std::span<const int64_t> seq_offsets, const AttentionHeads& heads) {
    const int64_t nh = heads.nh, nkv = heads.nkv, dqk = heads.dqk, dv = heads.dv;
    const int64_t num_seqs = static_cast<int64_t>(seq_offsets.size()) - 1;
    if (batch_invariant_.load(std::memory_order_relaxed)) {
      AttentionRowwise(q, k, v, out, lse, seq_offsets, heads);
      return;
    }
    Pool().ParallelFor(num_seqs * nh, 1, [&](int64_t i0, int64_t i1) {
      std::vector<float> scores(kAttnBlock * kKeyBlock);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t s = i / nh, h = i % nh, kvh = h / (nh / nkv);
        const int64_t start = seq_offsets[s], len = seq_offsets[s + 1] - start;
        const HeadSlices x{q + start * nh * dqk + h * dqk, k + start * nkv * dqk + kvh * dqk,
                           v + start * nkv * dv + kvh * dv, nullptr, nh * dqk, nkv * dqk,
                           nkv * dv, 0, len, dqk, dv, heads.scale};
        for (int64_t r0 = 0; r0 < len; r0 += kAttnBlock) {
          AttendQueryBlock(x, r0, std::min(len, r0 + kAttnBlock), out + start * nh * dv + h * dv,
                           nh * dv, lse + start * nh + h, nh, scores.data());
        }
      }
    });
  }

  // Batch-invariant Attention: each query row by cpu::AttendQuery's arithmetic over its
  // sequence's keys [0, row] in position order, as CachedAttention computes a decoding row from
  // the cache (the heads sharing a KV head together, as there: the same bits).
  void AttentionRowwise(const float* q, const float* k, const float* v, float* out, float* lse,
                        std::span<const int64_t> seq_offsets, const AttentionHeads& heads) {
    const int64_t nh = heads.nh, nkv = heads.nkv, dqk = heads.dqk, dv = heads.dv;
    const int64_t num_seqs = static_cast<int64_t>(seq_offsets.size()) - 1;
    if (num_seqs <= 0) return;
    const HeadRunTasks tasks(num_seqs, nkv, nh / nkv, Pool().num_threads());
    Pool().ParallelFor(tasks.size(), 1, [&](int64_t i0, int64_t i1) {
      std::vector<float> scores;
      std::vector<const float*> krows, vrows;
      TransposedKeys keys;
      for (int64_t i = i0; i < i1; ++i) {
        const auto [s, kvh, h0, count] = tasks[i];
        const int64_t start = seq_offsets[s], len = seq_offsets[s + 1] - start;
        krows.resize(len);
        vrows.resize(len);
        scores.resize(count * len);
        for (int64_t j = 0; j < len; ++j) {
          krows[j] = k + (start + j) * nkv * dqk;
          vrows[j] = v + (start + j) * nkv * dv;
        }
        const float* kt = keys.For(s * nkv + kvh, len, krows.data(), kvh * dqk, len, heads);
        for (int64_t r = 0; r < len; ++r) {
          const int64_t t = start + r;
          TransposedKeys::Attend(kt, q + (t * nh + h0) * dqk, count, krows.data(), kvh * dqk,
                                 vrows.data(), kvh * dv, r + 1, heads, scores.data(),
                                 out + (t * nh + h0) * dv, lse + t * nh + h0);
        }
      }
    });
  }

  void AttentionBackward(const float* dout, const float* q, const float* k, const float* v,
                         const float* out, const float* lse, float* dq, float* dk, float* dv,
                         std::span<const int64_t> seq_offsets,
                         const AttentionHeads& heads) {
    const int64_t nh = heads.nh, nkv = heads.nkv, dqk = heads.dqk, dv_dim = heads.dv;
    const int64_t num_seqs = static_cast<int64_t>(seq_offsets.size()) - 1;
    const int64_t group = nh / nkv;
    // One task per (sequence, kv head): the q heads sharing a kv head accumulate into the same
    // dk/dv rows, so they run in one task, in order (no atomics; fixed summation order).
    Pool().ParallelFor(num_seqs * nkv, 1, [&](int64_t i0, int64_t i1) {
      std::vector<float> scores(kAttnBlock * kKeyBlock), dp(kAttnBlock * kKeyBlock);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t s = i / nkv, kvh = i % nkv;
        const int64_t start = seq_offsets[s], len = seq_offsets[s + 1] - start;
        float* dkh = dk + start * nkv * dqk + kvh * dqk;
        float* dvh = dv + start * nkv * dv_dim + kvh * dv_dim;
        ZeroRows(dkh, nkv * dqk, len, dqk);
        ZeroRows(dvh, nkv * dv_dim, len, dv_dim);
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          const HeadSlices x{q + start * nh * dqk + h * dqk, k + start * nkv * dqk + kvh * dqk,
                             v + start * nkv * dv_dim + kvh * dv_dim,
                             out + start * nh * dv_dim + h * dv_dim, nh * dqk, nkv * dqk,
                             nkv * dv_dim, nh * dv_dim, len, dqk, dv_dim, heads.scale};
          float* dqh = dq + start * nh * dqk + h * dqk;
          ZeroRows(dqh, nh * dqk, len, dqk);
          for (int64_t r0 = 0; r0 < len; r0 += kAttnBlock) {
            AttendQueryBlockBackward(x, r0, std::min(len, r0 + kAttnBlock),
                                     dout + start * nh * dv_dim + h * dv_dim, nh * dv_dim,
                                     lse + start * nh + h, nh, dqh, nh * dqk, dkh, nkv * dqk,
                                     dvh, nkv * dv_dim, scores.data(), dp.data());
          }
        }
      }
    });
  }

  void SwiGlu(const float* gate, const float* up, float* out, int64_t size) {
    Pool().ParallelFor(size, 1 << 14, [&](int64_t b, int64_t e) {
      cpu::SwiGlu(gate + b, up + b, out + b, e - b);
    });
  }

  void SwiGluBackward(const float* dout, const float* gate, const float* up, float* dgate,
                      float* dup, int64_t size) {
    Pool().ParallelFor(size, 1 << 14, [&](int64_t b, int64_t e) {
      cpu::SwiGluBackward(dout + b, gate + b, up + b, dgate + b, dup + b, e - b);
    });
  }

  void GatherRows(const float* src, const int32_t* rows, const float* scale, float* dst,
                  int64_t n, int64_t dim) {
    for (int64_t i = 0; i < n; ++i) {
      const float* s = src + static_cast<int64_t>(rows[i]) * dim;
      float* d = dst + i * dim;
      if (scale == nullptr) {
        std::memcpy(d, s, dim * sizeof(float));
      } else {
        for (int64_t j = 0; j < dim; ++j) d[j] = scale[i] * s[j];
      }
    }
  }

  void ScatterAddRows(const float* src, const int32_t* rows, const float* scale, float* dst,
                      int64_t n, int64_t dim) {
    for (int64_t i = 0; i < n; ++i) {
      float* d = dst + static_cast<int64_t>(rows[i]) * dim;
      const float a = scale != nullptr ? scale[i] : 1.0f;
      for (int64_t j = 0; j < dim; ++j) d[j] += a * src[i * dim + j];
    }
  }

  void CopyRows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                int64_t rows, int64_t cols, bool accumulate) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* s = src + r * src_stride;
      float* d = dst + r * dst_stride;
      if (accumulate) {
        for (int64_t c = 0; c < cols; ++c) d[c] += s[c];
      } else {
        std::memcpy(d, s, cols * sizeof(float));
      }
    }
  }

  // The experts with at least one row, in expert order.
  static std::vector<int32_t> ActiveExperts(const int32_t* offsets, int64_t num_experts) {
    std::vector<int32_t> active;
    for (int64_t e = 0; e < num_experts; ++e) {
      if (offsets[e + 1] > offsets[e]) active.push_back(static_cast<int32_t>(e));
    }
    return active;
  }

  // Expert e over its permuted rows (tokens rows[i]): acts.gate/up/act/out rows of e.
  void ExpertForward(const MoeExpertWeights& w, int32_t e, const float* x, const int32_t* rows,
                     const MoeExpertActs& acts) {
    Scope scope(arena_.get(), w.gate[e], w.up[e], w.down[e]);
    const int64_t at = Raw(acts.offsets)[e], n = Raw(acts.offsets)[e + 1] - at;
    const int64_t h = w.hidden, inter = w.inter;
    std::vector<float> xe(n * h);
    GatherRows(x, rows + at, nullptr, xe.data(), n, h);
    float* gate = Raw(acts.gate) + at * inter;
    float* up = Raw(acts.up) + at * inter;
    float* act = Raw(acts.act) + at * inter;
    LinearWeights(xe.data(), Host(w.gate[e]), nullptr, gate, n, h, inter);
    LinearWeights(xe.data(), Host(w.up[e]), nullptr, up, n, h, inter);
    SwiGlu(gate, up, act, n * inter);
    LinearWeights(act, Host(w.down[e]), nullptr, Raw(acts.out) + at * h, n, inter, h);
  }

  // The backward of expert e over its rows: dweights of its choices, dx += its input gradient,
  // its weight gradients accumulated.
  void ExpertBackward(const MoeExpertWeights& w, const MoeExpertGrads& g, int32_t e, int64_t k,
                      const float* x, const float* weights, const MoeExpertActs& acts,
                      const float* dy, float* dx, float* dweights) {
    auto grad = [&](std::span<const DevicePtr<float>> gs) {
      return gs.empty() ? DevicePtr<float>() : gs[e];
    };
    const DevicePtr<float> g_gate = grad(g.gate), g_up = grad(g.up), g_down = grad(g.down);
    Scope scope(arena_.get(), w.gate[e], w.up[e], w.down[e], g_gate, g_up, g_down);
    const int64_t at = Raw(acts.offsets)[e], n = Raw(acts.offsets)[e + 1] - at;
    const int64_t h = w.hidden, inter = w.inter;
    const int32_t* slots = Raw(acts.slots) + at;
    std::vector<int32_t> rows(n);
    std::vector<float> slot_weights(n), dots(n);
    for (int64_t i = 0; i < n; ++i) {
      rows[i] = static_cast<int32_t>(slots[i] / k);
      slot_weights[i] = weights[slots[i]];
    }
    std::vector<float> dye(n * h), xe(n * h), dxe(n * h);
    GatherRows(dy, rows.data(), nullptr, dye.data(), n, h);
    RowDot(dye.data(), Raw(acts.out) + at * h, dots.data(), n, h);
    for (int64_t i = 0; i < n; ++i) dweights[slots[i]] = dots[i];  // every choice once
    GatherRows(dy, rows.data(), slot_weights.data(), dye.data(), n, h);
    GatherRows(x, rows.data(), nullptr, xe.data(), n, h);
    std::vector<float> dact(n * inter), dgate(n * inter), dup(n * inter);
    std::vector<float> widened;  // a narrow expert weight, widened per use
    LinearBackward(dye.data(), Raw(acts.act) + at * inter, F32Weights(w.down[e], h, inter, &widened), dact.data(),
                   Raw(g_down), nullptr, n, inter, h, false);
    SwiGluBackward(dact.data(), Raw(acts.gate) + at * inter, Raw(acts.up) + at * inter,
                   dgate.data(), dup.data(), n * inter);
    LinearBackward(dgate.data(), xe.data(), F32Weights(w.gate[e], inter, h, &widened), dxe.data(), Raw(g_gate),
                   nullptr, n, h, inter, false);
    LinearBackward(dup.data(), xe.data(), F32Weights(w.up[e], inter, h, &widened), dxe.data(), Raw(g_up), nullptr, n,
                   h, inter, true);
    ScatterAddRows(dxe.data(), rows.data(), nullptr, dx, n, h);
  }

  // An expert weight [rows, cols] as f32: the f32 view itself, or a narrow one (a bf16 compute
  // copy, CausalLM::SetComputeDType) widened into `scratch` exactly as LinearWeights widens it,
  // so the backward multiplies with the values the forward used (as LinearWeightsBackward).
  const float* F32Weights(const WeightView& w, int64_t rows, int64_t cols,
                          std::vector<float>* scratch) {
    const cpu::HostWeights hw = Host(w);
    if (hw.dtype == DType::kF32) return hw.f32();
    scratch->resize(static_cast<size_t>(rows * cols));
    cpu::WidenWeightRows(hw, 0, rows, scratch->data());
    return scratch->data();
  }

  void RowDot(const float* a, const float* b, float* out, int64_t n, int64_t dim) {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (int64_t j = 0; j < dim; ++j) s += static_cast<double>(a[i * dim + j]) * b[i * dim + j];
      out[i] = static_cast<float>(s);
    }
  }

  void LogSoftmaxTargets(const float* logits, const int32_t* targets, float* logprobs,
                         float* entropy, int64_t rows, int64_t vocab) {
    const bool invariant = batch_invariant_.load(std::memory_order_relaxed);
    Pool().ParallelFor(rows, RowGrain(8 * vocab), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* x = logits + r * vocab;
        const cpu::LogSoftmaxStats st = cpu::LogSoftmaxRow(x, vocab, entropy != nullptr);
        if (targets[r] >= 0 && invariant) {  // as Sample's raw_logprob
          double mx;
          const double lse = cpu::RawLogSumExp(std::span<const float>(x, vocab), &mx);
          logprobs[r] = static_cast<float>(x[targets[r]] - lse);
        } else if (targets[r] >= 0) {
          logprobs[r] = static_cast<float>(x[targets[r]] - st.max - st.log_sum);
        }
        if (entropy != nullptr) entropy[r] = static_cast<float>(st.entropy);
      }
    });
  }

  void LogSoftmaxTargetsBackward(const float* logits, const int32_t* targets,
                                 const float* weights, float* dlogits, int64_t rows,
                                 int64_t vocab) {
    Pool().ParallelFor(rows, RowGrain(8 * vocab), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* x = logits + r * vocab;
        float* d = dlogits + r * vocab;
        if (targets[r] < 0 || weights[r] == 0.0f) {
          std::memset(d, 0, vocab * sizeof(float));
          continue;
        }
        // d = w * (onehot(target) - softmax(x))
        const cpu::LogSoftmaxStats st = cpu::LogSoftmaxRow(x, vocab, false);
        const float w = weights[r];
        cpu::ScaledExp(x, vocab, static_cast<float>(st.max + st.log_sum), -w, d);
        d[targets[r]] += w;
      }
    });
  }

  // One row's divergence (Backend::DivergenceRows) in double; `p_shift`, `q_shift` are each
  // row's max + log sum, so log p_v = x[v] - p_shift.
  static double RowDivergence(Divergence kind, const float* x, const float* y, int64_t vocab,
                              double p_shift, double q_shift) {
    double d = 0.0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double lp = x[v] - p_shift, lq = y[v] - q_shift;
      const double w = std::exp(kind == Divergence::kReverseKl ? lp : lq);
      if (w > 0.0) d += kind == Divergence::kReverseKl ? w * (lp - lq) : w * (lq - lp);
    }
    return d;
  }
  static double Shift(const float* x, int64_t vocab) {
    const cpu::LogSoftmaxStats st = cpu::LogSoftmaxRow(x, vocab, false);
    return st.max + st.log_sum;
  }

  void DivergenceRows(Divergence kind, const float* logits, const float* teacher, float* out,
                      int64_t rows, int64_t vocab) {
    Pool().ParallelFor(rows, RowGrain(16 * vocab), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* x = logits + r * vocab;
        const float* y = teacher + r * vocab;
        out[r] = static_cast<float>(RowDivergence(kind, x, y, vocab, Shift(x, vocab), Shift(y, vocab)));
      }
    });
  }

  void DivergenceRowsBackward(Divergence kind, const float* logits, const float* teacher,
                              const float* weights, float* dlogits, int64_t rows, int64_t vocab) {
    Pool().ParallelFor(rows, RowGrain(16 * vocab), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const double w = weights[r];
        if (w == 0.0) continue;
        const float* x = logits + r * vocab;
        const float* y = teacher + r * vocab;
        float* d = dlogits + r * vocab;
        const double ps = Shift(x, vocab), qs = Shift(y, vocab);
        if (kind == Divergence::kReverseKl) {  // p_v (log p_v - log q_v - D)
          const double D = RowDivergence(kind, x, y, vocab, ps, qs);
          for (int64_t v = 0; v < vocab; ++v) {
            const double lp = x[v] - ps, p = std::exp(lp);
            if (p > 0.0) d[v] += static_cast<float>(w * p * (lp - (y[v] - qs) - D));
          }
        } else {  // p_v - q_v
          for (int64_t v = 0; v < vocab; ++v) {
            d[v] += static_cast<float>(w * (std::exp(x[v] - ps) - std::exp(y[v] - qs)));
          }
        }
      }
    });
  }

 private:
  static constexpr size_t kMaxCachedBytes = size_t{2} << 30;
  static constexpr size_t kHeader = 64;  // keeps the data 64-byte aligned
  static constexpr size_t kMappedFlag = size_t{1} << 63;  // in the header: a MapLazy block

  static void* MapLazy(size_t bytes) {
    void* p = mmap(nullptr, bytes + kHeader, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, bytes + kHeader, MADV_HUGEPAGE);  // best effort
    *static_cast<size_t*>(p) = bytes | kMappedFlag;
    return static_cast<char*>(p) + kHeader;
  }
  class SpinGuard {
   public:
    explicit SpinGuard(std::atomic_flag& f) : f_(f) {
      while (f_.test_and_set(std::memory_order_acquire)) {
        while (f_.test(std::memory_order_relaxed)) __builtin_ia32_pause();
      }
    }
    ~SpinGuard() { f_.clear(std::memory_order_release); }

   private:
    std::atomic_flag& f_;
  };
  std::unique_ptr<cpu::DeviceArena> arena_;  // null: plain CPU memory
  const char* name_;
  bool poison_ = false;
  std::atomic<bool> batch_invariant_{false};
  std::atomic_flag lock_ = ATOMIC_FLAG_INIT;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> freed blocks
  size_t cached_bytes_ = 0;
  size_t live_bytes_ = 0, peak_bytes_ = 0;  // handed out and not freed; its high-water mark
};

CpuBackendImpl& CpuBackendInstance() {
  static CpuBackendImpl* backend = new CpuBackendImpl(nullptr, "cpu");  // never destroyed
  return *backend;
}

}  // namespace

Backend& CpuBackend() { return CpuBackendInstance(); }

BackendMemoryStats CpuBackendMemoryStats() { return CpuBackendInstance().MemoryStats(); }

void ResetCpuBackendPeak() { CpuBackendInstance().ResetPeak(); }

namespace cpu {

std::unique_ptr<Backend> NewCpuKernelBackend(std::unique_ptr<DeviceArena> arena, const char* name) {
  return std::make_unique<CpuBackendImpl>(std::move(arena), name);
}

DevicePtr<float> HostAsDevice(float* p) { return CpuBackendImpl::WrapHost(p); }
DevicePtr<const float> HostAsDevice(const float* p) { return CpuBackendImpl::WrapHost(p); }
DevicePtr<const int32_t> HostAsDevice(const int32_t* p) { return CpuBackendImpl::WrapHost(p); }
DevicePtr<const void> HostAsDevice(const void* p) { return CpuBackendImpl::WrapHost(p); }

}  // namespace cpu

}  // namespace grpo
