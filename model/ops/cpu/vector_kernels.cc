#include "model/ops/cpu/vector_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#define GRPO_HAVE_AVX512_ATTENTION 1
#endif

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

typedef int32_t V8i __attribute__((vector_size(32), aligned(4)));

__attribute__((always_inline)) inline V8 Splat(float x) { return V8{} + x; }

// exp of 8 lanes: Cephes' expf (x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial in r, 2^n put
// into the exponent bits), within 2 ulp of the correctly rounded result. Below -87.34 the result
// is 0, above 88.38 it is +inf, NaN stays NaN.
__attribute__((always_inline)) inline V8 Exp(V8 x) {
  const V8 lo = Splat(-87.3365478515625f), hi = Splat(88.376258850097656f);
  const V8 xc = x < lo ? lo : (x > hi ? hi : x);
  const V8 magic = Splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const V8 n = (xc * Splat(1.44269504088896341f) + magic) - magic;
  const V8 r = (xc - n * Splat(0.693359375f)) - n * Splat(-2.12194440e-4f);
  V8 p = Splat(1.9875691500e-4f);
  p = p * r + Splat(1.3981999507e-3f);
  p = p * r + Splat(8.3334519073e-3f);
  p = p * r + Splat(4.1665795894e-2f);
  p = p * r + Splat(1.6666665459e-1f);
  p = p * r + Splat(5.0000001201e-1f);
  const V8 y = p * (r * r) + r + Splat(1.0f);
  const V8i bits = (__builtin_convertvector(n, V8i) + 127) << 23;
  V8 pow2n;
  __builtin_memcpy(&pow2n, &bits, sizeof(pow2n));
  const V8 e = y * pow2n;
  return x < lo ? V8{} : (x > hi ? Splat(std::numeric_limits<float>::infinity()) : e);
}

// exp of one float, the same way (tails of the loops below, so every element is computed alike).
__attribute__((always_inline)) inline float Exp1(float x) { return Exp(Splat(x))[0]; }

__attribute__((always_inline)) inline float MaxOf(const float* x, int64_t n) {
  V8 m8 = Splat(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 v = Load(x + i);
    m8 = v > m8 ? v : m8;
  }
  float mx = -std::numeric_limits<float>::infinity();
  for (int l = 0; l < 8; ++l) mx = std::max(mx, m8[l]);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

#define GRPO_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))

// Inlined into the runtime-dispatched kernels below, so it is compiled for each of their targets.
// a . b over the first n / 8 * 8 entries, before the lanes are summed: two accumulators over
// 16 entries at a time, then one more step of 8, added lane by lane.
__attribute__((always_inline)) inline V8 DotLanes(const float* a, const float* b, int64_t n) {
  V8 acc0 = {}, acc1 = {};
  int64_t i = 0;
#pragma GCC unroll 4
  for (; i + 16 <= n; i += 16) {
    acc0 += Load(a + i) * Load(b + i);
    acc1 += Load(a + i + 8) * Load(b + i + 8);
  }
  for (; i + 8 <= n; i += 8) acc0 += Load(a + i) * Load(b + i);
  return acc0 + acc1;
}

// a . b: DotLanes' lanes summed (Sum), then the tail entries in order.
__attribute__((always_inline)) inline float DotInline(const float* a, const float* b, int64_t n) {
  float s = Sum(DotLanes(a, b, n));
  for (int64_t i = n / 8 * 8; i < n; ++i) s += a[i] * b[i];
  return s;
}

// x[0:n] = exp(x - shift); returns the sum of the new values.
__attribute__((always_inline)) inline float ExpShifted(float* x, int64_t n, float shift) {
  const V8 m = Splat(shift);
  V8 s8 = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 e = Exp(Load(x + i) - m);
    Store(x + i, e);
    s8 += e;
  }
  float sum = Sum(s8);
  for (; i < n; ++i) sum += (x[i] = Exp1(x[i] - shift));
  return sum;
}

// x[0:n] = exp(x - mx) / sum_j exp(x_j - mx).
__attribute__((always_inline)) inline void ExpNormalize(float* x, int64_t n, float mx) {
  const float sum = ExpShifted(x, n, mx);
  const V8 inv = Splat(1.0f / sum);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) Store(x + i, Load(x + i) * inv);
  for (; i < n; ++i) x[i] *= inv[0];
}

