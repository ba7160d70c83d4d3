// The CUDA backend (cuda_backend.h): memory, transfers and cuBLASLt GEMMs here, the kernels in
// model/ops/cuda/*.cu behind cuda_kernels.h.
#include "model/ops/cuda/cuda_backend.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cuda/fp8_block_cuda.h"
#include "model/ops/cuda/cuda_check.h"
#include "model/ops/cuda/cuda_kernels.h"
#include "model/ops/cuda/cublaslt_library.h"
#include "model/ops/cuda/device_memory.h"
#include "model/ops/cuda/fp8_gemm_plan.h"

namespace grpo {
namespace {

using cuda::DeviceMemoryInfo;

constexpr int64_t kStagingBytes = int64_t{16} << 20;        // each direction, pinned
constexpr int64_t kGemmWorkspaceBytes = int64_t{32} << 20;  // cuBLASLt's scratch
constexpr int64_t kWidenTileFloats = int64_t{16} << 20;     // LinearWeights' widened tile

[[noreturn]] void Fatal(const std::string& message) {
  std::fprintf(stderr, "fatal: cuda backend: %s\n", message.c_str());
  std::abort();
}

int64_t AlignUp(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

// The largest power of two (at most 256) dividing the address: what cuBLASLt may assume.
uint32_t AlignmentOf(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

// One cuBLASLt product in cuBLASLt's own column-major terms: D [m x n] = alpha op(A) op(B) +
// beta D, op(A) m x k, op(B) k x n, A and B of type ab_type, D f32, f32 accumulation
// (CUBLAS_COMPUTE_32F: no TF32). FP8 operands come with block scales (dequantization factors,
// cuBLAS's "128-element 1D and 128x128 2D block scaling"): A's one per 128x128 block
// (CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F: K-major, ceil(K/128) rounded up to a multiple of 4
// per 128 rows of op(A)), B's one per 128 elements of a column (..._VEC128_32F: N-major,
// [ceil(K/128), N]).
struct LtProduct {
  cudaDataType_t ab_type = CUDA_R_32F;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  float alpha = 1.0f, beta = 0.0f;
  float* d = nullptr;
  int64_t ldd = 0;
  const float* a_block_scales = nullptr;  // FP8 only
  const float* b_block_scales = nullptr;  // FP8 only
};

// OK, or FailedPrecondition naming the cuBLASLt call and its status.
absl::Status LtCall(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::FailedPreconditionError(std::string(what) + " returned cublasStatus_t " +
                                       std::to_string(static_cast<int>(status)));
}

// The descriptors of one cuBLASLt call, destroyed when it returns.
class LtDescriptors {
 public:
  explicit LtDescriptors(const cuda::CublasLtApi* api) : api_(api) {}
  ~LtDescriptors() {
    if (pref != nullptr) GRPO_CUDA_CHECK(api_->MatmulPreferenceDestroy(pref));
    for (cublasLtMatrixLayout_t layout : {d, b, a}) {
      if (layout != nullptr) GRPO_CUDA_CHECK(api_->MatrixLayoutDestroy(layout));
    }
    if (op != nullptr) GRPO_CUDA_CHECK(api_->MatmulDescDestroy(op));
  }
  LtDescriptors(const LtDescriptors&) = delete;
  LtDescriptors& operator=(const LtDescriptors&) = delete;

  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;

 private:
  const cuda::CublasLtApi* api_;
};

// The operation (f32 compute and scale type, transpositions, FP8 block scale modes and
// pointers) and the three layouts (C is D) of the product.
absl::Status DescribeLt(const cuda::CublasLtApi& lt, const LtProduct& p, LtDescriptors* h) {
  GRPO_RETURN_IF_ERROR(LtCall(lt.MatmulDescCreate(&h->op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                              "cublasLtMatmulDescCreate"));
  auto set = [&](cublasLtMatmulDescAttributes_t attribute, const void* value, size_t size) {
    return LtCall(lt.MatmulDescSetAttribute(h->op, attribute, value, size),
                  "cublasLtMatmulDescSetAttribute");
  };
  const cublasOperation_t op_a = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  GRPO_RETURN_IF_ERROR(set(CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  GRPO_RETURN_IF_ERROR(set(CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (p.a_block_scales != nullptr || p.b_block_scales != nullptr) {
    const int32_t mode_a = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    const int32_t mode_b = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    GRPO_RETURN_IF_ERROR(set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode_a, sizeof(mode_a)));
    GRPO_RETURN_IF_ERROR(set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode_b, sizeof(mode_b)));
    GRPO_RETURN_IF_ERROR(
        set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &p.a_block_scales, sizeof(p.a_block_scales)));
    GRPO_RETURN_IF_ERROR(
        set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &p.b_block_scales, sizeof(p.b_block_scales)));
  }
  GRPO_RETURN_IF_ERROR(LtCall(lt.MatrixLayoutCreate(&h->a, p.ab_type, p.trans_a ? p.k : p.m,
                                                    p.trans_a ? p.m : p.k, p.lda),
                              "cublasLtMatrixLayoutCreate(A)"));
  GRPO_RETURN_IF_ERROR(LtCall(lt.MatrixLayoutCreate(&h->b, p.ab_type, p.trans_b ? p.n : p.k,
                                                    p.trans_b ? p.k : p.n, p.ldb),
                              "cublasLtMatrixLayoutCreate(B)"));
  return LtCall(lt.MatrixLayoutCreate(&h->d, CUDA_R_32F, p.m, p.n, p.ldd),
                "cublasLtMatrixLayoutCreate(D)");
}

// The heuristic's constraints: the workspace, and each operand's actual alignment.
absl::Status PreferLt(const cuda::CublasLtApi& lt, const LtProduct& p, uint64_t workspace,
                      LtDescriptors* h) {
  GRPO_RETURN_IF_ERROR(LtCall(lt.MatmulPreferenceCreate(&h->pref), "cublasLtMatmulPreferenceCreate"));
  auto prefer = [&](cublasLtMatmulPreferenceAttributes_t attribute, const void* value, size_t size) {
    return LtCall(lt.MatmulPreferenceSetAttribute(h->pref, attribute, value, size),
                  "cublasLtMatmulPreferenceSetAttribute");
  };
  const uint32_t align_a = AlignmentOf(p.a), align_b = AlignmentOf(p.b), align_d = AlignmentOf(p.d);
  GRPO_RETURN_IF_ERROR(prefer(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  GRPO_RETURN_IF_ERROR(prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
  GRPO_RETURN_IF_ERROR(prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
  GRPO_RETURN_IF_ERROR(prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)));
  return prefer(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d));
}

class CudaBackendImpl final : public Backend {
 public:
  CudaBackendImpl() {
    GRPO_CUDA_CHECK(cudaSetDevice(device_));
    GRPO_CUDA_CHECK(cudaDeviceGetAttribute(&compute_major_, cudaDevAttrComputeCapabilityMajor, device_));
    GRPO_CUDA_CHECK(cudaDeviceGetAttribute(&compute_minor_, cudaDevAttrComputeCapabilityMinor, device_));
    GRPO_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device_));
    GRPO_CUDA_CHECK(cudaDeviceGetAttribute(&max_shared_bytes_, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_));
    GRPO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cudaMemPool_t pool;
    GRPO_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_));
    uint64_t keep_all = UINT64_MAX;  // freed memory stays cached in the pool
    GRPO_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
    absl::StatusOr<const cuda::CublasLtApi*> api = cuda::LoadCublasLt();
    if (!api.ok()) Fatal(std::string(api.status().message()));
    lt_api_ = *api;
    GRPO_CUDA_CHECK(lt_api_->Create(&lt_));
    GRPO_CUDA_CHECK(cudaMalloc(&gemm_workspace_, kGemmWorkspaceBytes));
    GRPO_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h2d_staging_), kStagingBytes));
    GRPO_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&d2h_staging_), kStagingBytes));
    GRPO_CUDA_CHECK(cudaEventCreateWithFlags(&h2d_done_, cudaEventDisableTiming));
    const char* poison = std::getenv("GRPO_POISON_BUFFERS");
    poison_ = poison != nullptr && std::string(poison) == "1";
  }

  const char* name() const override { return "cuda"; }

  // ---- memory --------------------------------------------------------------------------------
  DevicePtr<void> Allocate(int64_t bytes) override {
    const int64_t n = std::max<int64_t>(bytes, 1);
    void* p = nullptr;
    cudaError_t err = cudaMallocAsync(&p, static_cast<size_t>(n), stream_);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      // Memory freed on the stream returns to the pool as the stream passes the frees.
      GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
      err = cudaMallocAsync(&p, static_cast<size_t>(n), stream_);
    }
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      throw cuda::DeviceOutOfMemory(cuda::OutOfMemoryMessage(
          n, "device buffer", "cuda:" + std::to_string(device_), MemoryInfo(),
          ledger_.live_bytes(), ledger_.live_count(), ledger_.peak_bytes()));
    }
    GRPO_CUDA_CHECK(err);
    ledger_.Add(p, n);
    if (poison_) GRPO_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, static_cast<size_t>(n), stream_));
    return Wrap(p);
  }
  void Free(DevicePtr<void> data) override {
    void* p = Raw(data);
    ledger_.Remove(p);
    const cudaError_t err = cudaFreeAsync(p, stream_);
    if (err == cudaErrorCudartUnloading) return;  // a static Buffer freed as the process exits
    GRPO_CUDA_CHECK(err);
  }
  void CopyDeviceToDevice(DevicePtr<const void> src, DevicePtr<void> dst, int64_t bytes) override {
    if (bytes <= 0) return;
    GRPO_CUDA_CHECK(cudaMemcpyAsync(Raw(dst), Raw(src), static_cast<size_t>(bytes),
                                    cudaMemcpyDeviceToDevice, stream_));
  }
  // core/fp8_block's conversions on the device (the CPU backend's QuantizeWeight, bit for bit).
  void QuantizeWeight(DevicePtr<const float> src, int64_t rows, int64_t cols, DType dtype,
                      DevicePtr<void> dst, DevicePtr<float> scales,
                      DevicePtr<int32_t> nonfinite) override {
    const int64_t n = rows * cols;
    if (n <= 0) return;
    if (nonfinite) cuda::LaunchCountNonfinite(stream_, Raw(src), n, Raw(nonfinite));
    switch (dtype) {
      case DType::kF32:
        GRPO_CUDA_CHECK(cudaMemcpyAsync(Raw(dst), Raw(src), static_cast<size_t>(n) * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream_));
        return;
      case DType::kBF16:
        cuda::LaunchCastBf16(stream_, Raw(src), static_cast<uint16_t*>(Raw(dst)), n);
        return;
      case DType::kF8E4M3: {
        const absl::Status st = cuda::QuantizeFp8BlockDevice(
            Raw(src), rows, cols, static_cast<uint8_t*>(Raw(dst)), Raw(scales), stream_);
        if (!st.ok()) Fatal("QuantizeWeight: " + std::string(st.message()));
        return;
      }
      default:
        Fatal("QuantizeWeight: dtype " + std::string(DTypeName(dtype)) + " is not a serving format");
    }
  }
  void Synchronize() override {
    GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::lock_guard<std::mutex> lock(staging_mu_);
    DeliverDownloads();
    h2d_used_ = 0;
  }
  void Zero(DevicePtr<float> data, int64_t size) override {
    if (size <= 0) return;
    GRPO_CUDA_CHECK(cudaMemsetAsync(Raw(data), 0, static_cast<size_t>(size) * sizeof(float), stream_));
  }
  void Add(DevicePtr<const float> src, DevicePtr<float> dst, int64_t size) override {
    cuda::LaunchAdd(stream_, Raw(src), Raw(dst), size);
  }
  void Scale(DevicePtr<float> x, int64_t size, float c) override {
    cuda::LaunchScale(stream_, Raw(x), size, c);
  }

  // ---- linear layers -------------------------------------------------------------------------
  void Linear(DevicePtr<const float> x, DevicePtr<const float> w, DevicePtr<const float> b,
              DevicePtr<float> y, int64_t m, int64_t k, int64_t n) override {
    GemmRaw(false, true, m, n, k, 1.0f, Raw(x), k, Raw(w), k, 0.0f, Raw(y), n);
    if (b) cuda::LaunchAddBias(stream_, Raw(b), Raw(y), m, n);
  }
  void LinearBackward(DevicePtr<const float> dy, DevicePtr<const float> x, DevicePtr<const float> w,
                      DevicePtr<float> dx, DevicePtr<float> dw, DevicePtr<float> db, int64_t m,
                      int64_t k, int64_t n, bool accumulate_dx) override {
    if (dx) GemmRaw(false, false, m, k, n, 1.0f, Raw(dy), n, Raw(w), k, accumulate_dx ? 1.0f : 0.0f, Raw(dx), k);
    if (dw) GemmRaw(true, false, n, k, m, 1.0f, Raw(dy), n, Raw(x), k, 1.0f, Raw(dw), k);
    if (db) cuda::LaunchColumnSumAccumulate(stream_, Raw(dy), Raw(db), m, n);
  }
  // bf16 weights: bf16 x bf16 products (x rounded to bf16), FP8 weights: DeepSeek-style FP8 x FP8
  // block-scaled products (x quantized per 1x128 block), f32 accumulation both; where cuBLASLt
  // cannot (shape, alignment, device), the weights are widened to f32 instead, the reason noted
  // once on stderr.
  void LinearWeights(DevicePtr<const float> x, const WeightView& w, DevicePtr<const float> b,
                     DevicePtr<float> y, int64_t m, int64_t k, int64_t n) override {
    if (w.dtype == DType::kF32) {
      Linear(x, w.f32(), b, y, m, k, n);
      return;
    }
    if (m > 0 && n > 0 && k > 0) {
      const bool bf16 = w.dtype == DType::kBF16;
      const absl::Status narrow = bf16 ? Bf16Linear(Raw(x), w, Raw(y), m, k, n)
                                       : Fp8BlockLinear(Raw(x), w, Raw(y), m, k, n);
      if (narrow.ok()) {
        if (b) cuda::LaunchAddBias(stream_, Raw(b), Raw(y), m, n);
        return;
      }
      NoteFallback(std::string(bf16 ? "bf16" : "FP8") + " weight [" + std::to_string(n) + " x " +
                   std::to_string(k) + "]: " + (bf16 ? "bf16" : "FP8 block-scaled") +
                   " GEMM not used (" + std::string(narrow.message()) + "); widened to f32");
    }
    LinearWeightsWidened(x, w, b, y, m, k, n);
  }
  // The backward over a bf16 compute copy: dx = bf16(dy) . W in bf16 with f32 accumulation; dw
  // and db in f32 (LinearBackward's GEMM), as the interface asks. Other formats, and bf16 where
  // cuBLASLt cannot, widen W (the interface's default).
  void LinearWeightsBackward(DevicePtr<const float> dy, DevicePtr<const float> x, const WeightView& w,
                             DevicePtr<float> dx, DevicePtr<float> dw, DevicePtr<float> db, int64_t m,
                             int64_t k, int64_t n, bool accumulate_dx) override {
    if (w.dtype != DType::kBF16 || !dx || m <= 0 || n <= 0 || k <= 0) {
      Backend::LinearWeightsBackward(dy, x, w, dx, dw, db, m, k, n, accumulate_dx);
      return;
    }
    const absl::Status narrow = Bf16LinearDx(Raw(dy), w, Raw(dx), m, k, n, accumulate_dx);
    if (!narrow.ok()) {
      NoteFallback("bf16 weight [" + std::to_string(n) + " x " + std::to_string(k) +
                   "] backward: bf16 GEMM not used (" + std::string(narrow.message()) +
                   "); widened to f32");
      Backend::LinearWeightsBackward(dy, x, w, dx, dw, db, m, k, n, accumulate_dx);
      return;
    }
    LinearBackward(dy, x, DevicePtr<const float>(), DevicePtr<float>(), dw, db, m, k, n, false);
  }
  // LinearWeights over W widened to f32 a tile of rows (output columns) at a time, one GEMM per
  // tile, exactly as the CPU backend widens it.
  void LinearWeightsWidened(DevicePtr<const float> x, const WeightView& w, DevicePtr<const float> b,
                            DevicePtr<float> y, int64_t m, int64_t k, int64_t n) {
    const int64_t tile = std::clamp<int64_t>(kWidenTileFloats / std::max<int64_t>(k, 1), 1, std::max<int64_t>(n, 1));
    Scratch widened(this, tile * k * static_cast<int64_t>(sizeof(float)));
    for (int64_t r0 = 0; r0 < n; r0 += tile) {
      const int64_t r1 = std::min(n, r0 + tile);
      cuda::LaunchWidenWeightRows(stream_, RawOf(w), r0, r1, widened.as<float>());
      GemmRaw(false, true, m, r1 - r0, k, 1.0f, Raw(x), k, widened.as<float>(), k, 0.0f, Raw(y) + r0, n);
    }
    if (b) cuda::LaunchAddBias(stream_, Raw(b), Raw(y), m, n);
  }
  void WidenWeightRows(const WeightView& w, int64_t row_begin, int64_t row_end,
                       DevicePtr<float> out) override {
    cuda::LaunchWidenWeightRows(stream_, RawOf(w), row_begin, row_end, Raw(out));
  }
  void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            DevicePtr<const float> a, int64_t lda, DevicePtr<const float> b, int64_t ldb,
            float beta, DevicePtr<float> c, int64_t ldc) override {
    GemmRaw(trans_a, trans_b, m, n, k, alpha, Raw(a), lda, Raw(b), ldb, beta, Raw(c), ldc);
  }

  // ---- embedding, normalization, RoPE ----------------------------------------------------------
  void Embedding(DevicePtr<const int32_t> ids, DevicePtr<const float> table, DevicePtr<float> out,
                 int64_t rows, int64_t dim) override {
    cuda::LaunchEmbedding(stream_, Raw(ids), Raw(table), Raw(out), rows, dim);
  }
  void EmbeddingBackward(DevicePtr<const int32_t> ids, DevicePtr<const float> dout,
                         DevicePtr<float> dtable, int64_t rows, int64_t dim) override {
    cuda::LaunchEmbeddingBackward(stream_, Raw(ids), Raw(dout), Raw(dtable), rows, dim);
  }
  void RmsNorm(DevicePtr<const float> x, DevicePtr<const float> w, DevicePtr<float> y,
               DevicePtr<float> rstd, int64_t rows, int64_t dim, float eps) override {
    cuda::LaunchRmsNorm(stream_, Raw(x), Raw(w), Raw(y), Raw(rstd), rows, dim, eps);
  }
  void RmsNormBackward(DevicePtr<const float> dy, DevicePtr<const float> x,
                       DevicePtr<const float> w, DevicePtr<const float> rstd, DevicePtr<float> dx,
                       DevicePtr<float> dw, int64_t rows, int64_t dim) override {
    cuda::LaunchRmsNormBackward(stream_, Raw(dy), Raw(x), Raw(w), Raw(rstd), Raw(dx), Raw(dw), rows, dim);
  }
  void Rope(DevicePtr<float> x, const RopeSpan& span, DevicePtr<const int32_t> positions,
            DevicePtr<const float> cos, DevicePtr<const float> sin, bool inverse) override {
    cuda::LaunchRope(stream_, Raw(x), span, Raw(positions), Raw(cos), Raw(sin), inverse);
  }

  // ---- attention -----------------------------------------------------------------------------
  void Attention(DevicePtr<const float> q, DevicePtr<const float> k, DevicePtr<const float> v,
                 DevicePtr<float> out, DevicePtr<float> lse, std::span<const int64_t> seq_offsets,
                 const AttentionHeads& heads) override {
    CheckHeads(cuda::TrainingHeadsProblem(heads, max_shared_bytes_), "Attention");
    CheckOffsets(seq_offsets, "Attention seq_offsets");
    const std::vector<cuda::RowTile> tiles = cuda::TileSequences(seq_offsets, cuda::kAttentionTile);
    Scratch tiles_on_device = UploadVector(tiles);
    cuda::LaunchAttention(stream_, Raw(q), Raw(k), Raw(v), Raw(out), Raw(lse),
                          tiles_on_device.as<cuda::RowTile>(), static_cast<int64_t>(tiles.size()), heads);
  }
  void AttentionBackward(DevicePtr<const float> dout, DevicePtr<const float> q,
                         DevicePtr<const float> k, DevicePtr<const float> v,
                         DevicePtr<const float> out, DevicePtr<const float> lse,
                         DevicePtr<float> dq, DevicePtr<float> dk, DevicePtr<float> dv,
                         std::span<const int64_t> seq_offsets,
                         const AttentionHeads& heads) override {
    CheckHeads(cuda::TrainingHeadsProblem(heads, max_shared_bytes_), "AttentionBackward");
    CheckOffsets(seq_offsets, "AttentionBackward seq_offsets");
    const int64_t rows = seq_offsets.back();
    const std::vector<cuda::RowTile> tiles = cuda::TileSequences(seq_offsets, cuda::kAttentionTile);
    Scratch tiles_on_device = UploadVector(tiles);
    Scratch d_rows(this, std::max<int64_t>(rows * heads.nh, 1) * static_cast<int64_t>(sizeof(float)));
    cuda::LaunchAttentionBackward(stream_, Raw(dout), Raw(q), Raw(k), Raw(v), Raw(out), Raw(lse),
                                  Raw(dq), Raw(dk), Raw(dv), d_rows.as<float>(),
                                  tiles_on_device.as<cuda::RowTile>(), static_cast<int64_t>(tiles.size()),
                                  rows, heads);
  }
  void CachedAttention(DevicePtr<const float> q, DevicePtr<float> out,
                       std::span<const int64_t> q_offsets, std::span<const int64_t> past,
                       const KvCachePool& pool, int64_t layer, const BlockTables& tables,
                       const AttentionHeads& heads, const CacheRowLayout& layout) override {
    CheckHeads(cuda::CachedHeadsProblem(heads, max_shared_bytes_), "CachedAttention");
    SeqMetadata meta(this, q_offsets, past, tables);
    // Split-K while the call has fewer blocks than two per multiprocessor (attention_plan.h).
    const cuda::CachedAttentionPlan plan =
        cuda::PlanCachedAttention(q_offsets, past, heads, 2 * static_cast<int64_t>(multiprocessors_));
    Scratch items = UploadVector(plan.items);
    Scratch partial_base = UploadVector(plan.split ? plan.partial_base : std::vector<int64_t>());
    Scratch partials(this, std::max<int64_t>(plan.partial_rows * (heads.dv + 1), 1) *
                               static_cast<int64_t>(sizeof(float)));
    cuda::RawCachedPlan raw{items.as<cuda::CachedWorkItem>(), static_cast<int64_t>(plan.items.size()),
                            plan.chunk_keys, plan.split, partial_base.as<int64_t>(),
                            partials.as<float>(), partials.as<float>() + plan.partial_rows * heads.dv};
    cuda::LaunchCachedAttention(stream_, Raw(q), Raw(out), RawOf(pool), layer, meta.seqs, heads, layout, raw);
  }
  void WriteCache(DevicePtr<const float> src, int64_t src_stride, const KvCachePool& pool,
                  int64_t layer, const BlockTables& tables, std::span<const int64_t> q_offsets,
                  std::span<const int64_t> past, int64_t col, int64_t cols) override {
    SeqMetadata meta(this, q_offsets, past, tables);
    cuda::LaunchWriteCache(stream_, Raw(src), src_stride, RawOf(pool), layer, meta.seqs, col, cols);
  }
  void CopyCacheBlocks(const KvCachePool& pool, DevicePtr<const int32_t> from,
                       DevicePtr<const int32_t> to, int64_t n) override {
    cuda::LaunchCopyCacheBlocks(stream_, RawOf(pool), Raw(from), Raw(to), n);
  }

  // ---- activations and rows ------------------------------------------------------------------
  void SwiGlu(DevicePtr<const float> gate, DevicePtr<const float> up, DevicePtr<float> out,
              int64_t size) override {
    cuda::LaunchSwiGlu(stream_, Raw(gate), Raw(up), Raw(out), size);
  }
  void SwiGluBackward(DevicePtr<const float> dout, DevicePtr<const float> gate,
                      DevicePtr<const float> up, DevicePtr<float> dgate, DevicePtr<float> dup,
                      int64_t size) override {
    cuda::LaunchSwiGluBackward(stream_, Raw(dout), Raw(gate), Raw(up), Raw(dgate), Raw(dup), size);
  }
  void GatherRows(DevicePtr<const float> src, DevicePtr<const int32_t> rows,
                  DevicePtr<const float> scale, DevicePtr<float> dst, int64_t n,
                  int64_t dim) override {
    cuda::LaunchGatherRows(stream_, Raw(src), Raw(rows), Raw(scale), Raw(dst), n, dim);
  }
  void ScatterAddRows(DevicePtr<const float> src, DevicePtr<const int32_t> rows,
                      DevicePtr<const float> scale, DevicePtr<float> dst, int64_t n,
                      int64_t dim) override {
    cuda::LaunchScatterAddRows(stream_, Raw(src), Raw(rows), Raw(scale), Raw(dst), n, dim);
  }
  void CopyRows(DevicePtr<const float> src, int64_t src_stride, DevicePtr<float> dst,
                int64_t dst_stride, int64_t rows, int64_t cols, bool accumulate) override {
    cuda::LaunchCopyRows(stream_, Raw(src), src_stride, Raw(dst), dst_stride, rows, cols, accumulate);
  }
  void RowDot(DevicePtr<const float> a, DevicePtr<const float> b, DevicePtr<float> out, int64_t n,
              int64_t dim) override {
    cuda::LaunchRowDot(stream_, Raw(a), Raw(b), Raw(out), n, dim);
  }

  // ---- mixture of experts --------------------------------------------------------------------
  void Route(const RouterSpec& spec, DevicePtr<const float> logits, DevicePtr<const float> bias,
             int64_t tokens, bool forced, DevicePtr<int32_t> experts, DevicePtr<float> scores,
             DevicePtr<float> weights) override {
    CheckRouter(spec);
    cuda::LaunchRoute(stream_, spec, Raw(logits), Raw(bias), tokens, forced, Raw(experts),
                      Raw(scores), Raw(weights));
  }
  void RouteBackward(const RouterSpec& spec, DevicePtr<const float> scores,
                     DevicePtr<const int32_t> experts, DevicePtr<const float> dweights,
                     int64_t tokens, DevicePtr<float> dlogits) override {
    CheckRouter(spec);
    cuda::LaunchRouteBackward(stream_, spec, Raw(scores), Raw(experts), Raw(dweights), tokens, Raw(dlogits));
  }
  void MoeExperts(const MoeExpertWeights& w, DevicePtr<const float> x,
                  DevicePtr<const int32_t> experts, DevicePtr<const float> weights, int64_t tokens,
                  int64_t k, const MoeExpertActs& acts, DevicePtr<float> y) override;
  void MoeExpertsBackward(const MoeExpertWeights& w, const MoeExpertGrads& g,
                          DevicePtr<const float> x, DevicePtr<const float> weights,
                          const MoeExpertActs& acts, DevicePtr<const float> dy, int64_t tokens,
                          int64_t k, DevicePtr<float> dx, DevicePtr<float> dweights) override;

  // ---- output distribution -------------------------------------------------------------------
  void LogSoftmaxTargets(DevicePtr<const float> logits, DevicePtr<const int32_t> targets,
                         DevicePtr<float> logprobs, DevicePtr<float> entropy, int64_t rows,
                         int64_t vocab) override {
    cuda::LaunchLogSoftmaxTargets(stream_, Raw(logits), Raw(targets), Raw(logprobs), Raw(entropy), rows, vocab);
  }
  void LogSoftmaxTargetsBackward(DevicePtr<const float> logits, DevicePtr<const int32_t> targets,
                                 DevicePtr<const float> weights, DevicePtr<float> dlogits,
                                 int64_t rows, int64_t vocab) override {
    cuda::LaunchLogSoftmaxTargetsBackward(stream_, Raw(logits), Raw(targets), Raw(weights), Raw(dlogits), rows, vocab);
  }
  void DivergenceRows(Divergence kind, DevicePtr<const float> logits,
                      DevicePtr<const float> teacher, DevicePtr<float> out, int64_t rows,
                      int64_t vocab) override {
    cuda::LaunchDivergenceRows(stream_, kind == Divergence::kReverseKl, Raw(logits), Raw(teacher), Raw(out), rows,
                               vocab);
  }
  void DivergenceRowsBackward(Divergence kind, DevicePtr<const float> logits,
                              DevicePtr<const float> teacher, DevicePtr<const float> weights,
                              DevicePtr<float> dlogits, int64_t rows, int64_t vocab) override {
    cuda::LaunchDivergenceRowsBackward(stream_, kind == Divergence::kReverseKl, Raw(logits), Raw(teacher),
                                       Raw(weights), Raw(dlogits), rows, vocab);
  }
  void Sample(DevicePtr<const float> logits, int64_t vocab, std::span<const SamplingRow> rows,
              DevicePtr<int32_t> tokens, DevicePtr<float> logprobs,
              DevicePtr<float> raw_logprobs) override;

  // ---- optimizer -----------------------------------------------------------------------------
  void SumSquares(DevicePtr<const float> x, int64_t size, DevicePtr<double> out) override {
    Scratch partials(this, cuda::kSumSquaresBlocks * static_cast<int64_t>(sizeof(double)));
    cuda::LaunchSumSquares(stream_, Raw(x), size, partials.as<double>(), Raw(out));
  }
  void AdamW(DevicePtr<float> p, DevicePtr<const float> g, DevicePtr<float> m, DevicePtr<float> v,
             int64_t size, const AdamWScalars& s) override {
    cuda::LaunchAdamW(stream_, Raw(p), Raw(g), Raw(m), Raw(v), size, s);
  }

 protected:
  void DoCopyHostToDevice(const void* host, DevicePtr<void> dst, int64_t bytes) override;
  void DoCopyDeviceToHost(DevicePtr<const void> src, void* host, int64_t bytes) override;

 private:
  // Device memory for the duration of one call, freed (stream-ordered) when it goes out of scope:
  // the kernels enqueued before the free still see it.
  class Scratch {
   public:
    Scratch(CudaBackendImpl* backend, int64_t bytes) : backend_(backend), data_(backend->Allocate(bytes)) {}
    ~Scratch() {
      if (data_) backend_->Free(data_);  // null once moved from
    }
    Scratch(Scratch&& other) noexcept : backend_(other.backend_), data_(other.data_) { other.data_ = nullptr; }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <class T>
    T* as() const { return static_cast<T*>(Raw(data_)); }
    DevicePtr<void> ptr() const { return data_; }

   private:
    CudaBackendImpl* backend_;
    DevicePtr<void> data_;
  };
  friend class Scratch;

  // The int64 arrays, concatenated, uploaded into one scratch (counted as a transfer).
  Scratch UploadI64(std::initializer_list<std::span<const int64_t>> parts) {
    int64_t total = 0;
    for (const auto& p : parts) total += static_cast<int64_t>(p.size());
    std::vector<int64_t> host;
    host.reserve(total);
    for (const auto& p : parts) host.insert(host.end(), p.begin(), p.end());
    Scratch s(this, std::max<int64_t>(total, 1) * static_cast<int64_t>(sizeof(int64_t)));
    CopyHostToDevice(host.data(), s.ptr(), total * static_cast<int64_t>(sizeof(int64_t)));
    return s;
  }

  // A vector of plain structs (or int64) uploaded into one scratch (counted as a transfer).
  template <class T>
  Scratch UploadVector(const std::vector<T>& host) {
    static_assert(std::is_trivially_copyable_v<T>);
    const int64_t bytes = static_cast<int64_t>(host.size() * sizeof(T));
    Scratch s(this, std::max<int64_t>(bytes, 1));
    CopyHostToDevice(host.data(), s.ptr(), bytes);
    return s;
  }

  // The cache calls' per-sequence metadata on the device: q_offsets | past | table offsets.
  struct SeqMetadata {
    SeqMetadata(CudaBackendImpl* be, std::span<const int64_t> q_offsets,
                std::span<const int64_t> past, const BlockTables& tables)
        : scratch(be->UploadI64({q_offsets, past, tables.offsets})) {
      const int64_t n = static_cast<int64_t>(past.size());
      CheckOffsets(q_offsets, "q_offsets");
      if (static_cast<int64_t>(q_offsets.size()) != n + 1 ||
          static_cast<int64_t>(tables.offsets.size()) != n + 1) {
        Fatal("q_offsets and block table offsets need past.size() + 1 entries");
      }
      const int64_t* base = scratch.as<int64_t>();
      seqs.block_ids = Raw(tables.ids);
      seqs.q_offsets = base;
      seqs.past = base + (n + 1);
      seqs.table_offsets = base + (2 * n + 1);
      seqs.num_seqs = n;
      seqs.total_rows = q_offsets.back();
    }
    Scratch scratch;
    cuda::RawSeqs seqs;
  };

  static void CheckOffsets(std::span<const int64_t> offsets, const char* what) {
    if (offsets.empty() || offsets.front() != 0) Fatal(std::string(what) + " must start at 0");
  }
  // `problem`: attention_plan.h's reason the kernels cannot take the heads (empty: they can).
  static void CheckHeads(const std::string& problem, const char* what) {
    if (!problem.empty()) Fatal(std::string(what) + ": unsupported " + problem);
  }
  static void CheckRouter(const RouterSpec& s) {
    if (s.num_experts > cuda::kMaxExperts || s.n_group > cuda::kMaxExpertGroups ||
        s.top_k > cuda::kMaxTopK || s.n_group <= 0 || s.num_experts % s.n_group != 0) {
      Fatal("router with " + std::to_string(s.num_experts) + " experts, " + std::to_string(s.n_group) +
            " groups, top-" + std::to_string(s.top_k) + " unsupported (at most " +
            std::to_string(cuda::kMaxExperts) + " experts, " + std::to_string(cuda::kMaxExpertGroups) +
            " groups, top-" + std::to_string(cuda::kMaxTopK) + ")");
    }
  }
  static cuda::RawWeights RawOf(const WeightView& w) {
    return cuda::RawWeights{w.dtype, Raw(w.data), Raw(w.scales), w.rows, w.cols, w.row_begin};
  }
  static cuda::RawCache RawOf(const KvCachePool& p) {
    return cuda::RawCache{Raw(p.data), p.num_blocks, p.num_layers, p.block_size, p.row_width};
  }

  DeviceMemoryInfo MemoryInfo() const {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
    return DeviceMemoryInfo{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
  }

  void GemmRaw(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);
  // Enqueues the product (D zeroed first when beta == 0); FailedPrecondition, with nothing
  // enqueued but that zeroing, when cuBLASLt refuses it or has no algorithm for it.
  absl::Status RunLt(const LtProduct& p);
  // The narrow-weight products of LinearWeights / LinearWeightsBackward (no bias); an error says
  // why cuBLASLt cannot run one (the caller then widens W).
  absl::Status Bf16Linear(const float* x, const WeightView& w, float* y, int64_t m, int64_t k,
                          int64_t n);
  absl::StatusOr<const uint16_t*> Bf16Rows(const WeightView& w);
  absl::Status Bf16LinearDx(const float* dy, const WeightView& w, float* dx, int64_t m, int64_t k,
                            int64_t n, bool accumulate);
  absl::Status Fp8BlockLinear(const float* x, const WeightView& w, float* y, int64_t m, int64_t k,
                              int64_t n);
  // Writes `message` to stderr the first time it is noted.
  void NoteFallback(const std::string& message);
  // MoeExperts' parts: the experts' products over padded rows (capacity per expert, no
  // host sync) or over the permuted rows themselves (offsets read back).
  void ExpertsPadded(const MoeExpertWeights& w, const float* xp, int64_t capacity,
                     const MoeExpertActs& acts);
  void ExpertsExact(const MoeExpertWeights& w, const float* xp, int64_t rows,
                    const MoeExpertActs& acts);
  // The E+1 permutation offsets, downloaded (one transfer and a Synchronize).
  std::vector<int32_t> DownloadOffsets(DevicePtr<const int32_t> offsets, int64_t num_experts);
  void DeliverDownloads();  // staging_mu_ held, stream synchronized

  struct PendingDownload {
    const char* staged;
    void* host;
    int64_t bytes;
  };

  const int device_ = 0;
  int compute_major_ = 0, compute_minor_ = 0;
  int multiprocessors_ = 1;
  int max_shared_bytes_ = 48 * 1024;  // dynamic shared memory a block may opt into
  cudaStream_t stream_ = nullptr;
  const cuda::CublasLtApi* lt_api_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* gemm_workspace_ = nullptr;
  bool poison_ = false;
  cuda::DeviceMemoryLedger ledger_;

  std::mutex staging_mu_;
  char* h2d_staging_ = nullptr;
  int64_t h2d_used_ = 0;
  cudaEvent_t h2d_done_ = nullptr;  // after the last copy out of h2d_staging_
  char* d2h_staging_ = nullptr;
  int64_t d2h_used_ = 0;
  std::vector<PendingDownload> pending_;

  std::mutex fallback_mu_;
  std::set<std::string> fallbacks_noted_;
};

