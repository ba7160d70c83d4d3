#include "model/ops/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace grpo::cpu {
namespace {

// scale * d for d = x - max(x) <= 0, with the largest entries at exactly 0 even for an infinite
// scale (a temperature so small that 1 / temperature overflows).
double Scaled(double scale, double d) { return d == 0.0 ? 0.0 : scale * d; }

// log of the sum over all entries of exp(scale * (x - x_max)): >= 0, since an entry equal to the
// max contributes exp(0) = 1. The max is subtracted before scaling, so every exponent is <= 0 and
// no large terms cancel, whatever the scale (logits / 1e-38 would lose every digit otherwise).
double ShiftedLogSumExp(std::span<const float> x, double x_max, double scale) {
  double sum = 0.0;
  for (float v : x) sum += std::exp(Scaled(scale, v - x_max));
  return std::log(sum);
}

}  // namespace

double RawLogSumExp(std::span<const float> x, double* max_out) {
  double mx = -INFINITY;
  for (float v : x) mx = std::max<double>(mx, v);
  double sum = 0.0;
  for (float v : x) sum += std::exp(v - mx);
  *max_out = mx;
  return mx + std::log(sum);
}

SampleResult SampleRow(std::span<const float> logits, const SamplingRow& o) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  double raw_max;
  const double raw_lse = RawLogSumExp(logits, &raw_max);
  SampleResult out;
  if (o.temperature == 0.0) {
    out.token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
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
    const double p_max = std::exp(log_p(order[0]));
    for (int32_t id : order) {
      const double p = std::exp(log_p(id));
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
    for (int32_t id : kept) mass += std::exp(log_p(id));
  } else {
    mass = 1.0;
  }
  const double u = o.uniform * mass;
  double acc = 0.0;
  int32_t chosen = filtered ? kept.front() : 0;
  auto step = [&](int32_t id) {
    const double p = std::exp(log_p(id));
    if (p > 0.0) chosen = id;
    acc += p;
    return u < acc;
  };
  if (filtered) {
    for (int32_t id : kept) {
      if (step(id)) break;
    }
  } else {
    for (int32_t id = 0; id < static_cast<int32_t>(vocab); ++id) {
      if (step(id)) break;
    }
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
