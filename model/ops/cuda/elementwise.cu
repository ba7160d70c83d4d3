// The CUDA backend's elementwise, row and reduction kernels (cuda_kernels.h). Formulas follow the
// CPU kernels (model/ops/cpu/vector_kernels.cc, cpu_backend.cc, sampling.cc's AdamWStep); the
// explicit-rounding intrinsics (__fmul_rn, __fadd_rn, ...) keep nvcc from contracting products
// into fused multiply-adds where the CPU rounds twice.
#include <cuda_runtime.h>

#include <cstdint>

#include "model/ops/cuda/cuda_kernels.h"
#include "model/ops/cuda/kernel_utils.cuh"

namespace grpo::cuda {
namespace {

constexpr int kBlockRowThreads = 256;  // threads of the one-block-per-row kernels

__global__ void FillKernel(float* x, int64_t n, float value) {
  GRPO_GRID_LOOP(i, n) x[i] = value;
}

// core/float_formats.cc F32ToBf16, bit for bit.
__global__ void CastBf16Kernel(const float* src, uint16_t* dst, int64_t n) {
  GRPO_GRID_LOOP(i, n) {
    const uint32_t bits = __float_as_uint(src[i]);
    if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0) {
      dst[i] = static_cast<uint16_t>((bits >> 16) | 0x0040u);  // NaN, kept quiet
    } else {
      dst[i] = static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }
  }
}

__global__ void CountNonfiniteKernel(const float* src, int64_t n, int32_t* count) {
  int32_t mine = 0;
  GRPO_GRID_LOOP(i, n) mine += isfinite(src[i]) ? 0 : 1;
  if (mine != 0) atomicAdd(count, mine);
}

__global__ void AddKernel(const float* src, float* dst, int64_t n) {
  GRPO_GRID_LOOP(i, n) dst[i] = __fadd_rn(dst[i], src[i]);
}

__global__ void ScaleKernel(float* x, int64_t n, float c) {
  GRPO_GRID_LOOP(i, n) x[i] = __fmul_rn(x[i], c);
}

__global__ void AddBiasKernel(const float* b, float* y, int64_t rows, int64_t cols) {
  GRPO_GRID_LOOP(i, rows * cols) y[i] = __fadd_rn(y[i], b[i % cols]);
}

// One thread per column, rows in order (the CPU's summation order).
__global__ void ColumnSumKernel(const float* dy, float* db, int64_t rows, int64_t cols) {
  GRPO_GRID_LOOP(c, cols) {
    float acc = db[c];
    for (int64_t r = 0; r < rows; ++r) acc = __fadd_rn(acc, dy[r * cols + c]);
    db[c] = acc;
  }
}

__global__ void ScaleMatrixKernel(float* c, int64_t m, int64_t n, int64_t ldc, float beta) {
  GRPO_GRID_LOOP(i, m * n) {
    float* p = c + (i / n) * ldc + i % n;
    *p = beta == 0.0f ? 0.0f : __fmul_rn(*p, beta);
  }
}

// An E4M3 code as the CPU widens it (quantized_gemm.cc's Fp8Bits): the sign and the 7 magnitude
// bits placed so the float's value is the code's times 2^-120.
__device__ inline float Fp8Bits(uint32_t b) {
  return __uint_as_float(((b & 0x80u) << 24) | ((b & 0x7Fu) << 20));
}

__global__ void WidenKernel(RawWeights w, int64_t row_begin, int64_t row_end, float* out) {
  const int64_t cols = w.cols, n = (row_end - row_begin) * cols;
  const int64_t bcols = (cols + 127) / 128;
  GRPO_GRID_LOOP(i, n) {
    const int64_t r = row_begin + i / cols, c = i % cols;
    const int64_t g = w.row_begin + r;  // the row in the whole matrix
    if (w.dtype == DType::kF32) {
      out[i] = static_cast<const float*>(w.data)[g * cols + c];
    } else if (w.dtype == DType::kBF16) {
      const auto* bytes = static_cast<const unsigned char*>(w.data) + 2 * (g * cols + c);
      out[i] = __uint_as_float((static_cast<uint32_t>(bytes[0]) | (static_cast<uint32_t>(bytes[1]) << 8)) << 16);
    } else {
      const uint8_t q = static_cast<const uint8_t*>(w.data)[g * cols + c];
      const float scale = w.scales[(g / 128) * bcols + c / 128];
      out[i] = __fmul_rn(__fmul_rn(Fp8Bits(q), 0x1p120f), scale);
    }
  }
}

__global__ void EmbeddingKernel(const int32_t* ids, const float* table, float* out, int64_t rows,
                                int64_t dim) {
  GRPO_GRID_LOOP(i, rows * dim) {
    out[i] = table[static_cast<int64_t>(ids[i / dim]) * dim + i % dim];
  }
}

// dst[rows[i]] += a_i * src[i] over i in order, one thread per column: repeated rows add up in
// the CPU's order, without atomics.
__global__ void ScatterAddKernel(const float* src, const int32_t* rows, const float* scale,
                                 float* dst, int64_t n, int64_t dim) {
  GRPO_GRID_LOOP(j, dim) {
    for (int64_t i = 0; i < n; ++i) {
      float* d = dst + static_cast<int64_t>(rows[i]) * dim + j;
      const float s = src[i * dim + j];
      *d = __fadd_rn(*d, scale != nullptr ? __fmul_rn(scale[i], s) : s);
    }
  }
}

__global__ void GatherKernel(const float* src, const int32_t* rows, const float* scale,
                             float* dst, int64_t n, int64_t dim) {
  GRPO_GRID_LOOP(i, n * dim) {
    const int64_t r = i / dim;
    const float s = src[static_cast<int64_t>(rows[r]) * dim + i % dim];
    dst[i] = scale != nullptr ? __fmul_rn(scale[r], s) : s;
  }
}

__global__ void CopyRowsKernel(const float* src, int64_t src_stride, float* dst,
                               int64_t dst_stride, int64_t rows, int64_t cols, bool accumulate) {
  GRPO_GRID_LOOP(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    const float s = src[r * src_stride + c];
    float* d = dst + r * dst_stride + c;
    *d = accumulate ? __fadd_rn(*d, s) : s;
  }
}

// One block per row: sum of squares (f32 per thread, f64 across threads), then the row.
__global__ void RmsNormKernel(const float* x, const float* w, float* y, float* rstd, int64_t dim,
                              float eps) {
  __shared__ double shared[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float part = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) part = __fmaf_rn(xr[i], xr[i], part);
  const double ss = BlockSum<double>(part, shared);
  const float rs = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(static_cast<float>(ss / dim), eps)));
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    y[row * dim + i] = __fmul_rn(__fmul_rn(xr[i], rs), w[i]);
  }
  if (threadIdx.x == 0) rstd[row] = rs;
}