// Row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T: cuBLASLt
// gets B as its first operand and A as its second, each with its own transposition.
void CudaBackendImpl::GemmRaw(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                              float alpha, const float* a, int64_t lda, const float* b,
                              int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    cuda::LaunchScaleMatrix(stream_, c, m, n, ldc, beta);
    return;
  }
  LtProduct p;
  p.trans_a = trans_b;
  p.trans_b = trans_a;
  p.m = n;
  p.n = m;
  p.k = k;
  p.a = b;
  p.lda = ldb;
  p.b = a;
  p.ldb = lda;
  p.alpha = alpha;
  p.beta = beta;
  p.d = c;
  p.ldd = ldc;
  const absl::Status status = RunLt(p);
  if (!status.ok()) {
    Fatal("f32 GEMM m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
          ": " + std::string(status.message()));
  }
}

absl::Status CudaBackendImpl::RunLt(const LtProduct& p) {
  // beta == 0: D is not an input. Zeroed first so that a NaN already there (a poisoned buffer)
  // cannot leak in, whatever cuBLASLt does with a zero beta.
  if (p.beta == 0.0f) cuda::LaunchScaleMatrix(stream_, p.d, p.n, p.m, p.ldd, 0.0f);
  LtDescriptors h(lt_api_);
  GRPO_RETURN_IF_ERROR(DescribeLt(*lt_api_, p, &h));
  GRPO_RETURN_IF_ERROR(PreferLt(*lt_api_, p, kGemmWorkspaceBytes, &h));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  GRPO_RETURN_IF_ERROR(LtCall(lt_api_->MatmulAlgoGetHeuristic(lt_, h.op, h.a, h.b, h.d, h.d, h.pref,
                                                              1, &heuristic, &found),
                              "cublasLtMatmulAlgoGetHeuristic"));
  if (found == 0) return absl::FailedPreconditionError("cuBLASLt has no algorithm for it");
  return LtCall(lt_api_->Matmul(lt_, h.op, &p.alpha, p.a, h.a, p.b, h.b, &p.beta, p.d, h.d, p.d,
                                h.d, &heuristic.algo, gemm_workspace_, kGemmWorkspaceBytes, stream_),
                "cublasLtMatmul");
}

