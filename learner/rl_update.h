// The learner's policy update for one GRPO step: the rollout groups (prompt, G samples, their
// advantages) become packed sequences prompt + completion; the policy loss (policy_loss.h) over
// the completion tokens is minimized with AdamW over `mini_batches` x `epochs` optimizer steps.
//
//  - Mini-batches split the groups into equal consecutive parts (whole groups stay together).
//  - old_logprobs (the ratio's denominator) are the policy's logprobs before this step's first
//    update; with one mini-batch and one epoch they equal the current ones (ratio 1), so no
//    extra forward is run. Samples from older weights (one-step off-policy) are corrected by the
//    importance weights of loss.is_correction (old vs rollout logprobs), not by the ratio.
//  - Rollout logprobs (for truncated IS / masking) are the engine's raw (temperature-1)
//    logprobs of the sampled tokens. When every sample has them, the stats report how far they
//    are from the learner's old logprobs (mismatch_*), whatever the correction.
//  - Reference logprobs (KL, kl_beta > 0) come from a frozen reference model.
//  - Routing replay (MoE): the learner's forward uses the experts the rollout chose for every
//    prompt and completion position, the environment tokens of multi-turn samples included (the
//    last completion token, which predicts nothing, reuses the previous position's experts).
//  - A sample with trained false (e.g. its reward failed) has loss and gradient 0; so has every
//    token with loss_mask 0 (environment tokens of multi-turn samples).
#ifndef GRPO_LEARNER_RL_UPDATE_H_
#define GRPO_LEARNER_RL_UPDATE_H_

#include <cstdint>
#include <vector>

#include "collective/collective.h"
#include "core/status.h"
#include "core/tensor.h"
#include "learner/gradient_reducer.h"
#include "learner/optimizer.h"
#include "learner/policy_loss.h"
#include "learner/sharded_optimizer.h"
#include "learner/schedule.h"
#include "model/causal_lm.h"

namespace grpo {

struct RlSample {
  std::vector<int32_t> completion;
  std::vector<float> rollout_logprobs;  // raw logprobs from the engine (may be empty)
  std::vector<int32_t> routing;         // [T, L, K] token-major (may be empty)
  double advantage = 0;
  // Per completion token, added to `advantage` (on-policy distillation); empty: none. Either
  // every sample of the update has them or none.
  std::vector<double> token_advantages;
  // Full-distribution distillation (loss.divergence_coef > 0): the teacher's next-token logits at
  // each completion token's position, [completion tokens, vocab] row-major (row t: the logits
  // that predict completion[t]). Every sample of the update has them then, and none otherwise.
  std::vector<float> teacher_logits;
  bool trained = true;
  // Per completion token, or empty (all 1): 0 leaves the token out of the loss, e.g. the tokens a
  // tool's environment appended in a multi-turn rollout (rollout/environment.h). Such tokens are
  // still the context of the tokens after them.
  std::vector<uint8_t> loss_mask;
};

struct RlGroup {
  std::vector<int32_t> prompt;
  std::vector<int32_t> prompt_routing;  // [(P - 1), L, K] token-major (may be empty)
  std::vector<RlSample> samples;
};

struct RlUpdateOptions {
  // With loss.divergence_coef > 0 the loss adds coef * D_t for every completion token, D_t the
  // `divergence` of the policy's next-token distribution from the teacher's (the samples'
  // teacher_logits), aggregated as the policy term; its gradient flows through every logit.
  PolicyLossOptions loss;
  Divergence divergence = Divergence::kReverseKl;
  int64_t mini_batches = 1;
  int64_t epochs = 1;
  LrScheduleOptions schedule;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  bool routing_replay = true;  // used when every sample carries routing
  bool need_entropy = true;
  // Data-parallel ranks (learner/data_parallel.h): every rank calls RlUpdate with the same
  // groups and trains its share of each mini-batch's samples; the gradients are summed across
  // ranks before clipping, so every rank applies the same update. Null or size 1: one process.
  Collective* collective = nullptr;
  // ZeRO-1 (sharded_optimizer.h): when set, it steps instead of RlUpdate's `optimizer` argument
  // (which is then not touched; pass any AdamW, e.g. one over no parameters).
  ShardedAdamW* sharded_optimizer = nullptr;
  // Data-parallel ranks with the sharded optimizer: when set, the gradients are reduce-scattered
  // by this reducer (its buckets, started during each mini-batch's backward when it overlaps) and
  // the sharded optimizer steps on the rank's shard of the sums (ShardedAdamW::StepOnShard);
  // otherwise they are reduce-scattered after the backward by the sharded optimizer's Step, or,
  // without a sharded optimizer, all-reduced by AllReduceGradients. Requires sharded_optimizer.
  GradientReducer* gradient_reducer = nullptr;
};

struct RlUpdateStats {
  double loss = 0;         // mean over optimizer steps
  double grad_norm = 0;    // mean over optimizer steps (before clipping)
  double lr = 0;           // of the last optimizer step
  double entropy = 0;      // mean over completion tokens, first forward
  double clip_frac = 0, kl = 0, ratio_max = 0, is_weight_mean = 1;
  double divergence = 0;   // mean over optimizer steps of the mean D_t (loss.divergence_coef > 0)
  int64_t optimizer_steps = 0;
  int64_t tokens = 0;      // completion tokens trained
  // Samples with trained true that the forward and backward ran over, each counted by the rank
  // whose share it is and summed over the ranks: every such sample of `groups` exactly once,
  // unless the ranks' shares lost one or overlapped (data-parallel ranks; one process counts all).
  int64_t samples_trained = 0;
  int64_t skipped_steps = 0;  // non-finite gradient norm
  // Rollout/learner logprob mismatch: |rollout logprob - learner logprob| of every sampled
  // completion token (a tool's environment tokens, loss_mask 0, are left out), the learner's logprob from its old-logprob pass (the policy before this step's first
  // update, with the weights the rollout was asked to use). Measured when every sample carries
  // rollout logprobs (mismatch_tokens > 0), else 0.
  double mismatch_max_abs_logprob = 0;
  double mismatch_mean_abs_logprob = 0;
  int64_t mismatch_tokens = 0;
};

// The routing RlUpdate's forward replays over `groups` when they form one mini-batch: the
// sequences prompt + completion packed in order, layer-major as model/causal_lm.h Routing.
// InvalidArgument when a group's or a sample's routing does not cover its tokens.
absl::StatusOr<Routing> ReplayRouting(const std::vector<RlGroup>& groups, int64_t num_moe_layers, int64_t top_k);

// Runs the update; `grads` is scratch. `reference` is required when loss.kl_beta > 0.
absl::StatusOr<RlUpdateStats> RlUpdate(CausalLM& policy, CausalLM* reference, AdamW& optimizer,
                               const std::vector<RlGroup>& groups, const RlUpdateOptions& options,
                               std::vector<Buffer>* grads);

}  // namespace grpo

#endif  // GRPO_LEARNER_RL_UPDATE_H_
