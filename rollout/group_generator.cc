#include "rollout/group_generator.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "rollout/paged_kv_cache.h"

namespace grpo {
namespace {

constexpr int64_t kGenerationBlockSize = 16;

}  // namespace

Result<std::vector<GeneratedSample>> GenerateGroup(CausalLM& model, std::span<const int32_t> prompt,
                                                   const GenerationOptions& o) {
  const ModelConfig& c = model.config();
  GRPO_RETURN_IF_ERROR(ValidateSampling(o.sampling));
  if (prompt.empty()) return Status::InvalidArgument("empty prompt");
  if (o.n <= 0) return Status::InvalidArgument("n must be positive, got " + std::to_string(o.n));
  if (o.max_new_tokens <= 0) {
    return Status::InvalidArgument("max_new_tokens must be positive, got " + std::to_string(o.max_new_tokens));
  }
  const int64_t plen = static_cast<int64_t>(prompt.size());
  if (plen + o.max_new_tokens > c.max_position_embeddings) {
    return Status::InvalidArgument("prompt (" + std::to_string(plen) + " tokens) + max_new_tokens (" +
                                   std::to_string(o.max_new_tokens) + ") exceeds max_position_embeddings " +
                                   std::to_string(c.max_position_embeddings));
  }
  // Prefill once; the other samples fork the prompt's blocks (shared, copy-on-write).
  const int64_t bs = kGenerationBlockSize;
  KvBlockPool pool(c, (plen + bs - 1) / bs + o.n * (1 + (o.max_new_tokens + bs - 1) / bs), bs);
  PagedKvCache cache(pool);
  const int64_t first_seq = cache.AddSequence();
  GRPO_RETURN_IF_ERROR(cache.Reserve(first_seq, plen, 0));
  StepInput prefill;
  prefill.tokens.assign(prompt.begin(), prompt.end());
  prefill.offsets = {0, plen};
  prefill.past = {0};
  prefill.cache_seq = {first_seq};
  GRPO_ASSIGN_OR_RETURN(StepOutput first, model.ForwardStep(prefill, cache));
  for (int64_t s = 1; s < o.n; ++s) cache.Fork(first_seq);  // sample s is cache sequence s
  std::vector<GeneratedSample> samples(o.n);
  std::vector<std::mt19937_64> rngs;
  for (int64_t s = 0; s < o.n; ++s) {
    std::seed_seq seq{static_cast<uint32_t>(o.seed), static_cast<uint32_t>(o.seed >> 32),
                      static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)};
    rngs.emplace_back(seq);
  }
  auto emit = [&](int64_t s, std::span<const float> logits) {
    const SampledToken t = SampleToken(logits, o.sampling, rngs[s]);
    GeneratedSample& g = samples[s];
    g.tokens.push_back(t.token);
    g.logprobs.push_back(t.logprob);
    g.raw_logprobs.push_back(t.raw_logprob);
    if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), t.token) != o.stop_tokens.end()) {
      g.finish_reason = "stop";
    } else if (static_cast<int64_t>(g.tokens.size()) >= o.max_new_tokens) {
      g.finish_reason = "length";
    }
  };
  for (int64_t s = 0; s < o.n; ++s) emit(s, first.logits);
  for (;;) {
    StepInput step;
    std::vector<int64_t> active;
    for (int64_t s = 0; s < o.n; ++s) {
      if (!samples[s].finish_reason.empty()) continue;
      active.push_back(s);
      step.tokens.push_back(samples[s].tokens.back());
      step.offsets.push_back(static_cast<int64_t>(step.tokens.size()));
      const int64_t position = plen + static_cast<int64_t>(samples[s].tokens.size()) - 1;
      GRPO_RETURN_IF_ERROR(cache.Reserve(s, position + 1, position));
      step.past.push_back(position);
      step.cache_seq.push_back(s);
    }
    if (active.empty()) break;
    GRPO_ASSIGN_OR_RETURN(StepOutput out, model.ForwardStep(step, cache));
    for (size_t i = 0; i < active.size(); ++i) {
      emit(active[i], std::span<const float>(out.logits).subspan(i * c.vocab_size, c.vocab_size));
    }
  }
  return samples;
}

}  // namespace grpo
