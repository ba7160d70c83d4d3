// Next-token training (the pretraining stage of a recipe and `grpo sft`): one optimizer step of
//   loss = (1 / N) * sum over trained targets of -log p(t_i | t_<i)
// over a batch of token sequences, where target i (predicting tokens[i]) is trained when
// i >= the sequence's prompt_length (prompt tokens are context, not learned; prompt_length 0 or 1
// trains every target) and N counts the trained targets of the whole batch.
#ifndef GRPO_LEARNER_LM_TRAINING_H_
#define GRPO_LEARNER_LM_TRAINING_H_

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "learner/optimizer.h"
#include "model/causal_lm.h"

namespace grpo {

struct LmSequence {
  std::vector<int32_t> tokens;
  int64_t prompt_length = 0;  // leading tokens that are context only
};

struct LmStepOptions {
  double lr = 1e-3;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  bool recompute = false;      // per-layer activation recomputation (model/causal_lm.h)
};

struct LmStepResult {
  double loss = 0;       // mean NLL of the trained targets, before the update
  double grad_norm = 0;  // global norm before clipping
  int64_t tokens = 0;    // trained targets
  bool skipped = false;  // the gradient was not finite: no update was made
};

// The per-target weights for CausalLM::Backward that give the gradient of the loss above, in
// the layout of ForwardOutput::logprobs; also returns N.
std::vector<float> LmLossWeights(std::span<const LmSequence> batch, int64_t* num_trained);

// Forward, backward, clip and one AdamW step. `grads` is scratch reused across calls. A batch
// with no trained target is InvalidArgument; a non-finite gradient norm skips the update
// (result.skipped, the model and optimizer unchanged).
absl::StatusOr<LmStepResult> LmTrainStep(CausalLM& model, AdamW& optimizer, std::span<const LmSequence> batch,
                                 const LmStepOptions& options, std::vector<Buffer>* grads);

// Mean NLL of the trained targets without updating anything (held-out loss).
absl::StatusOr<double> LmLoss(CausalLM& model, std::span<const LmSequence> batch);

}  // namespace grpo

#endif  // GRPO_LEARNER_LM_TRAINING_H_