// The first row of the view's bf16 weights, as cuBLASLt reads them (2-byte aligned).
absl::StatusOr<const uint16_t*> CudaBackendImpl::Bf16Rows(const WeightView& w) {
  const uint16_t* data = static_cast<const uint16_t*>(Raw(w.data)) + w.row_begin * w.cols;
  if (reinterpret_cast<uintptr_t>(data) % 2 != 0) {
    return absl::FailedPreconditionError("the bf16 data is not 2-byte aligned");
  }
  return data;
}

// y = bf16(x) . W^T: row-major y [m, n] is column-major y^T [n x m] = op(A) op(B) with A the
// column-major [k x n] view of row-major W (transposed) and B that of bf16(x) [m, k].
absl::Status CudaBackendImpl::Bf16Linear(const float* x, const WeightView& w, float* y, int64_t m,
                                         int64_t k, int64_t n) {
  GRPO_ASSIGN_OR_RETURN(const uint16_t* data, Bf16Rows(w));
  Scratch x16(this, m * k * 2);
  cuda::LaunchCastBf16(stream_, x, x16.as<uint16_t>(), m * k);
  LtProduct p;
  p.ab_type = CUDA_R_16BF;
  p.trans_a = true;
  p.m = n;
  p.n = m;
  p.k = k;
  p.a = data;
  p.lda = k;
  p.b = x16.as<uint16_t>();
  p.ldb = k;
  p.d = y;
  p.ldd = n;
  return RunLt(p);
}

