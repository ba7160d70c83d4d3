// The CPU kernels of MoE routing (Backend::Route, RouteBackward, and the token permutation of
// MoeExperts; backend.h's RouterSpec states the two router kinds). Ties in a top-k go to the
// lower index.
#ifndef GRPO_MODEL_OPS_CPU_ROUTER_H_
#define GRPO_MODEL_OPS_CPU_ROUTER_H_

#include <cstdint>

#include "model/ops/backend.h"

namespace grpo::cpu {

// For `tokens` rows of `logits` [tokens, E]: writes scores [tokens, E] (softmax or sigmoid),
// and, unless `forced`, the chosen experts [tokens, k]; then weights [tokens, k]. `bias` is the
// correction bias (sigmoid routers; may be null). Chosen experts are listed in choice order.
void RouteForward(const RouterSpec& spec, const float* logits, const float* bias,
                  int64_t tokens, bool forced, int32_t* experts, float* scores, float* weights);

// The token permutation around the experts: groups the tokens*k choices of `experts`
// [tokens, k] by expert. rows[i] is the token and slots[i] the t*k + j slot of the i-th choice
// in (expert, t, j) order; counts[e] is how many choices expert e has, so expert e's rows start
// at the sum of the counts before it (MoeExpertActs' slots and offsets).
void GroupByExpert(const int32_t* experts, int64_t tokens, int64_t k, int64_t num_experts,
                   int32_t* rows, int32_t* slots, int32_t* counts);

// dlogits [tokens, E] (overwritten) from dweights [tokens, k].
void RouteBackward(const RouterSpec& spec, const float* scores, const int32_t* experts,
                   const float* dweights, int64_t tokens, float* dlogits);

}  // namespace grpo::cpu

#endif  // GRPO_MODEL_OPS_CPU_ROUTER_H_