GRPO_VECTOR_CLONES void SoftmaxImpl(float* x, int64_t n) { ExpNormalize(x, n, MaxOf(x, n)); }

GRPO_VECTOR_CLONES float RowMaxImpl(const float* x, int64_t n) { return MaxOf(x, n); }

GRPO_VECTOR_CLONES float ExpShiftedRowImpl(float* x, int64_t n, float shift) { return ExpShifted(x, n, shift); }

GRPO_VECTOR_CLONES void SoftmaxGradRowImpl(float* s, float* dp, int64_t n, float lse, float d,
                                           float scale) {
  const V8 l = Splat(lse), dd = Splat(d), sc = Splat(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 p = Exp(Load(s + i) - l);
    Store(s + i, p);
    Store(dp + i, p * (Load(dp + i) - dd) * sc);
  }
  for (; i < n; ++i) {
    const float p = Exp1(s[i] - lse);
    s[i] = p;
    dp[i] = p * (dp[i] - d) * scale;
  }
}

GRPO_VECTOR_CLONES LogSoftmaxStats LogSoftmaxStatsImpl(const float* x, int64_t n,
                                                       bool need_entropy) {
  LogSoftmaxStats st;
  st.max = MaxOf(x, n);
  const V8 m = Splat(st.max);
  // f32 lanes over chunks of 512, each chunk's lanes added into doubles.
  double sum = 0.0, weighted = 0.0;
  constexpr int64_t kChunk = 512;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = std::min(n, c0 + kChunk);
    V8 s8 = {}, w8 = {};
    int64_t i = c0;
    for (; i + 8 <= c1; i += 8) {
      const V8 d = Load(x + i) - m, e = Exp(d);
      s8 += e;
      if (need_entropy) w8 += e * d;
    }
    float s = Sum(s8), w = Sum(w8);
    for (; i < c1; ++i) {
      const float d = x[i] - st.max, e = Exp1(d);
      s += e;
      w += e * d;
    }
    sum += s;
    weighted += w;
  }
  st.log_sum = std::log(sum);
  st.entropy = need_entropy ? st.log_sum - weighted / sum : 0.0;
  return st;
}

GRPO_VECTOR_CLONES void ScaledExpImpl(const float* x, int64_t n, float shift, float scale,
                                      float* out) {
  const V8 sh = Splat(shift), sc = Splat(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) Store(out + i, sc * Exp(Load(x + i) - sh));
  for (; i < n; ++i) out[i] = scale * Exp1(x[i] - shift);
}

GRPO_VECTOR_CLONES void SwiGluImpl(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 g = Load(gate + i);
    Store(out + i, g / (Splat(1.0f) + Exp(-g)) * Load(up + i));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + Exp1(-gate[i])) * up[i];
}

GRPO_VECTOR_CLONES void SwiGluBackwardImpl(const float* dout, const float* gate, const float* up,
                                           float* dgate, float* dup, int64_t n) {
  int64_t i = 0;
  const V8 one = Splat(1.0f);
  for (; i + 8 <= n; i += 8) {
    const V8 g = Load(gate + i), d = Load(dout + i);
    const V8 sig = one / (one + Exp(-g));
    Store(dup + i, d * (g * sig));
    Store(dgate + i, d * Load(up + i) * sig * (one + g * (one - sig)));
  }
  for (; i < n; ++i) {
    const float g = gate[i], sig = 1.0f / (1.0f + Exp1(-g));
    dup[i] = dout[i] * (g * sig);
    dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
  }
}

// sum_i a_i * b_i * c_i (c may be null: 1), f32 lanes within chunks of 256, f64 across them.
__attribute__((always_inline)) inline double Dot3(const float* a, const float* b, const float* c,
                                                  int64_t n) {
  double total = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += 256) {
    const int64_t c1 = std::min(n, c0 + 256);
    V8 acc = {};
    int64_t i = c0;
    if (c != nullptr) {
      for (; i + 8 <= c1; i += 8) acc += Load(a + i) * Load(b + i) * Load(c + i);
    } else {
      for (; i + 8 <= c1; i += 8) acc += Load(a + i) * Load(b + i);
    }
    float t = Sum(acc);
    for (; i < c1; ++i) t += a[i] * b[i] * (c != nullptr ? c[i] : 1.0f);
    total += t;
  }
  return total;
}