// dx = bf16(dy) . W: row-major dx [m, k] is column-major dx^T [k x m] = A B with A the
// column-major [k x n] view of row-major W and B that of bf16(dy) [m, n].
absl::Status CudaBackendImpl::Bf16LinearDx(const float* dy, const WeightView& w, float* dx,
                                           int64_t m, int64_t k, int64_t n, bool accumulate) {
  GRPO_ASSIGN_OR_RETURN(const uint16_t* data, Bf16Rows(w));
  Scratch dy16(this, m * n * 2);
  cuda::LaunchCastBf16(stream_, dy, dy16.as<uint16_t>(), m * n);
  LtProduct p;
  p.ab_type = CUDA_R_16BF;
  p.m = k;
  p.n = m;
  p.k = n;
  p.a = data;
  p.lda = k;
  p.b = dy16.as<uint16_t>();
  p.ldb = n;
  p.beta = accumulate ? 1.0f : 0.0f;
  p.d = dx;
  p.ldd = k;
  return RunLt(p);
}

// The DeepSeek-V3 recipe (fp8_gemm_plan.h): x quantized on the device per 1x128 block of each
// row (core/cuda's QuantizeFp8RowBlocksDevice, rows padded), W's FP8 codes with their 128x128
// block scales (copied into cuBLASLt's row pitch where the plan says), one block-scaled cuBLASLt
// GEMM: column-major y^T [n x m] = op(A) B with A the codes of W (transposed: the "TN" form FP8
// needs) and B those of x.
absl::Status CudaBackendImpl::Fp8BlockLinear(const float* x, const WeightView& w, float* y,
                                             int64_t m, int64_t k, int64_t n) {
  const uint8_t* w_codes = static_cast<const uint8_t*>(Raw(w.data)) + w.row_begin * w.cols;
  cuda::Fp8GemmRequest request{compute_major_, compute_minor_, m, k, n, w.row_begin,
                               reinterpret_cast<uintptr_t>(w_codes),
                               reinterpret_cast<uintptr_t>(Raw(w.scales)),
                               reinterpret_cast<uintptr_t>(y)};
  GRPO_ASSIGN_OR_RETURN(const cuda::Fp8GemmPlan plan, cuda::PlanFp8BlockGemm(request));
  const int64_t f32 = static_cast<int64_t>(sizeof(float));
  Scratch x_codes(this, plan.rows * k), x_scales(this, plan.k_blocks * plan.rows * f32);
  const absl::Status quantized = cuda::QuantizeFp8RowBlocksDevice(
      x, m, plan.rows, k, x_codes.as<uint8_t>(), x_scales.as<float>(), stream_);
  if (!quantized.ok()) Fatal("LinearWeights: " + std::string(quantized.message()));
  const float* w_scales = Raw(w.scales) + plan.scale_offset;
  std::optional<Scratch> repacked;
  if (plan.repack_scales) {
    const int64_t bytes = plan.scale_pitch * plan.n_blocks * f32;
    repacked.emplace(this, bytes);
    GRPO_CUDA_CHECK(cudaMemsetAsync(repacked->as<float>(), 0, static_cast<size_t>(bytes), stream_));
    GRPO_CUDA_CHECK(cudaMemcpy2DAsync(repacked->as<float>(), plan.scale_pitch * f32, w_scales,
                                      plan.k_blocks * f32, plan.k_blocks * f32, plan.n_blocks,
                                      cudaMemcpyDeviceToDevice, stream_));
    w_scales = repacked->as<float>();
  }
  std::optional<Scratch> padded_out;  // the padded rows' products; y gets the first m
  if (!plan.direct_output) padded_out.emplace(this, plan.rows * n * f32);
  LtProduct p;
  p.ab_type = CUDA_R_8F_E4M3;
  p.trans_a = true;
  p.m = n;
  p.n = plan.rows;
  p.k = k;
  p.a = w_codes;
  p.lda = k;
  p.b = x_codes.as<uint8_t>();
  p.ldb = k;
  p.d = plan.direct_output ? y : padded_out->as<float>();
  p.ldd = n;
  p.a_block_scales = w_scales;
  p.b_block_scales = x_scales.as<float>();
  GRPO_RETURN_IF_ERROR(RunLt(p));
  if (!plan.direct_output) {
    GRPO_CUDA_CHECK(cudaMemcpyAsync(y, p.d, static_cast<size_t>(m * n * f32),
                                    cudaMemcpyDeviceToDevice, stream_));
  }
  return absl::OkStatus();
}

