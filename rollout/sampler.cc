#include "rollout/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

namespace grpo {

absl::Status ValidateSampling(const SamplingOptions& o) {
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature)) {
    return absl::InvalidArgumentError("temperature must be >= 0, got " + std::to_string(o.temperature));
  }
  if (!(o.top_p > 0.0 && o.top_p <= 1.0)) {
    return absl::InvalidArgumentError("top_p must be in (0, 1], got " + std::to_string(o.top_p));
  }
  if (o.top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0, got " + std::to_string(o.top_k));
  if (!(o.min_p >= 0.0 && o.min_p < 1.0)) {
    return absl::InvalidArgumentError("min_p must be in [0, 1), got " + std::to_string(o.min_p));
  }
  return absl::OkStatus();
}

namespace {

// log-sum-exp of scale * x over all entries.
double LogSumExp(std::span<const float> x, double scale, double* max_out) {
  double mx = -INFINITY;
  for (float v : x) mx = std::max(mx, scale * v);
  double sum = 0.0;
  for (float v : x) sum += std::exp(scale * v - mx);
  *max_out = mx;
  return mx + std::log(sum);
}

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

SampledToken SampleToken(std::span<const float> logits, const SamplingOptions& o,
                         std::mt19937_64& rng) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  double raw_max;
  const double raw_lse = LogSumExp(logits, 1.0, &raw_max);
  SampledToken out;
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
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
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
  const double u = std::generate_canonical<double, 64>(rng) * mass;
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

}  // namespace grpo
