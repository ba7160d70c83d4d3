#include "learner/lm_training.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace grpo {
namespace {

TokenBatch ToBatch(std::span<const LmSequence> batch) {
  TokenBatch tb;
  for (const auto& s : batch) {
    tb.tokens.insert(tb.tokens.end(), s.tokens.begin(), s.tokens.end());
    tb.offsets.push_back(static_cast<int64_t>(tb.tokens.size()));
  }
  return tb;
}

}  // namespace

std::vector<float> LmLossWeights(std::span<const LmSequence> batch, int64_t* num_trained) {
  std::vector<float> weights;
  int64_t n = 0;
  for (const auto& s : batch) {
    const int64_t len = static_cast<int64_t>(s.tokens.size());
    for (int64_t i = 1; i < len; ++i) {
      const bool trained = i >= s.prompt_length;
      weights.push_back(trained ? 1.0f : 0.0f);
      n += trained;
    }
  }
  const float scale = n > 0 ? -1.0f / static_cast<float>(n) : 0.0f;
  for (auto& w : weights) w *= scale;
  *num_trained = n;
  return weights;
}

absl::StatusOr<LmStepResult> LmTrainStep(CausalLM& model, AdamW& optimizer, std::span<const LmSequence> batch,
                                 const LmStepOptions& options, std::vector<Buffer>* grads) {
  int64_t n = 0;
  const std::vector<float> weights = LmLossWeights(batch, &n);
  if (n == 0) return absl::InvalidArgumentError("lm training: the batch has no trained target token");
  const TokenBatch tb = ToBatch(batch);
  ForwardOptions fo;
  fo.keep_activations = true;
  fo.recompute = options.recompute;
  GRPO_ASSIGN_OR_RETURN(ForwardOutput out, model.Forward(tb, fo));
  double loss = 0;
  for (size_t i = 0; i < weights.size(); ++i) loss += static_cast<double>(weights[i]) * out.logprobs[i];
  ZeroGrads(grads);
  absl::Status st = model.Backward(weights, grads);
  model.ReleaseActivations();
  GRPO_RETURN_IF_ERROR(st);
  LmStepResult result;
  result.loss = loss;
  result.tokens = n;
  GRPO_ASSIGN_OR_RETURN(result.grad_norm, GlobalGradNorm(model.parameter_specs(), *grads));
  if (!std::isfinite(result.grad_norm)) {
    result.skipped = true;
    return result;
  }
  if (options.max_grad_norm > 0) {
    GRPO_ASSIGN_OR_RETURN(result.grad_norm, ClipGradNorm(model.parameter_specs(), grads, options.max_grad_norm));
  }
  GRPO_RETURN_IF_ERROR(optimizer.Step(&model.parameter_buffers(), *grads, options.lr));
  return result;
}

absl::StatusOr<double> LmLoss(CausalLM& model, std::span<const LmSequence> batch) {
  int64_t n = 0;
  const std::vector<float> weights = LmLossWeights(batch, &n);
  if (n == 0) return absl::InvalidArgumentError("lm loss: the batch has no trained target token");
  GRPO_ASSIGN_OR_RETURN(ForwardOutput out, model.Forward(ToBatch(batch), {}));
  double loss = 0;
  for (size_t i = 0; i < weights.size(); ++i) loss += static_cast<double>(weights[i]) * out.logprobs[i];
  return loss;
}

}  // namespace grpo
