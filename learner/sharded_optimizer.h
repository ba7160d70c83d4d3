// ZeRO-1 AdamW for data-parallel ranks: each rank holds the AdamW moments of one contiguous shard
// of the trainable parameters only, so optimizer memory per rank falls as 1/N.
//
// Layout: the trainable parameters, in parameter order, form one flat vector of T elements; rank
// r owns elements [offset_r, offset_r + count_r) with counts EvenShards(T, N). One step:
//   1. the ranks' gradients (each rank's partial sums over its own samples, full size) are
//      reduce-scattered: each rank gets the summed gradient of its own shard;
//   2. the global norm comes from one all-reduce of the shards' sums of squares (double);
//      clipping multiplies the own shard by torch's f32 coefficient (as ClipGradNorm does);
//   3. each rank runs the backend's AdamW kernel over its shard of each parameter (weight decay
//      as AdamW: none for 1-D tensors unless decay_1d);
//   4. the updated shards are all-gathered, so every rank holds the whole new parameters.
// The result equals AdamW over the summed gradients up to the summation order of the norm.
//
// Checkpoints: SaveShard writes this rank's moments as "optimizer-shard-RRRRR-of-NNNNN.safetensors"
// (F32 "exp_avg" and "exp_avg_sq" of count_r elements; __metadata__ format
// "grpo.adamw.shard.v1", step, offset, total). ReadOptimizerRange reads any element range from
// a checkpoint directory holding either such shards (written with any rank count) or the
// one-process optimizer.safetensors, so a run resumes with any rank count.
#ifndef GRPO_LEARNER_SHARDED_OPTIMIZER_H_
#define GRPO_LEARNER_SHARDED_OPTIMIZER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "collective/collective.h"
#include "core/status.h"
#include "learner/optimizer.h"
#include "model/ops/backend.h"
#include "model/parameters.h"

namespace grpo {

// Moments of flat elements [offset, offset + m.size()) and the step count.
struct OptimizerRange {
  int64_t step = 0;
  std::vector<float> exp_avg, exp_avg_sq;
};

// Total trainable elements of `specs` (the flat layout's T).
int64_t TrainableElements(const std::vector<ParameterSpec>& specs);

// Reads flat elements [offset, offset + count) of a checkpoint's optimizer state (shards of any
// rank count, or optimizer.safetensors). Errors name the file: a shard whose total is not T, a
// range the files do not cover, disagreeing steps.
absl::StatusOr<OptimizerRange> ReadOptimizerRange(const std::string& checkpoint_dir,
                                                  const std::vector<ParameterSpec>& specs,
                                                  int64_t offset, int64_t count);

// Loads a checkpoint's optimizer state into a one-process AdamW, whichever form it was saved in.
absl::Status LoadAnyOptimizerState(const std::string& checkpoint_dir, AdamW* optimizer,
                                   const std::vector<ParameterSpec>& specs);

class ShardedAdamW {
 public:
  static absl::StatusOr<ShardedAdamW> Create(Backend& backend, const std::vector<ParameterSpec>& specs,
                                             const AdamWOptions& options, Collective& collective);

  // One step (see the top of the file). `grads` are this rank's partial gradients; they are
  // clobbered. Returns the global norm before clipping; with a non-finite norm nothing changes
  // and the result is nullopt on every rank (the caller skips the step). max_norm <= 0: no
  // clipping.
  absl::StatusOr<std::optional<double>> Step(std::vector<Buffer>* values, std::vector<Buffer>* grads,
                                             double lr, double max_norm);
  // The same step for gradients already summed over the ranks (learner/gradient_reducer.h): no
  // reduce-scatter, each rank reads its own shard of `grads`. The norm, clipping, AdamW and
  // all-gather are Step's.
  absl::StatusOr<std::optional<double>> StepSummed(std::vector<Buffer>* values, const std::vector<Buffer>& grads,
                                                   double lr, double max_norm);

  int64_t step() const { return step_; }
  // Elements of AdamW state this rank holds (exp_avg + exp_avg_sq): 2 * its shard.
  int64_t state_elements() const { return 2 * count_; }
  int64_t shard_offset() const { return offset_; }

  absl::Status SaveShard(const std::string& checkpoint_dir) const;
  absl::Status LoadShard(const std::string& checkpoint_dir);

 private:
  // Part of parameter `param` inside this rank's shard.
  struct Piece {
    size_t param;
    int64_t param_offset, shard_offset, count;
  };
  ShardedAdamW() = default;
  absl::Status CheckSizes(const std::vector<Buffer>& values, const std::vector<Buffer>& grads) const;
  // Steps 2-4 of a step, from the summed gradients of this rank's shard in `flat_grads` (the flat
  // layout, total_ elements; the other shards' values are not read). The vector is clobbered.
  absl::StatusOr<std::optional<double>> StepOwnShard(std::vector<Buffer>* values, std::vector<float>* flat_grads,
                                                     double lr, double max_norm);
  std::vector<Piece> pieces_;
  Backend* backend_ = nullptr;
  Collective* collective_ = nullptr;
  AdamWOptions options_;
  std::vector<ParameterSpec> specs_;
  std::vector<size_t> counts_;
  int64_t total_ = 0, offset_ = 0, count_ = 0, step_ = 0;
  Buffer exp_avg_, exp_avg_sq_, grad_shard_;  // device, count_ floats each
};

}  // namespace grpo

#endif  // GRPO_LEARNER_SHARDED_OPTIMIZER_H_