GRPO_VECTOR_CLONES float RmsNormImpl(const float* x, const float* w, float* y, int64_t dim,
                                     float eps) {
  const float rs =
      1.0f / std::sqrt(static_cast<float>(Dot3(x, x, nullptr, dim) / dim) + eps);
  const V8 r8 = Splat(rs);
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) Store(y + i, Load(x + i) * r8 * Load(w + i));
  for (; i < dim; ++i) y[i] = x[i] * rs * w[i];
  return rs;
}

GRPO_VECTOR_CLONES void RmsNormBackwardImpl(const float* dy, const float* x, const float* w,
                                            float rs, float* dx, int64_t dim) {
  const float c =
      static_cast<float>(Dot3(dy, w, x, dim)) * rs * rs * rs / static_cast<float>(dim);
  const V8 r8 = Splat(rs), c8 = Splat(c);
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) Store(dx + i, r8 * Load(dy + i) * Load(w + i) - Load(x + i) * c8);
  for (; i < dim; ++i) dx[i] = rs * dy[i] * w[i] - x[i] * c;
}

// The lanes of 8 vectors summed per vector, as Sum sums one: lane j of the result is
// ((v[j][0] + v[j][1]) + (v[j][2] + v[j][3])) + ((v[j][4] + v[j][5]) + (v[j][6] + v[j][7])),
// the same additions in the same order, by three levels of pairwise shuffles.
__attribute__((always_inline)) inline V8 PairSums(const V8& a, const V8& b) {
#if defined(__clang__)
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14) +
         __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
#else
  return __builtin_shuffle(a, b, V8i{0, 2, 4, 6, 8, 10, 12, 14}) +
         __builtin_shuffle(a, b, V8i{1, 3, 5, 7, 9, 11, 13, 15});
#endif
}
__attribute__((always_inline)) inline V8 Sum8(const V8* v) {
  const V8 ab = PairSums(v[0], v[1]), cd = PairSums(v[2], v[3]);
  const V8 ef = PairSums(v[4], v[5]), gh = PairSums(v[6], v[7]);
  return PairSums(PairSums(ab, cd), PairSums(ef, gh));
}

// Keys per block of the output pass: their value rows (64 to 512 floats each) stay in L1 while
// every query of the group adds them.
constexpr int64_t kValueBlock = 64;

