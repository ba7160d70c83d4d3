// The ZeRO-1 layout data-parallel ranks share: which gradient elements travel together (buckets)
// and which rank updates which of them (shards).
//
// Buckets: the trainable parameters, in the order the model's Backward finishes their gradients
// (CausalLM::gradient_ready_order(): the output head, the layers from the last one, the
// embedding), are cut into buckets of at most `bucket_elements` floats; a larger parameter is
// split across buckets. A bucket is reduced as soon as its last parameter is final.
//
// Shards: every bucket is split evenly among the N ranks (EvenShards(bucket, N), the larger shards
// first) and rank r owns shard r of *every* bucket, as Megatron-LM's distributed optimizer does.
// So one reduce-scatter per bucket hands each rank exactly the summed gradients it updates, each
// bucket's traffic is spread over all ranks (not sent to one owner), and a rank's part of the
// optimizer state is about 1/N of the model whatever the bucket size. (The other choice, cutting
// the parameter-order flat vector into N contiguous shards and aligning buckets to them, would
// make each bucket the business of one or two ranks: a reduce to one owner per bucket while the
// others idle, in backward order.) A rank's elements, in bucket order, form its *own vector*:
// the gradient sums the reducer delivers and the moments the optimizer keeps are in that order.
//
// Checkpoint coordinates: the flat parameter-order vector of all trainable elements (parameter
// i's elements follow parameter i-1's). own_runs() says where the own vector's elements sit in it,
// so shards written with one layout load into any other (learner/sharded_optimizer.h).
#ifndef GRPO_LEARNER_GRADIENT_BUCKETS_H_
#define GRPO_LEARNER_GRADIENT_BUCKETS_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/ops/backend.h"
#include "model/parameters.h"

namespace grpo {

// Part of one parameter inside one bucket.
struct BucketPiece {
  size_t param;
  int64_t param_offset;   // first element within the parameter
  int64_t bucket_offset;  // first element within the bucket
  int64_t count;
};

struct GradientBucket {
  std::vector<BucketPiece> pieces;
  int64_t count = 0;
  std::vector<size_t> shard_counts;  // EvenShards(count, ranks): the reduce-scatter's layout
  int64_t own_begin = 0, own_count = 0;  // this rank's shard within the bucket
  int64_t own_offset = 0;                // where that shard starts in the own vector
};

// A run of the own vector in checkpoint coordinates.
struct FlatRun {
  int64_t flat_offset, count;
};

class GradientBuckets {
 public:
  // `ready_order` must list every trainable parameter of `specs` exactly once and no other.
  // Errors: bucket_elements outside 1..2^31-1 (one collective call), a bad ready order, rank
  // outside 0..ranks-1.
  static absl::StatusOr<GradientBuckets> Create(const std::vector<ParameterSpec>& specs,
                                                const std::vector<std::vector<size_t>>& ready_order,
                                                int64_t bucket_elements, int ranks, int rank);

  const std::vector<GradientBucket>& buckets() const { return buckets_; }
  // The buckets holding part of parameter `param` (none for an untrainable one).
  const std::vector<size_t>& buckets_of(size_t param) const { return buckets_of_param_[param]; }
  size_t num_parameters() const { return buckets_of_param_.size(); }
  int64_t total_elements() const { return total_; }
  int64_t own_elements() const { return own_; }
  int64_t max_bucket_elements() const { return max_bucket_; }
  int ranks() const { return ranks_; }
  int rank() const { return rank_; }
  // The own vector's elements in checkpoint coordinates, in own-vector order (adjacent runs
  // merged).
  const std::vector<FlatRun>& own_runs() const { return own_runs_; }

  // Calls fn(piece_part) for the parts of bucket `b`'s pieces inside bucket elements [lo, hi).
  template <class F>
  void ForEachPiece(size_t b, int64_t lo, int64_t hi, F&& fn) const {
    for (const BucketPiece& p : buckets_[b].pieces) {
      const int64_t s = std::max(lo, p.bucket_offset), e = std::min(hi, p.bucket_offset + p.count);
      if (s < e) fn(BucketPiece{p.param, p.param_offset + (s - p.bucket_offset), s, e - s});
    }
  }

  // Host transfers of a bucket's elements [lo, hi) between the parameters' device buffers (`bufs`,
  // one per parameter) and `host` (the bucket's host image: element k at host[k]). ToHost
  // synchronizes the backend before it returns.
  void ToHost(Backend& backend, size_t b, int64_t lo, int64_t hi, const std::vector<Buffer>& bufs, float* host) const;
  void ToDevice(Backend& backend, size_t b, int64_t lo, int64_t hi, const float* host, std::vector<Buffer>* bufs) const;

 private:
  // Cuts the ready order into buckets; then splits each among the ranks and maps this rank's
  // shards to checkpoint coordinates.
  void Cut(const std::vector<ParameterSpec>& specs, const std::vector<std::vector<size_t>>& ready_order,
           int64_t bucket_elements);
  void Shard(const std::vector<ParameterSpec>& specs);

  std::vector<GradientBucket> buckets_;
  std::vector<std::vector<size_t>> buckets_of_param_;
  std::vector<FlatRun> own_runs_;
  int64_t total_ = 0, own_ = 0, max_bucket_ = 0;
  int ranks_ = 1, rank_ = 0;
};

}  // namespace grpo

#endif  // GRPO_LEARNER_GRADIENT_BUCKETS_H_