// dx = r dy w - x c, c = (sum_j dy_j w_j x_j) r^3 / dim: one block per row.
__global__ void RmsNormBackwardKernel(const float* dy, const float* x, const float* w,
                                      const float* rstd, float* dx, int64_t dim) {
  __shared__ double shared[32];
  const int64_t row = blockIdx.x;
  const float* dyr = dy + row * dim;
  const float* xr = x + row * dim;
  float part = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    part = __fmaf_rn(__fmul_rn(dyr[i], w[i]), xr[i], part);
  }
  const double dot = BlockSum<double>(part, shared);
  const float rs = rstd[row];
  const float c = __fdiv_rn(__fmul_rn(__fmul_rn(__fmul_rn(static_cast<float>(dot), rs), rs), rs),
                            static_cast<float>(dim));
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    dx[row * dim + i] = __fsub_rn(__fmul_rn(__fmul_rn(rs, dyr[i]), w[i]), __fmul_rn(xr[i], c));
  }
}

// dw[i] += sum over rows of dy * x * rstd, one thread per column, rows in order.
__global__ void RmsNormWeightGradKernel(const float* dy, const float* x, const float* rstd,
                                        float* dw, int64_t rows, int64_t dim) {
  GRPO_GRID_LOOP(i, dim) {
    float acc = dw[i];
    for (int64_t r = 0; r < rows; ++r) {
      acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(dy[r * dim + i], x[r * dim + i]), rstd[r]));
    }
    dw[i] = acc;
  }
}

