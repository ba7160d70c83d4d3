#include "rollout/sampler.h"

#include <cmath>
#include <string>

#include "model/ops/cpu/sampling.h"

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

// The computation is the CPU backend's sampling kernel (Backend::Sample's reference), with this
// sample's RNG giving the uniform draw; greedy decoding draws nothing.
SampledToken SampleToken(std::span<const float> logits, const SamplingOptions& o,
                         std::mt19937_64& rng) {
  SamplingRow row{.temperature = o.temperature, .top_p = o.top_p, .top_k = o.top_k, .min_p = o.min_p};
  if (o.temperature != 0.0) row.uniform = std::generate_canonical<double, 64>(rng);
  const cpu::SampleResult r = cpu::SampleRow(logits, row);
  return SampledToken{.token = r.token, .logprob = r.logprob, .raw_logprob = r.raw_logprob};
}

}  // namespace grpo