void CudaBackendImpl::NoteFallback(const std::string& message) {
  std::lock_guard<std::mutex> lock(fallback_mu_);
  if (fallbacks_noted_.insert(message).second) {
    std::fprintf(stderr, "cuda backend: %s\n", message.c_str());
  }
}

// Through the pinned staging buffer, in pieces: a piece waits only when the buffer is full and
// the copies out of it may still be running.
void CudaBackendImpl::DoCopyHostToDevice(const void* host, DevicePtr<void> dst, int64_t bytes) {
  std::lock_guard<std::mutex> lock(staging_mu_);
  const char* from = static_cast<const char*>(host);
  char* to = static_cast<char*>(Raw(dst));
  for (int64_t done = 0; done < bytes;) {
    const int64_t piece = std::min(bytes - done, kStagingBytes);
    if (h2d_used_ + piece > kStagingBytes) {
      GRPO_CUDA_CHECK(cudaEventSynchronize(h2d_done_));
      h2d_used_ = 0;
    }
    char* staged = h2d_staging_ + h2d_used_;
    std::memcpy(staged, from + done, static_cast<size_t>(piece));
    GRPO_CUDA_CHECK(cudaMemcpyAsync(to + done, staged, static_cast<size_t>(piece),
                                    cudaMemcpyHostToDevice, stream_));
    GRPO_CUDA_CHECK(cudaEventRecord(h2d_done_, stream_));
    h2d_used_ = AlignUp(h2d_used_ + piece, 256);
    done += piece;
  }
}