__global__ void RopeKernel(float* x, RopeSpan span, const int32_t* positions, const float* cos,
                           const float* sin, float sign) {
  const int64_t per_row = span.heads * span.half;
  GRPO_GRID_LOOP(idx, span.rows * per_row) {
    const int64_t t = idx / per_row, h = (idx % per_row) / span.half, i = idx % span.half;
    const int64_t at = static_cast<int64_t>(positions[t]) * span.half + i;
    float* p = x + t * span.row_stride + h * span.head_stride + span.offset;
    float* a = span.layout == RopeLayout::kRotateHalf ? p + i : p + 2 * i;
    float* b = span.layout == RopeLayout::kRotateHalf ? p + i + span.half : p + 2 * i + 1;
    const float x0 = *a, x1 = *b, c = cos[at], si = sign * sin[at];
    *a = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, si));
    *b = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, si));
  }
}

__device__ inline float Sigmoid(float g) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g))); }

__global__ void SwiGluKernel(const float* gate, const float* up, float* out, int64_t n) {
  GRPO_GRID_LOOP(i, n) {
    const float g = gate[i];
    out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
  }
}

__global__ void SwiGluBackwardKernel(const float* dout, const float* gate, const float* up,
                                     float* dgate, float* dup, int64_t n) {
  GRPO_GRID_LOOP(i, n) {
    const float g = gate[i], d = dout[i], sig = Sigmoid(g);
    dup[i] = __fmul_rn(d, __fmul_rn(g, sig));
    const float dsilu = __fmul_rn(sig, __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig))));
    dgate[i] = __fmul_rn(__fmul_rn(d, up[i]), dsilu);
  }
}

// One warp per row, products summed in double.
__global__ void RowDotKernel(const float* a, const float* b, float* out, int64_t n, int64_t dim) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= n) return;
  double s = 0.0;
  for (int64_t j = lane; j < dim; j += kWarp) {
    s += static_cast<double>(a[row * dim + j]) * static_cast<double>(b[row * dim + j]);
  }
  s = WarpSum(s);
  if (lane == 0) out[row] = static_cast<float>(s);
}

// The row's max and log sum exp(x - max) (f32 per thread, f64 across), and if asked the entropy
// log_sum - sum e d / sum with d = x - max (vector_kernels.cc's LogSoftmaxStats).
struct RowStats {
  float max;
  double log_sum, entropy;
};

__device__ RowStats LogSoftmaxStats(const float* x, int64_t n, bool need_entropy,
                                    float* shared_f, double* shared_d) {
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, x[i]);
  mx = BlockMax(mx, shared_f);
  float s = 0.0f, w = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = __fsub_rn(x[i], mx), e = expf(d);
    s = __fadd_rn(s, e);
    if (need_entropy) w = __fmaf_rn(e, d, w);
  }
  const double sum = BlockSum<double>(s, shared_d);
  const double weighted = need_entropy ? BlockSum<double>(w, shared_d) : 0.0;
  RowStats st;
  st.max = mx;
  st.log_sum = log(sum);
  st.entropy = need_entropy ? st.log_sum - weighted / sum : 0.0;
  return st;
}

__global__ void LogSoftmaxTargetsKernel(const float* logits, const int32_t* targets,
                                        float* logprobs, float* entropy, int64_t vocab) {
  __shared__ float shared_f[32];
  __shared__ double shared_d[32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  const RowStats st = LogSoftmaxStats(x, vocab, entropy != nullptr, shared_f, shared_d);
  if (threadIdx.x != 0) return;
  const int32_t t = targets[r];
  if (t >= 0) logprobs[r] = static_cast<float>(x[t] - st.max - st.log_sum);
  if (entropy != nullptr) entropy[r] = static_cast<float>(st.entropy);
}

__global__ void LogSoftmaxTargetsBackwardKernel(const float* logits, const int32_t* targets,
                                                const float* weights, float* dlogits,
                                                int64_t vocab) {
  __shared__ float shared_f[32];
  __shared__ double shared_d[32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  float* d = dlogits + r * vocab;
  const int32_t t = targets[r];
  const float wt = weights[r];
  if (t < 0 || wt == 0.0f) {
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) d[i] = 0.0f;
    return;
  }
  const RowStats st = LogSoftmaxStats(x, vocab, false, shared_f, shared_d);
  const float shift = static_cast<float>(st.max + st.log_sum);
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = __fmul_rn(-wt, expf(__fsub_rn(x[i], shift)));
    d[i] = i == t ? __fadd_rn(v, wt) : v;
  }
}

