#include "rollout/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

namespace grpo {

Status ValidateSampling(const SamplingOptions& o) {
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature)) {
    return Status::InvalidArgument("temperature must be >= 0, got " + std::to_string(o.temperature));
  }
  if (!(o.top_p > 0.0 && o.top_p <= 1.0)) {
    return Status::InvalidArgument("top_p must be in (0, 1], got " + std::to_string(o.top_p));
  }
  if (o.top_k < 0) return Status::InvalidArgument("top_k must be >= 0, got " + std::to_string(o.top_k));
  if (!(o.min_p >= 0.0 && o.min_p < 1.0)) {
    return Status::InvalidArgument("min_p must be in [0, 1), got " + std::to_string(o.min_p));
  }
  return Status::Ok();
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
  const double inv_t = 1.0 / o.temperature;
  double t_max;
  const double t_lse = LogSumExp(logits, inv_t, &t_max);
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
    const double p_max = std::exp(inv_t * logits[order[0]] - t_lse);
    for (int32_t id : order) {
      const double p = std::exp(inv_t * logits[id] - t_lse);
      if (p < o.min_p * p_max) break;  // sorted: every later token is below too
      kept.push_back(id);
      cumulative += p;
      if (cumulative >= o.top_p) break;
    }
  }
  // Mass of the kept set under the temperature distribution, then an inverse-CDF draw.
  double mass = 0.0;
  if (filtered) {
    for (int32_t id : kept) mass += std::exp(inv_t * logits[id] - t_lse);
  } else {
    mass = 1.0;
  }
  const double u = std::generate_canonical<double, 64>(rng) * mass;
  double acc = 0.0;
  int32_t chosen = filtered ? kept.back() : static_cast<int32_t>(vocab - 1);
  if (filtered) {
    for (int32_t id : kept) {
      acc += std::exp(inv_t * logits[id] - t_lse);
      if (u < acc) {
        chosen = id;
        break;
      }
    }
  } else {
    for (int64_t id = 0; id < vocab; ++id) {
      acc += std::exp(inv_t * logits[id] - t_lse);
      if (u < acc) {
        chosen = static_cast<int32_t>(id);
        break;
      }
    }
  }
  out.token = chosen;
  out.raw_logprob = static_cast<float>(logits[chosen] - raw_lse);
  out.logprob = static_cast<float>(inv_t * logits[chosen] - t_lse - std::log(mass));
  return out;
}

}  // namespace grpo
