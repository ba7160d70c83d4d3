#include "learner/gradient_buckets.h"

#include "absl/strings/str_cat.h"
#include "collective/collective.h"

namespace grpo {
namespace {

constexpr int64_t kBytes = static_cast<int64_t>(sizeof(float));

absl::Status CheckReadyOrder(const std::vector<ParameterSpec>& specs,
                             const std::vector<std::vector<size_t>>& ready_order) {
  std::vector<int> seen(specs.size(), 0);
  for (const std::vector<size_t>& group : ready_order) {
    for (size_t param : group) {
      if (param >= specs.size() || !specs[param].trainable || seen[param]++ > 0) {
        return absl::InvalidArgumentError(absl::StrCat("gradient buckets: parameter ", param,
                                                       " of the ready order is unknown, untrainable or repeated"));
      }
    }
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].trainable && seen[i] == 0) {
      return absl::InvalidArgumentError("gradient buckets: " + specs[i].name + " is missing from the ready order");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GradientBuckets> GradientBuckets::Create(const std::vector<ParameterSpec>& specs,
                                                        const std::vector<std::vector<size_t>>& ready_order,
                                                        int64_t bucket_elements, int ranks, int rank) {
  if (bucket_elements <= 0 || bucket_elements > int64_t{INT32_MAX}) {
    return absl::InvalidArgumentError(absl::StrCat("gradient buckets: a bucket of ", bucket_elements,
                                                   " floats; it must hold 1 to 2^31-1"));
  }
  if (ranks < 1 || rank < 0 || rank >= ranks) {
    return absl::InvalidArgumentError(absl::StrCat("gradient buckets: rank ", rank, " of ", ranks));
  }
  GRPO_RETURN_IF_ERROR(CheckReadyOrder(specs, ready_order));
  GradientBuckets g;
  g.ranks_ = ranks;
  g.rank_ = rank;
  g.Cut(specs, ready_order, bucket_elements);
  g.Shard(specs);
  return g;
}

void GradientBuckets::Cut(const std::vector<ParameterSpec>& specs, const std::vector<std::vector<size_t>>& ready_order,
                          int64_t bucket_elements) {
  buckets_of_param_.assign(specs.size(), {});
  for (const std::vector<size_t>& group : ready_order) {
    for (size_t param : group) {
      const int64_t n = NumElements(specs[param].shape);
      for (int64_t offset = 0; offset < n;) {
        if (buckets_.empty() || buckets_.back().count == bucket_elements) buckets_.emplace_back();
        GradientBucket& b = buckets_.back();
        const int64_t count = std::min(n - offset, bucket_elements - b.count);
        b.pieces.push_back({param, offset, b.count, count});
        b.count += count;
        buckets_of_param_[param].push_back(buckets_.size() - 1);
        offset += count;
      }
    }
  }
}

void GradientBuckets::Shard(const std::vector<ParameterSpec>& specs) {
  std::vector<int64_t> flat_start(specs.size(), 0);  // checkpoint coordinates of each parameter
  for (size_t i = 0; i < specs.size(); ++i) {
    flat_start[i] = total_;
    total_ += specs[i].trainable ? NumElements(specs[i].shape) : 0;
  }
  for (size_t i = 0; i < buckets_.size(); ++i) {
    GradientBucket& b = buckets_[i];
    b.shard_counts = EvenShards(static_cast<size_t>(b.count), ranks_);
    b.own_begin = static_cast<int64_t>(ShardOffset(b.shard_counts, rank_));
    b.own_count = static_cast<int64_t>(b.shard_counts[rank_]);
    b.own_offset = own_;
    own_ += b.own_count;
    max_bucket_ = std::max(max_bucket_, b.count);
    ForEachPiece(i, b.own_begin, b.own_begin + b.own_count, [&](const BucketPiece& p) {
      const int64_t flat = flat_start[p.param] + p.param_offset;
      if (!own_runs_.empty() && own_runs_.back().flat_offset + own_runs_.back().count == flat) {
        own_runs_.back().count += p.count;
      } else {
        own_runs_.push_back({flat, p.count});
      }
    });
  }
}

void GradientBuckets::ToHost(Backend& backend, size_t b, int64_t lo, int64_t hi, const std::vector<Buffer>& bufs,
                             float* host) const {
  ForEachPiece(b, lo, hi, [&](const BucketPiece& p) {
    backend.CopyDeviceToHost(bufs[p.param].data() + p.param_offset, host + p.bucket_offset, p.count * kBytes);
  });
  backend.Synchronize();
}

void GradientBuckets::ToDevice(Backend& backend, size_t b, int64_t lo, int64_t hi, const float* host,
                               std::vector<Buffer>* bufs) const {
  ForEachPiece(b, lo, hi, [&](const BucketPiece& p) {
    backend.CopyHostToDevice(host + p.bucket_offset, (*bufs)[p.param].data() + p.param_offset, p.count * kBytes);
  });
}

}  // namespace grpo
