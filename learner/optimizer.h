// AdamW with torch.optim.AdamW semantics (amsgrad=False, maximize=False), and global gradient
// norm clipping with torch.nn.utils.clip_grad_norm_ semantics.
//
// One step k = 1, 2, ... on every trainable parameter p with gradient g (f32 throughout, the
// operations in torch's order):
//   p   <- p * (1 - lr * wd)                 decoupled weight decay, before the moment update
//   m   <- m * beta1 + (1 - beta1) * g
//   v   <- v * beta2 + (1 - beta2) * g * g
//   p   <- p - (lr / (1 - beta1^k)) * m / (sqrt(v) / sqrt(1 - beta2^k) + eps)
// wd is weight_decay, except 0 for 1-D tensors (norm weights, biases) unless decay_1d is set:
// the usual LLM recipe (HF Trainer, nanoGPT) puts those in a no-decay group. Parameters with
// spec.trainable == false are never touched and have no state. The step counter is shared by all
// parameters (every trainable parameter is updated on every step).
//
// Everything runs on the backend that holds the parameters: values, gradients and the moments
// are device Buffers (model/ops/backend.h), the step is one Backend::AdamW call per parameter,
// the norm one Backend::SumSquares per gradient (its per-tensor sums come back in one download
// of a double each and are added on the host in parameter order), clipping one Backend::Scale.
// Only the moments' checkpoint files cross to the host (SaveState downloads, LoadState uploads).
//
// State checkpoints: SaveState writes one safetensors file with F32 tensors
// "<param name>.exp_avg" and "<param name>.exp_avg_sq" for every trainable parameter and
// __metadata__ {"format": "grpo.adamw.v1", "step": "<k>"}; LoadState restores exactly those bits
// and rejects a file whose tensor set, dtypes or shapes do not match the parameters (the error
// names the tensor).
#ifndef GRPO_LEARNER_OPTIMIZER_H_
#define GRPO_LEARNER_OPTIMIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/ops/backend.h"
#include "model/parameters.h"

namespace grpo {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // torch's AdamW default
  bool decay_1d = false;       // apply weight decay to 1-D tensors too
};

// Sets every gradient to zero (before a backward, which accumulates into them).
void ZeroGrads(std::vector<Buffer>* grads);

// sqrt(sum over trainable parameters of ||g||^2), in double. Grads (device, f32) parallel to
// specs; a grad of a non-trainable parameter is ignored and may be empty. InvalidArgument for a
// size, element count or dtype mismatch (naming the parameter).
absl::StatusOr<double> GlobalGradNorm(const std::vector<ParameterSpec>& specs,
                                      const std::vector<Buffer>& grads);

// torch.nn.utils.clip_grad_norm_: returns the total norm before clipping; when
// coef = max_norm / (norm + 1e-6) is < 1, every trainable grad is multiplied by coef (computed in
// f32 from the f32-rounded norm, as torch does: (1 / (norm + 1e-6)) * max_norm).
// A non-finite norm returns InvalidArgument and leaves grads unchanged (the caller skips the step).
// max_norm must be > 0.
absl::StatusOr<double> ClipGradNorm(const std::vector<ParameterSpec>& specs,
                                    std::vector<Buffer>* grads, double max_norm);

class AdamW {
 public:
  // State (zeros, in `backend`'s memory) for the trainable parameters of `specs`.
  // InvalidArgument for bad options.
  static absl::StatusOr<AdamW> Create(Backend& backend, const std::vector<ParameterSpec>& specs,
                                      const AdamWOptions& options);

  // One update with learning rate `lr` of the device values (e.g. CausalLM::parameter_buffers:
  // parallel to the specs given to Create, f32 of the specs' sizes); grads parallel, f32 of the
  // same sizes (grads of non-trainable parameters are ignored). Errors name the parameter;
  // nothing is updated on error.
  absl::Status Step(std::vector<Buffer>* values, const std::vector<Buffer>& grads, double lr);

  // Number of steps taken (k of the last step).
  int64_t step() const { return step_; }
  const AdamWOptions& options() const { return options_; }
  const std::vector<ParameterSpec>& specs() const { return specs_; }

  // exp_avg / exp_avg_sq of parameter i downloaded (empty tensors for a non-trainable one).
  Tensor exp_avg(size_t i) const { return Download(exp_avg_[i], i); }
  Tensor exp_avg_sq(size_t i) const { return Download(exp_avg_sq_[i], i); }

  absl::Status SaveState(const std::string& path) const;
  absl::Status LoadState(const std::string& path);
  // Replaces the moments and the step count: `exp_avg` / `exp_avg_sq` hold every trainable
  // parameter's moments one after another in parameter order (the flat layout of
  // sharded_optimizer.h). InvalidArgument when their length is not the trainable element count.
  absl::Status SetState(const std::vector<float>& exp_avg, const std::vector<float>& exp_avg_sq,
                        int64_t step);

 private:
  explicit AdamW(Backend& backend) : backend_(&backend) {}
  Tensor Download(const Buffer& b, size_t i) const;

  Backend* backend_;
  AdamWOptions options_;
  std::vector<ParameterSpec> specs_;
  std::vector<Buffer> exp_avg_, exp_avg_sq_;  // device, f32
  int64_t step_ = 0;
};

}  // namespace grpo

#endif  // GRPO_LEARNER_OPTIMIZER_H_