// One row's divergence between p = softmax(x) and q = softmax(y) (Backend::DivergenceRows),
// summed in double over the block; every thread gets it. Terms of probability 0 count 0.
__device__ double RowDivergence(bool reverse, const float* x, const float* y, int64_t vocab,
                                double p_shift, double q_shift, double* shared_d) {
  double d = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const double lp = x[i] - p_shift, lq = y[i] - q_shift;
    const double w = exp(reverse ? lp : lq);
    if (w > 0.0) d += reverse ? w * (lp - lq) : w * (lq - lp);
  }
  return BlockSum<double>(d, shared_d);
}

__global__ void DivergenceRowsKernel(bool reverse, const float* logits, const float* teacher,
                                     float* out, int64_t vocab) {
  __shared__ float shared_f[32];
  __shared__ double shared_d[32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  const float* y = teacher + r * vocab;
  const RowStats p = LogSoftmaxStats(x, vocab, false, shared_f, shared_d);
  const RowStats q = LogSoftmaxStats(y, vocab, false, shared_f, shared_d);
  const double d = RowDivergence(reverse, x, y, vocab, p.max + p.log_sum, q.max + q.log_sum, shared_d);
  if (threadIdx.x == 0) out[r] = static_cast<float>(d);
}

__global__ void DivergenceRowsBackwardKernel(bool reverse, const float* logits,
                                             const float* teacher, const float* weights,
                                             float* dlogits, int64_t vocab) {
  __shared__ float shared_f[32];
  __shared__ double shared_d[32];
  const int64_t r = blockIdx.x;
  const double w = weights[r];
  if (w == 0.0) return;
  const float* x = logits + r * vocab;
  const float* y = teacher + r * vocab;
  float* d = dlogits + r * vocab;
  const RowStats p = LogSoftmaxStats(x, vocab, false, shared_f, shared_d);
  const RowStats q = LogSoftmaxStats(y, vocab, false, shared_f, shared_d);
  const double ps = p.max + p.log_sum, qs = q.max + q.log_sum;
  const double D = reverse ? RowDivergence(true, x, y, vocab, ps, qs, shared_d) : 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const double lp = x[i] - ps, pv = exp(lp);
    const double g = reverse ? (pv > 0.0 ? pv * (lp - (y[i] - qs) - D) : 0.0) : pv - exp(y[i] - qs);
    d[i] += static_cast<float>(w * g);
  }
}

// First pass: each block's share of sum x^2 in double; second pass: the blocks' partials in
// order.
__global__ void SumSquaresPartialKernel(const float* x, int64_t n, double* partials) {
  __shared__ double shared[32];
  double s = 0.0;
  GRPO_GRID_LOOP(i, n) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  s = BlockSum(s, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void SumPartialsKernel(const double* partials, int count, double* out) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  s = BlockSum(s, shared);
  if (threadIdx.x == 0) *out = s;
}

// sampling.cc's AdamWStep, rounding for rounding.
__global__ void AdamWKernel(float* p, const float* g, float* m, float* v, int64_t n,
                            AdamWScalars s) {
  GRPO_GRID_LOOP(j, n) {
    const float gj = g[j];
    const float pj = __fmul_rn(p[j], s.shrink);
    const float mj = static_cast<float>(__dadd_rn(static_cast<double>(__fmul_rn(m[j], s.b1)),
                                                  __dmul_rn(static_cast<double>(s.omb1), gj)));
    const float vj = static_cast<float>(
        __dadd_rn(static_cast<double>(__fmul_rn(v[j], s.b2)),
                  __dmul_rn(static_cast<double>(__fmul_rn(s.omb2, gj)), static_cast<double>(gj))));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vj), s.bc2_sqrt), s.eps);
    m[j] = mj;
    v[j] = vj;
    p[j] = __fadd_rn(pj, __fdiv_rn(__fmul_rn(s.neg_step, mj), denom));
  }
}

}  // namespace