// AttendQueries for g queries; each query's arithmetic is AttendQuery's alone (see the header).
GRPO_VECTOR_CLONES void AttendGroupImpl(const float* q, int64_t q_stride, int64_t g,
                                        const float* const* krows, int64_t k_offset,
                                        const float* const* vrows, int64_t v_offset, int64_t len,
                                        int64_t dqk, int64_t dv, float scale, float* scores,
                                        float* out, int64_t out_stride, float* lse) {
  const int64_t vec = dqk / 8 * 8;
  // Scores, 8 keys at a time (each key row read once for all g queries): the lanes of each
  // key's products summed as Sum would, then the tail columns, then the scale.
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    for (int64_t i = 0; i < g; ++i) {
      const float* qi = q + i * q_stride;
      float* si = scores + i * len;
      V8 lanes[8];
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) lanes[t] = DotLanes(qi, krows[j + t] + k_offset, dqk);
      V8 dots = Sum8(lanes);
      if (vec == dqk) {
        Store(si + j, dots * scale);
        continue;
      }
      for (int t = 0; t < 8; ++t) {
        float s = dots[t];
        const float* k = krows[j + t] + k_offset;
        for (int64_t d = vec; d < dqk; ++d) s += qi[d] * k[d];
        si[j + t] = s * scale;
      }
    }
  }
  for (; j < len; ++j) {
    for (int64_t i = 0; i < g; ++i) {
      scores[i * len + j] = DotInline(q + i * q_stride, krows[j] + k_offset, dqk) * scale;
    }
  }
  for (int64_t i = 0; i < g; ++i) {
    float* si = scores + i * len;
    const float mx = MaxOf(si, len);
    const float sum = ExpShifted(si, len, mx);
    const V8 inv = Splat(1.0f / sum);
    int64_t t = 0;
    for (; t + 8 <= len; t += 8) Store(si + t, Load(si + t) * inv);
    for (; t < len; ++t) si[t] *= inv[0];
    if (lse != nullptr) lse[i] = mx + std::log(sum);
  }
  // out = sum over keys in order of p * v, per column; keys in blocks (each block's value rows
  // read once for all g queries), the running sums kept in out between blocks.
  for (int64_t j0 = 0; j0 < len; j0 += kValueBlock) {
    const int64_t j1 = std::min(len, j0 + kValueBlock);
    for (int64_t i = 0; i < g; ++i) {
      const float* pi = scores + i * len;
      float* oi = out + i * out_stride;
      const bool first = j0 == 0;  // (no lambda here: it would be compiled without the clone's ISA)
      int64_t d = 0;
      for (; d + 64 <= dv; d += 64) {
        V8 o[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) o[c] = first ? V8{} : Load(oi + d + 8 * c);
        for (int64_t t = j0; t < j1; ++t) {
          const float* v = vrows[t] + v_offset + d;
          const float p = pi[t];
#pragma GCC unroll 8
          for (int c = 0; c < 8; ++c) o[c] += p * Load(v + 8 * c);
        }
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) Store(oi + d + 8 * c, o[c]);
      }
      for (; d + 8 <= dv; d += 8) {
        V8 o0 = first ? V8{} : Load(oi + d);
        for (int64_t t = j0; t < j1; ++t) o0 += pi[t] * Load(vrows[t] + v_offset + d);
        Store(oi + d, o0);
      }
      for (; d < dv; ++d) {
        float o = first ? 0.0f : oi[d];
        for (int64_t t = j0; t < j1; ++t) o += pi[t] * vrows[t][v_offset + d];
        oi[d] = o;
      }
    }
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

#if defined(GRPO_HAVE_AVX512_ATTENTION)
#define GRPO_AVX512_ATTENTION __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))

// Scores of one query against 16 transposed keys (block of kt): what AttendGroupImpl's x86-64-v3
// clone computes per key, lane for lane. There, DotLanes keeps two 8-lane FMA chains over the
// dimensions (acc0 over d = 16i + l, acc1 over d = 16i + 8 + l, for i in order), adds them, and
// the 8 lanes are summed as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). Here chain
// e = 8h + l of those 16 runs in the 16 keys' lanes (the same FMAs in the same order), and the
// lane sums are the same additions, key by key.
GRPO_AVX512_ATTENTION __attribute__((always_inline)) inline __m512 ScoreBlock16(
    const float* q, const float* block, int64_t dqk) {
  __m512 acc[16];
#pragma GCC unroll 16
  for (int e = 0; e < 16; ++e) acc[e] = _mm512_setzero_ps();
  for (int64_t i = 0; i < dqk; i += 16) {
    const float* rows = block + i * 16;
#pragma GCC unroll 16
    for (int e = 0; e < 16; ++e) {
      acc[e] = _mm512_fmadd_ps(_mm512_set1_ps(q[i + e]), _mm512_load_ps(rows + 16 * e), acc[e]);
    }
  }
  __m512 lane[8];
#pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) lane[l] = _mm512_add_ps(acc[l], acc[8 + l]);
  return _mm512_add_ps(
      _mm512_add_ps(_mm512_add_ps(lane[0], lane[1]), _mm512_add_ps(lane[2], lane[3])),
      _mm512_add_ps(_mm512_add_ps(lane[4], lane[5]), _mm512_add_ps(lane[6], lane[7])));
}

// out[i][d0 + 16c ...] = sum over keys t in order of p_i[t] * v_t, for NQ queries and NC groups
// of 16 columns: AttendGroupImpl's FMA chain per column (from 0, keys in order), each value row
// loaded once for the NQ queries.
template <int NQ, int NC>
GRPO_AVX512_ATTENTION __attribute__((always_inline)) inline void AddValues(
    const float* p, int64_t len, const float* const* vrows, int64_t v_offset, float* out,
    int64_t out_stride) {
  __m512 o[NQ][NC];
#pragma GCC unroll 4
  for (int i = 0; i < NQ; ++i) {
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) o[i][c] = _mm512_setzero_ps();
  }
  for (int64_t t = 0; t < len; ++t) {
    const float* v = vrows[t] + v_offset;
    __m512 vv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) vv[c] = _mm512_loadu_ps(v + 16 * c);
