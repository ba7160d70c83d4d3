// Sums the data-parallel ranks' gradients in buckets, overlapped with the backward.
//
// Layout: the trainable parameters, in the order the model's Backward finishes their gradients
// (CausalLM::gradient_ready_order(): the output head, the layers from the last one, the
// embedding), are cut into buckets of at most `bucket_elements` floats; a larger parameter is
// split across buckets. Each bucket is one all-reduce (sum) of its own region of one host
// staging vector of the model's trainable size.
//
// With overlap, Hook() gives Backward a callback (CausalLM::GradientsReady): when a bucket's last
// parameter is final it copies the bucket to the host (on Backward's thread) and hands it to a
// communication thread, which all-reduces it while the backward of earlier layers goes on.
// Finish() starts the buckets not started yet, waits for all of them and writes the sums into the
// gradients. Without overlap, Finish() does all of it after the backward.
//
// Buckets start in bucket order on every rank, in either mode, so every element is summed by the
// same collective call over the same buffer: with a fixed rank count the sums are bit-identical
// with overlap on and off (and a rank with no samples, which runs no backward, takes part in the
// same calls with zero gradients).
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
#include "collective/collective.h"
#include "core/status.h"
#include "model/causal_lm.h"

namespace grpo {

struct GradientReducerOptions {
  // Floats per bucket (the recipe's learner.bucket_mb * 2^20 / 4); > 0.
  int64_t bucket_elements = int64_t{25} << 18;  // 25 MiB, PyTorch DDP's default bucket_cap_mb
  // Start each bucket's reduction during the backward (Hook), or all after it (Finish).
  bool overlap = true;
};

class GradientReducer {
 public:
  // Buckets for `model`'s trainable parameters over `collective` (its rank count). Errors: a
  // device-memory collective, bucket_elements <= 0 or beyond one call's 2^31-1 elements.
  static absl::StatusOr<std::unique_ptr<GradientReducer>> Create(Collective& collective, const CausalLM& model,
                                                                 const GradientReducerOptions& options);
  // Stops the communication thread: a reduction still running is waited for (it ends when the
  // peers take part, or at the collective's timeout), buckets still queued are dropped.
  ~GradientReducer();

  // The callback for the last Backward before Finish(), writing into `grads` (NewGradients
  // layout). Null without overlap or with one rank: pass it to Backward either way.
  GradientsReady Hook(std::vector<Buffer>* grads);

  // Starts the buckets not started yet (all of them without a hooked backward), waits for every
  // bucket, and replaces `grads` by the sums over the ranks. Afterwards the reducer is ready for
  // the next step. Errors: the first failed collective call (the group is broken then).
  absl::Status Finish(std::vector<Buffer>* grads);

  size_t num_buckets() const { return buckets_.size(); }
  // Buckets the last Finish() found started by the hook, i.e. during the backward.
  size_t buckets_started_early() const { return started_early_; }

 private:
  struct Piece {
    size_t param;
    int64_t offset, count;  // elements of the parameter's gradient
  };
  struct Bucket {
    std::vector<Piece> pieces;
    int64_t host_offset = 0, count = 0;
  };

  GradientReducer(Collective& collective, Backend& backend, const GradientReducerOptions& options)
      : collective_(collective), backend_(backend), options_(options) {}
  void Layout(const CausalLM& model);
  void OnReady(std::span<const size_t> params, std::vector<Buffer>& grads);
  // Copies bucket `next_` to the host and queues its all-reduce; advances next_.
  void StartNext(std::vector<Buffer>& grads);
  void CommunicationLoop();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); }
  bool AllReduced() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reduced_ == buckets_.size(); }
  void Reset();

  Collective& collective_;
  Backend& backend_;
  const GradientReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<size_t>> buckets_of_param_;
  std::vector<size_t> pending_;  // per bucket: its pieces whose parameter is not final yet
  size_t next_ = 0;              // the next bucket to start (buckets start in order)
  size_t started_early_ = 0;
  std::vector<float> host_;

  mutable absl::Mutex mu_;
  std::deque<size_t> queue_ ABSL_GUARDED_BY(mu_);  // started buckets to all-reduce
  size_t reduced_ ABSL_GUARDED_BY(mu_) = 0;         // buckets done (or skipped after an error)
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace grpo

#endif  // GRPO_LEARNER_GRADIENT_REDUCER_H_