void LaunchFill(cudaStream_t s, float* x, int64_t n, float value) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(FillKernel, GridFor(n), kThreads, 0, s, x, n, value);
}

void LaunchCastBf16(cudaStream_t s, const float* src, uint16_t* dst, int64_t n) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(CastBf16Kernel, GridFor(n), kThreads, 0, s, src, dst, n);
}

void LaunchCountNonfinite(cudaStream_t s, const float* src, int64_t n, int32_t* count) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(CountNonfiniteKernel, GridFor(n), kThreads, 0, s, src, n, count);
}

void LaunchAdd(cudaStream_t s, const float* src, float* dst, int64_t n) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(AddKernel, GridFor(n), kThreads, 0, s, src, dst, n);
}

void LaunchScale(cudaStream_t s, float* x, int64_t n, float c) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(ScaleKernel, GridFor(n), kThreads, 0, s, x, n, c);
}

void LaunchAddBias(cudaStream_t s, const float* b, float* y, int64_t rows, int64_t cols) {
  if (rows * cols <= 0) return;
  GRPO_CUDA_LAUNCH(AddBiasKernel, GridFor(rows * cols), kThreads, 0, s, b, y, rows, cols);
}

void LaunchColumnSumAccumulate(cudaStream_t s, const float* dy, float* db, int64_t rows,
                               int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  GRPO_CUDA_LAUNCH(ColumnSumKernel, GridFor(cols, 128), 128, 0, s, dy, db, rows, cols);
}

void LaunchScaleMatrix(cudaStream_t s, float* c, int64_t m, int64_t n, int64_t ldc, float beta) {
  if (m * n <= 0) return;
  GRPO_CUDA_LAUNCH(ScaleMatrixKernel, GridFor(m * n), kThreads, 0, s, c, m, n, ldc, beta);
}

void LaunchWidenWeightRows(cudaStream_t s, const RawWeights& w, int64_t row_begin, int64_t row_end,
                           float* out) {
  const int64_t n = (row_end - row_begin) * w.cols;
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(WidenKernel, GridFor(n), kThreads, 0, s, w, row_begin, row_end, out);
}

void LaunchEmbedding(cudaStream_t s, const int32_t* ids, const float* table, float* out,
                     int64_t rows, int64_t dim) {
  if (rows * dim <= 0) return;
  GRPO_CUDA_LAUNCH(EmbeddingKernel, GridFor(rows * dim), kThreads, 0, s, ids, table, out, rows,
                   dim);
}

void LaunchEmbeddingBackward(cudaStream_t s, const int32_t* ids, const float* dout, float* dtable,
                             int64_t rows, int64_t dim) {
  LaunchScatterAddRows(s, dout, ids, nullptr, dtable, rows, dim);
}

void LaunchRmsNorm(cudaStream_t s, const float* x, const float* w, float* y, float* rstd,
                   int64_t rows, int64_t dim, float eps) {
  if (rows <= 0) return;
  GRPO_CUDA_LAUNCH(RmsNormKernel, static_cast<unsigned>(rows), kBlockRowThreads, 0, s, x, w, y,
                   rstd, dim, eps);
}

void LaunchRmsNormBackward(cudaStream_t s, const float* dy, const float* x, const float* w,
                           const float* rstd, float* dx, float* dw, int64_t rows, int64_t dim) {
  if (rows <= 0) return;
  if (dx != nullptr) {
    GRPO_CUDA_LAUNCH(RmsNormBackwardKernel, static_cast<unsigned>(rows), kBlockRowThreads, 0, s,
                     dy, x, w, rstd, dx, dim);
  }
  if (dw != nullptr) {
    GRPO_CUDA_LAUNCH(RmsNormWeightGradKernel, GridFor(dim, 128), 128, 0, s, dy, x, rstd, dw, rows,
                     dim);
  }
}

void LaunchRope(cudaStream_t s, float* x, const RopeSpan& span, const int32_t* positions,
                const float* cos, const float* sin, bool inverse) {
  const int64_t n = span.rows * span.heads * span.half;
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(RopeKernel, GridFor(n), kThreads, 0, s, x, span, positions, cos, sin,
                   inverse ? -1.0f : 1.0f);
}