#pragma GCC unroll 4
    for (int i = 0; i < NQ; ++i) {
      const __m512 pi = _mm512_set1_ps(p[i * len + t]);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) o[i][c] = _mm512_fmadd_ps(pi, vv[c], o[i][c]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < NQ; ++i) {
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + i * out_stride + 16 * c, o[i][c]);
  }
}

template <int NQ>
GRPO_AVX512_ATTENTION void AddValuesColumns(const float* p, int64_t len, const float* const* vrows,
                                            int64_t v_offset, int64_t dv, float* out,
                                            int64_t out_stride) {
  for (int64_t d = 0; d < dv; d += 64) {
    switch (std::min<int64_t>(4, (dv - d) / 16)) {
      case 1: AddValues<NQ, 1>(p, len, vrows, v_offset + d, out + d, out_stride); break;
      case 2: AddValues<NQ, 2>(p, len, vrows, v_offset + d, out + d, out_stride); break;
      case 3: AddValues<NQ, 3>(p, len, vrows, v_offset + d, out + d, out_stride); break;
      default: AddValues<NQ, 4>(p, len, vrows, v_offset + d, out + d, out_stride); break;
    }
  }
}

GRPO_AVX512_ATTENTION void AttendTransposedImpl(const float* q, int64_t q_stride, int64_t count,
                                                const float* kt, const float* const* vrows,
                                                int64_t v_offset, int64_t len, int64_t dqk,
                                                int64_t dv, float scale, float* scores,
                                                float* out, int64_t out_stride, float* lse) {
  const __m512 scale16 = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < count; ++i) {
    const float* qi = q + i * q_stride;
    float* si = scores + i * len;
    for (int64_t j = 0; j < len; j += 16) {
      const __m512 s = _mm512_mul_ps(ScoreBlock16(qi, kt + j * dqk, dqk), scale16);
      const int64_t valid = std::min<int64_t>(16, len - j);
      _mm512_mask_storeu_ps(si + j, static_cast<__mmask16>((1u << valid) - 1), s);
    }
  }
  // The softmax by the same row kernels AttendGroupImpl inlines (its clone for this CPU).
  for (int64_t i = 0; i < count; ++i) {
    float* si = scores + i * len;
    const float mx = RowMaxImpl(si, len);
    const float sum = ExpShiftedRowImpl(si, len, mx);
    const float inv = 1.0f / sum;
    for (int64_t t = 0; t < len; ++t) si[t] *= inv;
    if (lse != nullptr) lse[i] = mx + std::log(sum);
  }
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    AddValuesColumns<4>(scores + i * len, len, vrows, v_offset, dv, out + i * out_stride, out_stride);
  }
  switch (count - i) {
    case 1: AddValuesColumns<1>(scores + i * len, len, vrows, v_offset, dv, out + i * out_stride, out_stride); break;
    case 2: AddValuesColumns<2>(scores + i * len, len, vrows, v_offset, dv, out + i * out_stride, out_stride); break;
    case 3: AddValuesColumns<3>(scores + i * len, len, vrows, v_offset, dv, out + i * out_stride, out_stride); break;
    default: break;
  }
}

bool Avx512Attention() {
  static const bool available = [] {
    __builtin_cpu_init();
#if defined(__clang__)
    // Clang has no x86-64-v3 test for __builtin_cpu_supports: its builds keep to AttendQueries.
    return false;
#else
    // x86-64-v3 as well: the level AttendGroupImpl's FMA clone is chosen by (GCC's resolver
    // tests that one flag), so that both paths compute with the same fused multiply-adds.
    return __builtin_cpu_supports("x86-64-v3") && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  }();
  return available;
}
#endif  // GRPO_HAVE_AVX512_ATTENTION

}  // namespace

bool TransposedKeysAvailable(int64_t dqk, int64_t dv) {
#if defined(GRPO_HAVE_AVX512_ATTENTION)
  return Avx512Attention() && dqk > 0 && dv > 0 && dqk % 16 == 0 && dv % 16 == 0;
#else
  (void)dqk, (void)dv;
  return false;
#endif
}

