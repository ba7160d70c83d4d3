// ZeRO-1 AdamW for data-parallel ranks: each rank holds the AdamW moments of its own shard of the
// trainable parameters only, so optimizer memory per rank falls as 1/N.
//
// Layout (learner/gradient_buckets.h): gradient buckets in backward order, each split evenly
// among the ranks; a rank owns its shard of every bucket, its *own vector*. One step:
//   1. the ranks' gradients are reduce-scattered bucket by bucket, each rank receiving the sums of
//      its own vector: by the GradientReducer during the backward (StepOnShard takes its sums), or
//      by Step itself after it;
//   2. the global norm comes from one all-reduce of the ranks' sums of squares (double); clipping
//      multiplies the own vector by torch's f32 coefficient (as ClipGradNorm does);
//   3. each rank runs the backend's AdamW kernel over its part of each parameter (weight decay as
//      AdamW: none for 1-D tensors unless decay_1d);
//   4. the updated parameters are all-gathered bucket by bucket, so every rank holds them whole.
// The result equals AdamW over the summed gradients up to the summation order of the sums and the
// norm. Host memory per rank: StepOnShard borrows the caller's image of one bucket (the
// reducer's) for the all-gather; Step holds its own image and own vector of sums.
//
// Checkpoints: SaveShard writes this rank's moments as "optimizer-shard-RRRRR-of-NNNNN.safetensors":
// F32 "exp_avg" and "exp_avg_sq" of the own vector; __metadata__ format "grpo.adamw.shard.v2",
// step, total (trainable elements) and runs ("offset:count,..." where the own vector's elements
// sit in the flat parameter-order vector, in order). ReadOptimizerRuns reads any elements from a
// checkpoint directory holding such shards (any rank count, any bucket size), the shards of the
// earlier contiguous layout (format "grpo.adamw.shard.v1": one run at `offset`), or the
// one-process optimizer.safetensors, so a run resumes with any rank count.
#ifndef GRPO_LEARNER_SHARDED_OPTIMIZER_H_
#define GRPO_LEARNER_SHARDED_OPTIMIZER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "collective/collective.h"
#include "core/status.h"
#include "learner/gradient_buckets.h"
#include "learner/optimizer.h"
#include "model/ops/backend.h"
#include "model/parameters.h"

namespace grpo {

// Moments of the elements asked for, concatenated in the order asked, and the step count.
struct OptimizerRange {
  int64_t step = 0;
  std::vector<float> exp_avg, exp_avg_sq;
};

// Total trainable elements of `specs` (the flat vector's length).
int64_t TrainableElements(const std::vector<ParameterSpec>& specs);

// Reads the flat elements of `runs` (disjoint) from a checkpoint's optimizer state. Errors name
// the file: a shard whose total is not this model's, runs the files do not cover, disagreeing
// steps, a malformed runs list.
absl::StatusOr<OptimizerRange> ReadOptimizerRuns(const std::string& checkpoint_dir,
                                                 const std::vector<ParameterSpec>& specs,
                                                 const std::vector<FlatRun>& runs);
// The same for flat elements [offset, offset + count).
absl::StatusOr<OptimizerRange> ReadOptimizerRange(const std::string& checkpoint_dir,
                                                  const std::vector<ParameterSpec>& specs,
                                                  int64_t offset, int64_t count);

// Loads a checkpoint's optimizer state into a one-process AdamW, whichever form it was saved in.
absl::Status LoadAnyOptimizerState(const std::string& checkpoint_dir, AdamW* optimizer,
                                   const std::vector<ParameterSpec>& specs);

class ShardedAdamW {
 public:
  // `layout` must be over `specs` for `collective`'s rank count and rank.
  static absl::StatusOr<ShardedAdamW> Create(Backend& backend, const std::vector<ParameterSpec>& specs,
                                             const GradientBuckets& layout, const AdamWOptions& options,
                                             Collective& collective);

  // One step from this rank's partial gradients (each rank's sums over its own samples, full
  // size; not changed): reduce-scatters them bucket by bucket, then StepOnShard. Returns the
  // global norm before clipping; with a non-finite norm nothing changes and the result is nullopt
  // on every rank (the caller skips the step). max_norm <= 0: no clipping.
  absl::StatusOr<std::optional<double>> Step(std::vector<Buffer>* values, const std::vector<Buffer>& grads,
                                             double lr, double max_norm);
  // The same step from this rank's own vector of summed gradients (GradientReducer::shard_sums(),
  // layout().own_elements() floats; clobbered); `staging` (at least layout().max_bucket_elements()
  // floats, e.g. GradientReducer::staging()) is the all-gather's host image of a bucket.
  absl::StatusOr<std::optional<double>> StepOnShard(std::vector<Buffer>* values, absl::Span<float> shard_sums,
                                                    double lr, double max_norm, absl::Span<float> staging);

  int64_t step() const { return step_; }
  // Elements of AdamW state this rank holds (exp_avg + exp_avg_sq): 2 * its own vector.
  int64_t state_elements() const { return 2 * layout_.own_elements(); }
  // Host floats this optimizer holds between steps (Step's image of a bucket; none until Step).
  int64_t host_elements() const { return static_cast<int64_t>(image_.size()); }
  const GradientBuckets& layout() const { return layout_; }

  absl::Status SaveShard(const std::string& checkpoint_dir) const;
  absl::Status LoadShard(const std::string& checkpoint_dir);

 private:
  // Part of parameter `param` inside this rank's own vector.
  struct Piece {
    size_t param;
    int64_t param_offset, own_offset, count;
  };
  explicit ShardedAdamW(GradientBuckets layout) : layout_(std::move(layout)) {}
  absl::Status CheckSizes(const std::vector<Buffer>& values, size_t grads) const;
  absl::StatusOr<double> ClippedNorm(absl::Span<float> sums, double max_norm);
  void AdamWOnShard(std::vector<Buffer>* values, double lr);
  absl::Status AllGatherParameters(std::vector<Buffer>* values, float* image);

  GradientBuckets layout_;
  std::vector<Piece> pieces_;
  Backend* backend_ = nullptr;
  Collective* collective_ = nullptr;
  AdamWOptions options_;
  std::vector<ParameterSpec> specs_;
  int64_t step_ = 0;
  Buffer exp_avg_, exp_avg_sq_, grad_shard_;  // device, own_elements() floats each
  std::vector<float> image_;                   // Step's host image of one bucket
};

}  // namespace grpo

#endif  // GRPO_LEARNER_SHARDED_OPTIMIZER_H_