void LaunchSwiGlu(cudaStream_t s, const float* gate, const float* up, float* out, int64_t n) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(SwiGluKernel, GridFor(n), kThreads, 0, s, gate, up, out, n);
}

void LaunchSwiGluBackward(cudaStream_t s, const float* dout, const float* gate, const float* up,
                          float* dgate, float* dup, int64_t n) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(SwiGluBackwardKernel, GridFor(n), kThreads, 0, s, dout, gate, up, dgate, dup,
                   n);
}

void LaunchGatherRows(cudaStream_t s, const float* src, const int32_t* rows, const float* scale,
                      float* dst, int64_t n, int64_t dim) {
  if (n * dim <= 0) return;
  GRPO_CUDA_LAUNCH(GatherKernel, GridFor(n * dim), kThreads, 0, s, src, rows, scale, dst, n, dim);
}

void LaunchScatterAddRows(cudaStream_t s, const float* src, const int32_t* rows,
                          const float* scale, float* dst, int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) return;
  GRPO_CUDA_LAUNCH(ScatterAddKernel, GridFor(dim, 128), 128, 0, s, src, rows, scale, dst, n, dim);
}

void LaunchCopyRows(cudaStream_t s, const float* src, int64_t src_stride, float* dst,
                    int64_t dst_stride, int64_t rows, int64_t cols, bool accumulate) {
  if (rows * cols <= 0) return;
  GRPO_CUDA_LAUNCH(CopyRowsKernel, GridFor(rows * cols), kThreads, 0, s, src, src_stride, dst,
                   dst_stride, rows, cols, accumulate);
}

void LaunchRowDot(cudaStream_t s, const float* a, const float* b, float* out, int64_t n,
                  int64_t dim) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(RowDotKernel, GridFor(n * kWarp), kThreads, 0, s, a, b, out, n, dim);
}

void LaunchLogSoftmaxTargets(cudaStream_t s, const float* logits, const int32_t* targets,
                             float* logprobs, float* entropy, int64_t rows, int64_t vocab) {
  if (rows <= 0) return;
  GRPO_CUDA_LAUNCH(LogSoftmaxTargetsKernel, static_cast<unsigned>(rows), kBlockRowThreads, 0, s,
                   logits, targets, logprobs, entropy, vocab);
}

void LaunchLogSoftmaxTargetsBackward(cudaStream_t s, const float* logits, const int32_t* targets,
                                     const float* weights, float* dlogits, int64_t rows,
                                     int64_t vocab) {
  if (rows <= 0) return;
  GRPO_CUDA_LAUNCH(LogSoftmaxTargetsBackwardKernel, static_cast<unsigned>(rows), kBlockRowThreads,
                   0, s, logits, targets, weights, dlogits, vocab);
}

void LaunchDivergenceRows(cudaStream_t s, bool reverse, const float* logits, const float* teacher,
                          float* out, int64_t rows, int64_t vocab) {
  if (rows <= 0) return;
  GRPO_CUDA_LAUNCH(DivergenceRowsKernel, static_cast<unsigned>(rows), kBlockRowThreads, 0, s,
                   reverse, logits, teacher, out, vocab);
}

void LaunchDivergenceRowsBackward(cudaStream_t s, bool reverse, const float* logits,
                                  const float* teacher, const float* weights, float* dlogits,
                                  int64_t rows, int64_t vocab) {
  if (rows <= 0) return;
  GRPO_CUDA_LAUNCH(DivergenceRowsBackwardKernel, static_cast<unsigned>(rows), kBlockRowThreads, 0,
                   s, reverse, logits, teacher, weights, dlogits, vocab);
}

void LaunchSumSquares(cudaStream_t s, const float* x, int64_t n, double* partials, double* out) {
  GRPO_CUDA_LAUNCH(SumSquaresPartialKernel, kSumSquaresBlocks, kThreads, 0, s, x, n, partials);
  GRPO_CUDA_LAUNCH(SumPartialsKernel, 1, kThreads, 0, s, partials, kSumSquaresBlocks, out);
}

void LaunchAdamW(cudaStream_t s, float* p, const float* g, float* m, float* v, int64_t n,
                 const AdamWScalars& sc) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(AdamWKernel, GridFor(n), kThreads, 0, s, p, g, m, v, n, sc);
}

}  // namespace grpo::cuda
