// Expert choice of mixture-of-experts layers, forward and backward, for the two router kinds:
//
//   softmax (qwen3_moe): p = softmax(logits); choose the top-k of p; weights = p at the choice,
//     divided by their sum when norm_topk_prob.
//   sigmoid (deepseek_v3, "noaux_tc"): s = sigmoid(logits); choice scores c = s + bias (the
//     correction bias only steers the choice); group score = sum of the top-2 c in each of
//     n_group groups; keep the topk_group best groups; c of experts outside them is set to 0
//     (as HF transformers does); choose the top-k of c; weights = s (no bias) at the choice,
//     divided by (sum + 1e-20) when norm_topk_prob, times routed_scaling_factor.
//
// Ties in a top-k go to the lower index. A forced choice (routing replay) skips the selection
// and computes the weights the same way. The backward maps gradients of the weights to
// gradients of the logits: through the chosen experts' scores only; the choice itself and the
// bias get none.
#ifndef GRPO_MODEL_ROUTER_H_
#define GRPO_MODEL_ROUTER_H_

#include <cstdint>

#include "model/model_config.h"

namespace grpo {

// For `tokens` rows of `logits` [tokens, E]: writes scores [tokens, E] (softmax or sigmoid),
// and, unless `forced`, the chosen experts [tokens, k]; then weights [tokens, k]. `bias` is the
// correction bias (sigmoid routers; may be null). Chosen experts are listed in choice order.
void RouteForward(const ModelConfig& config, const float* logits, const float* bias,
                  int64_t tokens, bool forced, int32_t* experts, float* scores, float* weights);

// dlogits [tokens, E] (overwritten) from dweights [tokens, k].
void RouteBackward(const ModelConfig& config, const float* scores, const int32_t* experts,
                   const float* dweights, int64_t tokens, float* dlogits);

}  // namespace grpo

#endif  // GRPO_MODEL_ROUTER_H_
