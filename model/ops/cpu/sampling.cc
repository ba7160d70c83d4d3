#include "model/ops/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace grpo::cpu {
namespace {

// The helpers below are always inlined into the cloned loops, so D8 never crosses an ABI
// boundary; GCC warns about the baseline clone's ABI anyway.
#pragma GCC diagnostic ignored "-Wpsabi"

// Eight doubles (one AVX-512 register, two AVX2 ones); `aligned(8)` for unaligned buffers.
typedef double D8 __attribute__((vector_size(64), aligned(8)));
typedef int64_t I8 __attribute__((vector_size(64), aligned(8)));
typedef float F8 __attribute__((vector_size(32), aligned(4)));

#if defined(__x86_64__)
#define GRPO_SAMPLING_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GRPO_SAMPLING_CLONES
#endif

__attribute__((always_inline)) inline D8 SplatD(double v) { return D8{} + v; }

// exp of 8 doubles that are <= 0, -inf or NaN (every exponent SampleRow takes: the max is
// subtracted first): x = k ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, fdlibm's, so k ln2_hi
// is exact), e^r by its Taylor series to r^13 (truncation below 2^-57 relative), times 2^k put
// into the exponent bits in two halves (so results down to the subnormal range are rounded
// once, as glibc's are). Within 2 ulp of std::exp; exp(0) is exactly 1; below -745.2 (and
// -inf) 0; NaN stays NaN.
__attribute__((always_inline)) inline D8 ExpNonPositive(const D8& x) {
  const D8 big = SplatD(0x1.8p52);  // adding it rounds to an integer; its low bits hold k
  const D8 t = x * SplatD(1.4426950408889634) + big;
  const D8 k = t - big;
  D8 r = x - k * SplatD(6.93147180369123816490e-01);
  r = r - k * SplatD(1.90821492927058770002e-10);
  D8 p = SplatD(1.0 / 6227020800.0);  // 1/13!
  p = p * r + SplatD(1.0 / 479001600.0);
  p = p * r + SplatD(1.0 / 39916800.0);
  p = p * r + SplatD(1.0 / 3628800.0);
  p = p * r + SplatD(1.0 / 362880.0);
  p = p * r + SplatD(1.0 / 40320.0);
  p = p * r + SplatD(1.0 / 5040.0);
  p = p * r + SplatD(1.0 / 720.0);
  p = p * r + SplatD(1.0 / 120.0);
  p = p * r + SplatD(1.0 / 24.0);
  p = p * r + SplatD(1.0 / 6.0);
  p = p * r + SplatD(0.5);
  p = p * r + SplatD(1.0);
  p = p * r + SplatD(1.0);
  I8 ki, tb, bb;
  std::memcpy(&tb, &t, sizeof(tb));
  std::memcpy(&bb, &big, sizeof(bb));
  ki = tb - bb;  // k, exactly (|k| < 2^51)
  const I8 k1 = ki >> 1, k2 = ki - k1;
  const I8 b1 = (k1 + 1023) << 52, b2 = (k2 + 1023) << 52;
  D8 s1, s2;
  std::memcpy(&s1, &b1, sizeof(s1));
  std::memcpy(&s2, &b2, sizeof(s2));
  const D8 e = (p * s1) * s2;
  return x < SplatD(-745.2) ? D8{} : e;  // -inf too; NaN compares false and stays NaN
}

// scale * d for d = x - max(x) <= 0, with the largest entries at exactly 0 even for an infinite
// scale (a temperature so small that 1 / temperature overflows).
double Scaled(double scale, double d) { return d == 0.0 ? 0.0 : scale * d; }
__attribute__((always_inline)) inline D8 ScaledD8(double scale, const D8& d) {
  return d == SplatD(0.0) ? D8{} : SplatD(scale) * d;
}

// x[i, i + 8) as doubles; lanes past the end of x are -inf (exp 0).
__attribute__((always_inline)) inline D8 LoadD8(const float* x, int64_t n, int64_t i) {
  if (i + 8 <= n) {
    F8 v;
    std::memcpy(&v, x + i, sizeof(v));
    return __builtin_convertvector(v, D8);
  }
  D8 d = SplatD(-std::numeric_limits<double>::infinity());
  for (int64_t l = 0; i + l < n; ++l) d[l] = x[i + l];
  return d;
}

// The sum over x of exp(Scaled(scale, x[i] - shift)), shift >= max(x): 8 lane sums over the
// entries in order, then the lanes added in a fixed order, so the same for every call.
GRPO_SAMPLING_CLONES double SumExpScaled(const float* x, int64_t n, double shift, double scale) {
  D8 acc = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc += ExpNonPositive(ScaledD8(scale, LoadD8(x, n, i) - SplatD(shift)));
  if (i < n) {  // the tail: lanes past the end add 0 whatever the scale (0 * -inf is NaN)
    D8 p = ExpNonPositive(ScaledD8(scale, LoadD8(x, n, i) - SplatD(shift)));
    for (int64_t l = n - i; l < 8; ++l) p[l] = 0.0;
    acc += p;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// The largest entry of x (NaN entries skipped, as std::max over them does), -inf if none.
GRPO_SAMPLING_CLONES float MaxSkippingNaN(const float* x, int64_t n) {
  F8 m = F8{} - std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    F8 v;
    std::memcpy(&v, x + i, sizeof(v));
    m = v > m ? v : m;
  }
  float mx = -std::numeric_limits<float>::infinity();
  for (int l = 0; l < 8; ++l) mx = std::max(mx, m[l]);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

// The unfiltered inverse-CDF draw: walks the tokens in order adding p(id) = exp(Scaled(scale,
// x[id] - shift) - lse) until the sum passes u; returns that token, or, should rounding leave
// u past the last step, the last token with p > 0.
GRPO_SAMPLING_CLONES int32_t DrawUnfiltered(const float* x, int64_t n, double shift, double scale,
                                            double lse, double u) {
  double acc = 0.0;
  int32_t chosen = 0;
  for (int64_t i = 0; i < n; i += 8) {
    const D8 p = ExpNonPositive(ScaledD8(scale, LoadD8(x, n, i) - SplatD(shift)) - SplatD(lse));
    for (int l = 0; l < 8 && i + l < n; ++l) {
      if (p[l] > 0.0) chosen = static_cast<int32_t>(i + l);
      acc += p[l];
      if (u < acc) return static_cast<int32_t>(i + l);
    }
  }
  return chosen;
}

// exp(v) for one v <= 0 (or NaN), as the loops above compute it.
GRPO_SAMPLING_CLONES double ExpOne(double v) { return ExpNonPositive(SplatD(v))[0]; }

// log of the sum over all entries of exp(scale * (x - x_max)): >= 0, since an entry equal to the
// max contributes exp(0) = 1. The max is subtracted before scaling, so every exponent is <= 0 and
// no large terms cancel, whatever the scale (logits / 1e-38 would lose every digit otherwise).
double ShiftedLogSumExp(std::span<const float> x, double x_max, double scale) {
  return std::log(SumExpScaled(x.data(), static_cast<int64_t>(x.size()), x_max, scale));
}

}  // namespace

double RawLogSumExp(std::span<const float> x, double* max_out) {
  const double mx = MaxSkippingNaN(x.data(), static_cast<int64_t>(x.size()));
  const double sum = SumExpScaled(x.data(), static_cast<int64_t>(x.size()), mx, 1.0);
  *max_out = mx;
  return mx + std::log(sum);
}

SampleResult SampleRow(std::span<const float> logits, const SamplingRow& o) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  double raw_max;
  const double raw_lse = RawLogSumExp(logits, &raw_max);
  SampleResult out;
  if (o.temperature == 0.0) {
    // The first index of the max, as std::max_element gives it (a NaN at index 0 stays there;
    // other NaNs are never the max): the first entry equal to RawLogSumExp's max.
    const auto at = std::isnan(logits[0])
                        ? logits.begin()
                        : std::find(logits.begin(), logits.end(), static_cast<float>(raw_max));
    out.token = static_cast<int32_t>(at - logits.begin());
    out.raw_logprob = static_cast<float>(logits[out.token] - raw_lse);
    out.logprob = out.raw_logprob;
    return out;
  }
  // log p(id) under the temperature distribution (before the filters): <= 0 for any positive
  // temperature, computed relative to the largest logit.
  const double inv_t = 1.0 / o.temperature;
  const double t_lse = ShiftedLogSumExp(logits, raw_max, inv_t);
  auto log_p = [&](int32_t id) { return Scaled(inv_t, logits[id] - raw_max) - t_lse; };
  const bool filtered = o.top_k > 0 || o.top_p < 1.0 || o.min_p > 0.0;
  std::vector<int32_t> kept;
  if (filtered) {
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    const int64_t k = o.top_k > 0 ? std::min(o.top_k, vocab) : vocab;
    auto by_logit = [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
    order.resize(k);
    double cumulative = 0.0;
    const double p_max = ExpOne(log_p(order[0]));
    for (int32_t id : order) {
      const double p = ExpOne(log_p(id));
      if (p < o.min_p * p_max) break;  // sorted: every later token is below too
      kept.push_back(id);
      cumulative += p;
      if (cumulative >= o.top_p) break;
    }
  }
  // Mass of the kept set under the temperature distribution, then an inverse-CDF draw. Should
  // rounding leave the draw past the last step, the last token of nonzero probability is taken
  // (never one the distribution excludes).
  double mass = 0.0;
  if (filtered) {
    for (int32_t id : kept) mass += ExpOne(log_p(id));
  } else {
    mass = 1.0;
  }
  const double u = o.uniform * mass;
  int32_t chosen;
  if (filtered) {
    double acc = 0.0;
    chosen = kept.front();
    for (int32_t id : kept) {
      const double p = ExpOne(log_p(id));
      if (p > 0.0) chosen = id;
      acc += p;
      if (u < acc) break;
    }
  } else {
    chosen = DrawUnfiltered(logits.data(), vocab, raw_max, inv_t, t_lse, u);
  }
  out.token = chosen;
  out.raw_logprob = static_cast<float>(logits[chosen] - raw_lse);
  out.logprob = static_cast<float>(log_p(chosen) - std::log(mass));
  return out;
}

void AdamWStep(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  for (int64_t j = 0; j < n; ++j) {
    p[j] = p[j] * s.shrink;
    // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1): torch's vectorized add is a fused
    // multiply-add; the product of two floats is exact in double, so this rounds once too.
    m[j] = static_cast<float>(static_cast<double>(m[j] * s.b1) + static_cast<double>(s.omb1) * g[j]);
    // exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2): torch's kernel computes
    // v + (value * g) * g, which its compiler contracts into a fused multiply-add.
    v[j] = static_cast<float>(static_cast<double>(v[j] * s.b2) +
                              static_cast<double>(s.omb2 * g[j]) * static_cast<double>(g[j]));
    const float denom = std::sqrt(v[j]) / s.bc2_sqrt + s.eps;
    p[j] = p[j] + s.neg_step * m[j] / denom;
  }
}

}  // namespace grpo::cpu
