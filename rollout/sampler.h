// Next-token sampling: temperature, top-k, top-p (nucleus), min-p, with a caller-owned RNG so
// each sample's draws depend only on its own seed.
//
// The distribution sampled from is softmax(logits / temperature) restricted to the tokens that
// survive the filters (top-k, then top-p over the temperature distribution, then min-p relative
// to the most likely token), renormalized. Temperature 0 means greedy (argmax, ties to the
// lowest id). A positive temperature, however small, is applied relative to the largest logit,
// so logprobs stay finite and <= 0 (a tiny one gives the limit: the argmax, logprob 0).
#ifndef GRPO_ROLLOUT_SAMPLER_H_
#define GRPO_ROLLOUT_SAMPLER_H_

#include <cstdint>
#include <random>
#include <span>

#include "core/status.h"

namespace grpo {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy
  double top_p = 1.0;        // (0, 1]
  int64_t top_k = 0;         // 0: no limit
  double min_p = 0.0;        // [0, 1)
};

// InvalidArgument naming the bad field.
absl::Status ValidateSampling(const SamplingOptions& options);

struct SampledToken {
  int32_t token = 0;
  // log p(token) under the distribution it was sampled from (temperature and filters applied,
  // renormalized); for greedy decoding, the raw log-probability.
  float logprob = 0.0f;
  // log softmax(logits)[token], no temperature, no filters.
  float raw_logprob = 0.0f;
};

SampledToken SampleToken(std::span<const float> logits, const SamplingOptions& options,
                         std::mt19937_64& rng);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_SAMPLER_H_