// Into the pinned staging buffer; the bytes reach `host` at Synchronize. A copy that does not fit
// in what is left first delivers the pending ones; one larger than the buffer is copied directly
// (and waited for).
void CudaBackendImpl::DoCopyDeviceToHost(DevicePtr<const void> src, void* host, int64_t bytes) {
  std::lock_guard<std::mutex> lock(staging_mu_);
  if (d2h_used_ + bytes > kStagingBytes) {
    GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    DeliverDownloads();
  }
  if (bytes > kStagingBytes) {
    GRPO_CUDA_CHECK(cudaMemcpyAsync(host, Raw(src), static_cast<size_t>(bytes),
                                    cudaMemcpyDeviceToHost, stream_));
    GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  char* staged = d2h_staging_ + d2h_used_;
  GRPO_CUDA_CHECK(cudaMemcpyAsync(staged, Raw(src), static_cast<size_t>(bytes),
                                  cudaMemcpyDeviceToHost, stream_));
  pending_.push_back({staged, host, bytes});
  d2h_used_ = AlignUp(d2h_used_ + bytes, 256);
}

void CudaBackendImpl::DeliverDownloads() {
  for (const PendingDownload& p : pending_) std::memcpy(p.host, p.staged, static_cast<size_t>(p.bytes));
  pending_.clear();
  d2h_used_ = 0;
}

// Filtered draws read their logits row sorted (cuda_kernels.h's LaunchSortRows): each distinct
// row once.
void CudaBackendImpl::Sample(DevicePtr<const float> logits, int64_t vocab,
                             std::span<const SamplingRow> rows, DevicePtr<int32_t> tokens,
                             DevicePtr<float> logprobs, DevicePtr<float> raw_logprobs) {
  const int64_t n = static_cast<int64_t>(rows.size());
  if (n == 0) return;
  std::vector<cuda::DeviceDraw> draws(n);
  std::map<int64_t, int64_t> sorted_index;  // logits row -> its row in `sorted`
  std::vector<int64_t> sort_rows;
  for (int64_t i = 0; i < n; ++i) {
    const SamplingRow& r = rows[i];
    const bool filtered = r.temperature != 0.0 && (r.top_k > 0 || r.top_p < 1.0 || r.min_p > 0.0);
    int64_t sorted_row = -1;
    if (filtered) {
      auto [it, added] = sorted_index.emplace(r.row, static_cast<int64_t>(sort_rows.size()));
      if (added) sort_rows.push_back(r.row);
      sorted_row = it->second;
    }
    draws[i] = cuda::DeviceDraw{r.temperature, r.top_p, r.min_p, r.uniform, r.top_k, r.row, sorted_row};
  }
  Scratch device_draws(this, n * static_cast<int64_t>(sizeof(cuda::DeviceDraw)));
  CopyHostToDevice(draws.data(), device_draws.ptr(), n * static_cast<int64_t>(sizeof(cuda::DeviceDraw)));
  const int64_t n_sort = static_cast<int64_t>(sort_rows.size());
  if (n_sort * vocab > INT32_MAX) Fatal("Sample: too many filtered rows to sort at once");
  std::vector<int64_t> segments(n_sort + 1);
  for (int64_t i = 0; i <= n_sort; ++i) segments[i] = i * vocab;
  Scratch sort_meta = UploadI64({sort_rows, segments});
  const int64_t key_bytes = std::max<int64_t>(n_sort * vocab, 1) * static_cast<int64_t>(sizeof(uint64_t));
  Scratch keys(this, n_sort > 0 ? key_bytes : 8), sorted(this, n_sort > 0 ? key_bytes : 8);
  if (n_sort > 0) {
    const int64_t temp_bytes = cuda::SortScratchBytes(n_sort, vocab);
    Scratch temp(this, temp_bytes);
    cuda::LaunchSortRows(stream_, Raw(logits), vocab, sort_meta.as<int64_t>(), n_sort,
                         keys.as<uint64_t>(), sorted.as<uint64_t>(), sort_meta.as<int64_t>() + n_sort,
                         temp.as<void>(), temp_bytes);
  }
  cuda::LaunchSample(stream_, Raw(logits), vocab, device_draws.as<cuda::DeviceDraw>(), n,
                     sorted.as<uint64_t>(), Raw(tokens), Raw(logprobs), Raw(raw_logprobs));
}


// Up to this many padded rows (experts x tokens), MoeExperts runs every expert over `tokens`
// padded rows: no routing count reaches the host, so a decode step never waits on the stream
// for its MoE layers. Larger batches (prefill, training) read the E+1 offsets back once per
// call and multiply exactly the permuted rows; their GEMMs dwarf that wait.
constexpr int64_t kMaxPaddedExpertRows = 8192;

std::vector<int32_t> CudaBackendImpl::DownloadOffsets(DevicePtr<const int32_t> offsets,
                                                      int64_t num_experts) {
  std::vector<int32_t> host(num_experts + 1);
  CopyDeviceToHost(offsets, host.data(), (num_experts + 1) * static_cast<int64_t>(sizeof(int32_t)));
  Synchronize();
  return host;
}

void CudaBackendImpl::ExpertsPadded(const MoeExpertWeights& w, const float* xp, int64_t capacity,
                                    const MoeExpertActs& acts) {
  const int64_t E = w.num_experts(), h = w.hidden, inter = w.inter, rows = E * capacity;
  const int32_t* offsets = Raw(acts.offsets);
  Scratch xpad(this, rows * h * 4), gate(this, rows * inter * 4), up(this, rows * inter * 4),
      act(this, rows * inter * 4), out(this, rows * h * 4);
  cuda::LaunchPadExpertRows(stream_, xp, offsets, E, capacity, h, xpad.as<float>());
  for (int64_t e = 0; e < E; ++e) {  // one GEMM per expert and matrix
    const DevicePtr<const float> xe = Wrap<const float>(xpad.as<float>() + e * capacity * h);
    LinearWeights(xe, w.gate[e], nullptr, Wrap(gate.as<float>() + e * capacity * inter), capacity, h, inter);
    LinearWeights(xe, w.up[e], nullptr, Wrap(up.as<float>() + e * capacity * inter), capacity, h, inter);
  }
  cuda::LaunchSwiGlu(stream_, gate.as<float>(), up.as<float>(), act.as<float>(), rows * inter);
  for (int64_t e = 0; e < E; ++e) {
    LinearWeights(Wrap<const float>(act.as<float>() + e * capacity * inter), w.down[e], nullptr,
                  Wrap(out.as<float>() + e * capacity * h), capacity, inter, h);
  }
  cuda::LaunchUnpadExpertRows(stream_, gate.as<float>(), offsets, E, capacity, inter, Raw(acts.gate));
  cuda::LaunchUnpadExpertRows(stream_, up.as<float>(), offsets, E, capacity, inter, Raw(acts.up));
  cuda::LaunchUnpadExpertRows(stream_, act.as<float>(), offsets, E, capacity, inter, Raw(acts.act));
  cuda::LaunchUnpadExpertRows(stream_, out.as<float>(), offsets, E, capacity, h, Raw(acts.out));
}

void CudaBackendImpl::ExpertsExact(const MoeExpertWeights& w, const float* xp, int64_t rows,
                                   const MoeExpertActs& acts) {
  const int64_t E = w.num_experts(), h = w.hidden, inter = w.inter;
  const std::vector<int32_t> at = DownloadOffsets(acts.offsets, E);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = at[e + 1] - at[e];
    if (n == 0) continue;
    const DevicePtr<const float> xe = Wrap<const float>(xp + at[e] * h);
    LinearWeights(xe, w.gate[e], nullptr, acts.gate + at[e] * inter, n, h, inter);
    LinearWeights(xe, w.up[e], nullptr, acts.up + at[e] * inter, n, h, inter);
  }
  cuda::LaunchSwiGlu(stream_, Raw(acts.gate), Raw(acts.up), Raw(acts.act), rows * inter);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = at[e + 1] - at[e];
    if (n == 0) continue;
    LinearWeights(acts.act + at[e] * inter, w.down[e], nullptr, acts.out + at[e] * h, n, inter, h);
  }
}

