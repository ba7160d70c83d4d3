#include "model/ops/cpu/vector_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace grpo::cpu {
namespace {

// The helpers below are always inlined into the kernels, so passing V8 by value never crosses
// an ABI boundary; GCC warns about the baseline clone's ABI anyway.
#pragma GCC diagnostic ignored "-Wpsabi"

// Eight floats; `aligned(4)` makes loads and stores through it unaligned-safe.
typedef float V8 __attribute__((vector_size(32), aligned(4)));

__attribute__((always_inline)) inline V8 Load(const float* p) { return *reinterpret_cast<const V8*>(p); }
__attribute__((always_inline)) inline void Store(float* p, const V8& v) { *reinterpret_cast<V8*>(p) = v; }
__attribute__((always_inline)) inline float Sum(const V8& v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

#define GRPO_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))

// Inlined into the runtime-dispatched kernels below, so it is compiled for each of their targets.
__attribute__((always_inline)) inline float DotInline(const float* a, const float* b, int64_t n) {
  V8 acc0 = {}, acc1 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 += Load(a + i) * Load(b + i);
    acc1 += Load(a + i + 8) * Load(b + i + 8);
  }
  for (; i + 8 <= n; i += 8) acc0 += Load(a + i) * Load(b + i);
  float s = Sum(acc0 + acc1);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

GRPO_VECTOR_CLONES void AttendImpl(const float* q, const float* const* rows, int64_t len,
                                   int64_t k_offset, int64_t v_offset, int64_t dqk, int64_t dv,
                                   float scale, float* scores, float* out) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < len; ++j) {
    scores[j] = DotInline(q, rows[j] + k_offset, dqk) * scale;
    mx = std::max(mx, scores[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < len; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < len; ++j) scores[j] *= inv;
  // out in column blocks of 32 held in registers over all rows.
  int64_t d = 0;
  for (; d + 32 <= dv; d += 32) {
    V8 o0 = {}, o1 = {}, o2 = {}, o3 = {};
    for (int64_t j = 0; j < len; ++j) {
      const float* v = rows[j] + v_offset + d;
      const float p = scores[j];
      o0 += p * Load(v);
      o1 += p * Load(v + 8);
      o2 += p * Load(v + 16);
      o3 += p * Load(v + 24);
    }
    Store(out + d, o0);
    Store(out + d + 8, o1);
    Store(out + d + 16, o2);
    Store(out + d + 24, o3);
  }
  for (; d + 8 <= dv; d += 8) {
    V8 o0 = {};
    for (int64_t j = 0; j < len; ++j) o0 += scores[j] * Load(rows[j] + v_offset + d);
    Store(out + d, o0);
  }
  for (; d < dv; ++d) {
    float o = 0.0f;
    for (int64_t j = 0; j < len; ++j) o += scores[j] * rows[j][v_offset + d];
    out[d] = o;
  }
}

// Rows [0, M) of x against weight rows [c, c + 4): 4*M accumulators.
template <int M>
__attribute__((always_inline)) inline void Linear4Cols(const float* x, const float* w, float* y,
                                                       int64_t k, int64_t ldy, int64_t c) {
  V8 acc[M][4] = {};
  const float* w0 = w + c * k;
  int64_t d = 0;
  for (; d + 8 <= k; d += 8) {
    const V8 a = Load(w0 + d), b = Load(w0 + k + d), e = Load(w0 + 2 * k + d),
             f = Load(w0 + 3 * k + d);
    for (int i = 0; i < M; ++i) {
      const V8 xv = Load(x + i * k + d);
      acc[i][0] += xv * a;
      acc[i][1] += xv * b;
      acc[i][2] += xv * e;
      acc[i][3] += xv * f;
    }
  }
  for (int i = 0; i < M; ++i) {
    for (int q = 0; q < 4; ++q) {
      float s = Sum(acc[i][q]);
      for (int64_t t = d; t < k; ++t) s += x[i * k + t] * w0[q * k + t];
      y[i * ldy + c + q] = s;
    }
  }
}

template <int M>
__attribute__((always_inline)) inline void Linear1Col(const float* x, const float* w, float* y,
                                                      int64_t k, int64_t ldy, int64_t c) {
  V8 acc[M] = {};
  const float* w0 = w + c * k;
  int64_t d = 0;
  for (; d + 8 <= k; d += 8) {
    const V8 a = Load(w0 + d);
    for (int i = 0; i < M; ++i) acc[i] += Load(x + i * k + d) * a;
  }
  for (int i = 0; i < M; ++i) {
    float s = Sum(acc[i]);
    for (int64_t t = d; t < k; ++t) s += x[i * k + t] * w0[t];
    y[i * ldy + c] = s;
  }
}

template <int M>
__attribute__((always_inline)) inline void LinearRows(const float* x, const float* w, float* y,
                                                      int64_t k, int64_t n, int64_t ldy) {
  int64_t c = 0;
  for (; c + 4 <= n; c += 4) Linear4Cols<M>(x, w, y, k, ldy, c);
  for (; c < n; ++c) Linear1Col<M>(x, w, y, k, ldy, c);
}

GRPO_VECTOR_CLONES void LinearSmallMImpl(const float* x, const float* w, float* y, int64_t m,
                                         int64_t k, int64_t n, int64_t ldy) {
  // Blocks of up to 3 rows of x (12 accumulators + 4 weight vectors fit in 16 registers).
  for (int64_t i = 0; i < m; i += 3) {
    switch (std::min<int64_t>(3, m - i)) {
      case 1: LinearRows<1>(x + i * k, w, y + i * ldy, k, n, ldy); break;
      case 2: LinearRows<2>(x + i * k, w, y + i * ldy, k, n, ldy); break;
      default: LinearRows<3>(x + i * k, w, y + i * ldy, k, n, ldy); break;
    }
  }
}

}  // namespace

void LinearSmallM(const float* x, const float* w, float* y, int64_t m, int64_t k, int64_t n,
                  int64_t ldy) {
  LinearSmallMImpl(x, w, y, m, k, n, ldy);
}

void AttendCachedQuery(const float* q, const float* const* rows, int64_t len, int64_t k_offset,
                       int64_t v_offset, int64_t dqk, int64_t dv, float scale, float* scores,
                       float* out) {
  AttendImpl(q, rows, len, k_offset, v_offset, dqk, dv, scale, scores, out);
}

}  // namespace grpo::cpu
