// Generation of a group of G samples for one prompt on a CausalLM: the prompt is prefilled once
// into a paged KV cache, the other samples fork its blocks (shared, copy-on-write), then all
// samples decode together, one token each per step, until a stop token or max_new_tokens.
//
// This is the single-group path behind `grpo generate` (one group at a time, its own block
// pool, no continuous batching across prompts, no preemption); the rollout engine of issue #7
// schedules many groups over one shared pool.
//
// Sample i of a group draws from its own RNG seeded by (seed, i), so a sample does not depend on
// how many other samples are generated with it.
#ifndef GRPO_ROLLOUT_GROUP_GENERATOR_H_
#define GRPO_ROLLOUT_GROUP_GENERATOR_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/causal_lm.h"
#include "rollout/sampler.h"

namespace grpo {

struct GenerationOptions {
  SamplingOptions sampling;
  int64_t n = 1;                      // samples per prompt (G)
  int64_t max_new_tokens = 256;
  uint64_t seed = 0;
  std::vector<int32_t> stop_tokens;   // generation ends after emitting one of these
};

struct GeneratedSample {
  std::vector<int32_t> tokens;        // completion only (a stop token is included)
  std::vector<float> logprobs;        // per token, see SampledToken::logprob
  std::vector<float> raw_logprobs;    // per token, see SampledToken::raw_logprob
  std::string finish_reason;          // "stop" or "length"
};

// InvalidArgument for an empty prompt, bad options, or a prompt + max_new_tokens beyond the
// model's max_position_embeddings.
Result<std::vector<GeneratedSample>> GenerateGroup(CausalLM& model, std::span<const int32_t> prompt,
                                                   const GenerationOptions& options);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_GROUP_GENERATOR_H_