void CudaBackendImpl::MoeExperts(const MoeExpertWeights& w, DevicePtr<const float> x,
                                 DevicePtr<const int32_t> experts, DevicePtr<const float> weights,
                                 int64_t tokens, int64_t k, const MoeExpertActs& acts,
                                 DevicePtr<float> y) {
  const int64_t E = w.num_experts(), n = tokens * k, h = w.hidden;
  if (E > cuda::kMaxExperts) Fatal("MoeExperts: " + std::to_string(E) + " experts, at most " + std::to_string(cuda::kMaxExperts));
  Zero(y, tokens * h);
  if (n <= 0) return;
  Scratch rows(this, n * 4), counts(this, E * 4), xp(this, n * h * 4), slot_weights(this, n * 4);
  cuda::LaunchGroupByExpert(stream_, Raw(experts), tokens, k, E, rows.as<int32_t>(), Raw(acts.slots),
                            counts.as<int32_t>());
  cuda::LaunchExpertOffsets(stream_, counts.as<int32_t>(), E, Raw(acts.offsets));
  cuda::LaunchGatherRows(stream_, Raw(x), rows.as<int32_t>(), nullptr, xp.as<float>(), n, h);
  // A token's k experts are distinct, so no expert has more than `tokens` rows.
  if (E * tokens <= kMaxPaddedExpertRows) {
    ExpertsPadded(w, xp.as<float>(), tokens, acts);
  } else {
    ExpertsExact(w, xp.as<float>(), n, acts);
  }
  cuda::LaunchGatherRows(stream_, Raw(weights), Raw(acts.slots), nullptr, slot_weights.as<float>(), n, 1);
  // One pass over the permuted rows in order: each token's sum runs in expert order.
  cuda::LaunchScatterAddRows(stream_, Raw(acts.out), rows.as<int32_t>(), slot_weights.as<float>(),
                             Raw(y), n, h);
}

