// The CPU kernel of Backend::Sample: one row of logits sampled as a SamplingRow says (the
// distribution rollout/sampler.h describes), with the RNG draw passed in as `row.uniform`. It is
// the one implementation: rollout/sampler.h's SampleToken calls it with its RNG's draw, and other
// backends' Sample is tested against SampleToken bit for bit.
#ifndef GRPO_MODEL_OPS_CPU_SAMPLING_H_
#define GRPO_MODEL_OPS_CPU_SAMPLING_H_

#include <cstdint>
#include <span>

#include "model/ops/backend.h"

namespace grpo::cpu {

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;      // under the sampled distribution
  float raw_logprob = 0.0f;  // log softmax(logits)[token]
};

SampleResult SampleRow(std::span<const float> logits, const SamplingRow& row);

// log sum_i exp(logits[i]) in f64 (max subtracted; 8 lane sums over the entries in order, then
// the lanes added in a fixed order; exp within 2 ulp of std::exp), and the max: what SampleRow's
// raw_logprob is computed from (raw_logprob = float(logits[token] - RawLogSumExp)). The
// batch-invariant LogSoftmaxTargets uses it too, so the two logprobs are the same bits.
double RawLogSumExp(std::span<const float> logits, double* max_out);

// One AdamW step (Backend::AdamW) over n elements.
void AdamWStep(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s);

}  // namespace grpo::cpu

#endif  // GRPO_MODEL_OPS_CPU_SAMPLING_H_