int64_t TransposedKeysFloats(int64_t len, int64_t dqk) { return (len + 15) / 16 * 16 * dqk; }

void TransposeKeys(const float* const* krows, int64_t k_offset, int64_t len, int64_t dqk,
                   float* kt) {
  const int64_t padded = (len + 15) / 16 * 16;
  for (int64_t j0 = 0; j0 < padded; j0 += 16) {
    float* block = kt + j0 * dqk;
    for (int64_t j = j0; j < j0 + 16; ++j) {
      const float* k = j < len ? krows[j] + k_offset : nullptr;
      for (int64_t d = 0; d < dqk; ++d) block[d * 16 + (j - j0)] = k != nullptr ? k[d] : 0.0f;
    }
  }
}

void AttendQueriesTransposed(const float* q, int64_t q_stride, int64_t count, const float* kt,
                             const float* const* vrows, int64_t v_offset, int64_t len, int64_t dqk,
                             int64_t dv, float scale, float* scores, float* out,
                             int64_t out_stride, float* lse) {
#if defined(GRPO_HAVE_AVX512_ATTENTION)
  AttendTransposedImpl(q, q_stride, count, kt, vrows, v_offset, len, dqk, dv, scale, scores, out,
                       out_stride, lse);
#else
  (void)q, (void)q_stride, (void)count, (void)kt, (void)vrows, (void)v_offset, (void)len;
  (void)dqk, (void)dv, (void)scale, (void)scores, (void)out, (void)out_stride, (void)lse;
  std::abort();  // TransposedKeysAvailable is false here
#endif
}

void LinearSmallM(const float* x, const float* w, float* y, int64_t m, int64_t k, int64_t n,
                  int64_t ldy) {
  LinearSmallMImpl(x, w, y, m, k, n, ldy);
}

void AttendQuery(const float* q, const float* const* krows, int64_t k_offset,
                 const float* const* vrows, int64_t v_offset, int64_t len, int64_t dqk, int64_t dv,
                 float scale, float* scores, float* out, float* lse) {
  AttendGroupImpl(q, dqk, 1, krows, k_offset, vrows, v_offset, len, dqk, dv, scale, scores, out,
                  dv, lse);
}

void AttendQueries(const float* q, int64_t q_stride, int64_t count, const float* const* krows,
                   int64_t k_offset, const float* const* vrows, int64_t v_offset, int64_t len,
                   int64_t dqk, int64_t dv, float scale, float* scores, float* out,
                   int64_t out_stride, float* lse) {
  AttendGroupImpl(q, q_stride, count, krows, k_offset, vrows, v_offset, len, dqk, dv, scale,
                  scores, out, out_stride, lse);
}

void Softmax(float* x, int64_t n) { SoftmaxImpl(x, n); }

float RowMax(const float* x, int64_t n) { return RowMaxImpl(x, n); }

float ExpShiftedRow(float* x, int64_t n, float shift) { return ExpShiftedRowImpl(x, n, shift); }

void SoftmaxGradRow(float* s, float* dp, int64_t n, float lse, float d, float scale) {
  SoftmaxGradRowImpl(s, dp, n, lse, d, scale);
}

LogSoftmaxStats LogSoftmaxRow(const float* x, int64_t n, bool need_entropy) {
  return LogSoftmaxStatsImpl(x, n, need_entropy);
}

void ScaledExp(const float* x, int64_t n, float shift, float scale, float* out) {
  ScaledExpImpl(x, n, shift, scale, out);
}

void SwiGlu(const float* gate, const float* up, float* out, int64_t n) {
  SwiGluImpl(gate, up, out, n);
}

void SwiGluBackward(const float* dout, const float* gate, const float* up, float* dgate,
                    float* dup, int64_t n) {
  SwiGluBackwardImpl(dout, gate, up, dgate, dup, n);
}

float RmsNormRow(const float* x, const float* w, float* y, int64_t dim, float eps) {
  return RmsNormImpl(x, w, y, dim, eps);
}

void RmsNormRowBackward(const float* dy, const float* x, const float* w, float rstd, float* dx,
                        int64_t dim) {
  RmsNormBackwardImpl(dy, x, w, rstd, dx, dim);
}

}  // namespace grpo::cpu