void CudaBackendImpl::MoeExpertsBackward(const MoeExpertWeights& w, const MoeExpertGrads& g,
                                         DevicePtr<const float> x, DevicePtr<const float> weights,
                                         const MoeExpertActs& acts, DevicePtr<const float> dy,
                                         int64_t tokens, int64_t k, DevicePtr<float> dx,
                                         DevicePtr<float> dweights) {
  const int64_t E = w.num_experts(), n = tokens * k, h = w.hidden, inter = w.inter;
  Zero(dx, tokens * h);
  Zero(dweights, n);
  if (n <= 0) return;
  auto grad = [](std::span<const DevicePtr<float>> gs, int64_t e) {
    return gs.empty() ? DevicePtr<float>() : gs[e];
  };
  Scratch rows(this, n * 4), slot_weights(this, n * 4), dots(this, n * 4);
  Scratch dyp(this, n * h * 4), xp(this, n * h * 4), dxp(this, n * h * 4);
  Scratch dact(this, n * inter * 4), dgate(this, n * inter * 4), dup(this, n * inter * 4);
  cuda::LaunchSlotTokens(stream_, Raw(acts.slots), n, k, rows.as<int32_t>());
  cuda::LaunchGatherRows(stream_, Raw(weights), Raw(acts.slots), nullptr, slot_weights.as<float>(), n, 1);
  cuda::LaunchGatherRows(stream_, Raw(dy), rows.as<int32_t>(), nullptr, dyp.as<float>(), n, h);
  cuda::LaunchRowDot(stream_, dyp.as<float>(), Raw(acts.out), dots.as<float>(), n, h);
  cuda::LaunchScatterAddRows(stream_, dots.as<float>(), Raw(acts.slots), nullptr, Raw(dweights), n, 1);
  cuda::LaunchGatherRows(stream_, Raw(dy), rows.as<int32_t>(), slot_weights.as<float>(), dyp.as<float>(), n, h);
  cuda::LaunchGatherRows(stream_, Raw(x), rows.as<int32_t>(), nullptr, xp.as<float>(), n, h);
  const std::vector<int32_t> at = DownloadOffsets(acts.offsets, E);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = at[e + 1] - at[e];
    if (m == 0) continue;
    // LinearWeightsBackward: an f32 view is LinearBackward; a bf16 compute copy
    // (CausalLM::SetComputeDType) multiplies dx in bf16 as the forward did.
    LinearWeightsBackward(Wrap<const float>(dyp.as<float>() + at[e] * h), acts.act + at[e] * inter,
                   w.down[e], Wrap(dact.as<float>() + at[e] * inter), grad(g.down, e),
                   nullptr, m, inter, h, false);
  }
  cuda::LaunchSwiGluBackward(stream_, dact.as<float>(), Raw(acts.gate), Raw(acts.up), dgate.as<float>(),
                             dup.as<float>(), n * inter);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = at[e + 1] - at[e];
    if (m == 0) continue;
    const DevicePtr<const float> xe = Wrap<const float>(xp.as<float>() + at[e] * h);
    const DevicePtr<float> dxe = Wrap(dxp.as<float>() + at[e] * h);
    LinearWeightsBackward(Wrap<const float>(dgate.as<float>() + at[e] * inter), xe, w.gate[e],
                   dxe, grad(g.gate, e), nullptr, m, h, inter, false);
    LinearWeightsBackward(Wrap<const float>(dup.as<float>() + at[e] * inter), xe, w.up[e], dxe,
                   grad(g.up, e), nullptr, m, h, inter, true);
  }
  cuda::LaunchScatterAddRows(stream_, dxp.as<float>(), rows.as<int32_t>(), nullptr, Raw(dx), n, h);
}

}  // namespace

Backend& CudaBackend() {
  static CudaBackendImpl* backend = new CudaBackendImpl();  // never destroyed
  return *backend;
}

}  // namespace grpo
