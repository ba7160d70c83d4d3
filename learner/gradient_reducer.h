// Reduce-scatters the data-parallel ranks' gradients in buckets, overlapped with the backward:
// the first half of a ZeRO-1 step (learner/sharded_optimizer.h does the rest).
//
// Layout (learner/gradient_buckets.h): buckets in the order the backward finishes the gradients,
// each split evenly among the ranks. Each bucket is one reduce-scatter, so a rank receives only
// the sums of its own shard of every bucket, its *own vector* (shard_sums()), which the sharded
// optimizer steps on; the gradients themselves stay each rank's partial sums. Host memory per
// rank: the own vector (about 1/N of the model) and `staging_buckets` host images of one bucket
// each (the reduce-scatter's input), reused from bucket to bucket and lent to the optimizer's
// all-gather (staging()).
//
// With overlap, Hook() gives Backward a callback (CausalLM::GradientsReady): when a bucket's last
// parameter is final it copies the bucket to a free staging image (on Backward's thread, waiting
// for one when all are in flight) and hands it to a communication thread, which reduce-scatters
// it while the backward of earlier layers goes on. Finish() starts the buckets not started yet and
// waits for all of them. Without overlap, Finish() does all of it after the backward.
//
// Buckets start in bucket order on every rank, in either mode, and each is summed by the same
// collective call over the same elements: with a fixed rank count the sums are bit-identical with
// overlap on and off (and a rank with no samples, which runs no backward, takes part in the same
// calls with zero gradients).
//
// Gradient accumulation (several backwards into the same gradients before one reduction): only
// the *last* backward may get the hook. A bucket started earlier would be sent without the later
// backwards' contributions; run the earlier ones without a callback.
//
// The collective: from the first bucket's start until Finish() returns, the communication thread
// makes calls on it, so the caller must make no other call on the same collective in between
// (Backward makes none; the learner's step calls Finish before its next collective). Host-memory
// collectives (Gloo) only.
#ifndef GRPO_LEARNER_GRADIENT_REDUCER_H_
#define GRPO_LEARNER_GRADIENT_REDUCER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "collective/collective.h"
#include "core/status.h"
#include "learner/gradient_buckets.h"
#include "model/causal_lm.h"

namespace grpo {

struct GradientReducerOptions {
  // Start each bucket's reduction during the backward (Hook), or all after it (Finish).
  bool overlap = true;
  // Host images of a bucket: how many buckets may be staged or in flight at once (>= 1). With 2
  // the backward stages the next bucket while the previous one is reduced.
  int staging_buckets = 2;
};

class GradientReducer {
 public:
  // Reduces `layout`'s buckets over `collective` (the layout's rank count and rank). Errors: a
  // device-memory collective, a layout for another rank or rank count, staging_buckets < 1.
  static absl::StatusOr<std::unique_ptr<GradientReducer>> Create(Collective& collective, Backend& backend,
                                                                 const GradientBuckets& layout,
                                                                 const GradientReducerOptions& options);
  // Stops the communication thread: a reduction still running is waited for (it ends when the
  // peers take part, or at the collective's timeout), buckets still queued are dropped.
  ~GradientReducer();

  // The callback for the last Backward before Finish(), reading `grads` (NewGradients layout).
  // Null without overlap or with one rank: pass it to Backward either way.
  GradientsReady Hook(const std::vector<Buffer>* grads);

  // Starts the buckets not started yet (all of them without a hooked backward), waits for every
  // bucket, and leaves in shard_sums() this rank's own vector of the sums over the ranks. `grads`
  // are not changed. Afterwards the reducer is ready for the next step. Errors: the first failed
  // collective call (the group is broken then).
  absl::Status Finish(const std::vector<Buffer>& grads);

  // This rank's summed gradients in own-vector order (layout().own_elements() floats), valid after
  // Finish() until the next step's first bucket; the caller may overwrite them (clipping).
  absl::Span<float> shard_sums() { return absl::MakeSpan(shard_sums_); }
  // A host image of one bucket (layout().max_bucket_elements() floats) the caller may use between
  // Finish() and the next step's first bucket: the sharded optimizer's all-gather buffer.
  absl::Span<float> staging() { return absl::MakeSpan(images_[0]); }

  const GradientBuckets& layout() const { return layout_; }
  size_t num_buckets() const { return layout_.buckets().size(); }
  // Buckets the last Finish() found started by the hook, i.e. during the backward.
  size_t buckets_started_early() const { return started_early_; }
  // Host floats this reducer holds: the own vector and the staging images.
  int64_t host_elements() const;

 private:
  struct Started {
    size_t bucket;
    size_t image;
  };

  GradientReducer(Collective& collective, Backend& backend, const GradientBuckets& layout,
                  const GradientReducerOptions& options)
      : collective_(collective), backend_(backend), layout_(layout), options_(options) {}
  void OnReady(std::span<const size_t> params, const std::vector<Buffer>& grads);
  // Copies bucket `next_` to a free staging image and queues its reduce-scatter; advances next_.
  void StartNext(const std::vector<Buffer>& grads);
  void CommunicationLoop();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); }
  bool HasFreeImage() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !free_images_.empty(); }
  bool AllReduced() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reduced_ == num_buckets(); }
  void Reset();

  Collective& collective_;
  Backend& backend_;
  const GradientBuckets layout_;
  const GradientReducerOptions options_;
  std::vector<size_t> pending_;  // per bucket: its pieces whose parameter is not final yet
  size_t next_ = 0;              // the next bucket to start (buckets start in order)
  size_t started_early_ = 0;
  std::vector<float> shard_sums_;
  std::vector<std::vector<float>> images_;  // staging_buckets host images of one bucket each

  mutable absl::Mutex mu_;
  std::vector<size_t> free_images_ ABSL_GUARDED_BY(mu_);
  std::deque<Started> queue_ ABSL_GUARDED_BY(mu_);  // started buckets to reduce-scatter
  size_t reduced_ ABSL_GUARDED_BY(mu_) = 0;          // buckets done (or skipped after an error)
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace grpo

#endif  // GRPO_LEARNER_GRADIENT_REDUCER_H_
