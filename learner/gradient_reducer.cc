#include "learner/gradient_reducer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace grpo {

absl::StatusOr<std::unique_ptr<GradientReducer>> GradientReducer::Create(Collective& collective, Backend& backend,
                                                                         const GradientBuckets& layout,
                                                                         const GradientReducerOptions& options) {
  if (collective.memory() != Collective::Memory::kHost) {
    return absl::UnimplementedError("gradient reducer: gradients are staged through host memory; "
                                    "a device-memory collective (nccl) needs a device path");
  }
  if (layout.ranks() != collective.size() || layout.rank() != collective.rank()) {
    return absl::InvalidArgumentError(absl::StrCat("gradient reducer: a layout for rank ", layout.rank(), " of ",
                                                   layout.ranks(), " on rank ", collective.rank(), " of ",
                                                   collective.size()));
  }
  if (options.staging_buckets < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient reducer: ", options.staging_buckets, " staging buckets; at least 1"));
  }
  std::unique_ptr<GradientReducer> r(new GradientReducer(collective, backend, layout, options));
  r->shard_sums_.assign(layout.own_elements(), 0.0f);
  const size_t images = std::min<size_t>(options.staging_buckets, std::max<size_t>(layout.buckets().size(), 1));
  r->images_.assign(images, std::vector<float>(layout.max_bucket_elements()));
  r->Reset();
  r->thread_ = std::thread([p = r.get()] { p->CommunicationLoop(); });
  return r;
}

int64_t GradientReducer::host_elements() const {
  int64_t n = static_cast<int64_t>(shard_sums_.size());
  for (const std::vector<float>& image : images_) n += static_cast<int64_t>(image.size());
  return n;
}

void GradientReducer::Reset() {
  pending_.clear();
  for (const GradientBucket& b : layout_.buckets()) pending_.push_back(b.pieces.size());
  next_ = 0;
  absl::MutexLock l(&mu_);
  reduced_ = 0;
  free_images_.clear();
  for (size_t i = 0; i < images_.size(); ++i) free_images_.push_back(i);
}

GradientReducer::~GradientReducer() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  thread_.join();
}

GradientsReady GradientReducer::Hook(const std::vector<Buffer>* grads) {
  if (!options_.overlap || collective_.size() == 1) return nullptr;
  return [this, grads](std::span<const size_t> params) { OnReady(params, *grads); };
}

void GradientReducer::OnReady(std::span<const size_t> params, const std::vector<Buffer>& grads) {
  for (size_t param : params) {
    for (size_t b : layout_.buckets_of(param)) --pending_[b];
  }
  while (next_ < num_buckets() && pending_[next_] == 0) StartNext(grads);
}

void GradientReducer::StartNext(const std::vector<Buffer>& grads) {
  size_t image = 0;
  {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &GradientReducer::HasFreeImage));
    image = free_images_.back();
    free_images_.pop_back();
  }
  const GradientBucket& b = layout_.buckets()[next_];
  layout_.ToHost(backend_, next_, 0, b.count, grads, images_[image].data());
  absl::MutexLock l(&mu_);
  queue_.push_back({next_++, image});
}

void GradientReducer::CommunicationLoop() {
  while (true) {
    Started s;
    bool skip = false;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &GradientReducer::HasWork));
      if (stop_) return;  // buckets still queued are dropped: the step was abandoned
      s = queue_.front();
      queue_.pop_front();
      skip = !error_.ok();  // the group is broken: later calls would only repeat the error
    }
    absl::Status status;
    if (!skip) {
      const GradientBucket& b = layout_.buckets()[s.bucket];
      float* image = images_[s.image].data();
      status = collective_.ReduceScatterSum(absl::MakeSpan(image, b.count), b.shard_counts);
      if (status.ok()) {
        std::copy(image + b.own_begin, image + b.own_begin + b.own_count, shard_sums_.begin() + b.own_offset);
      }
    }
    absl::MutexLock l(&mu_);
    if (!status.ok() && error_.ok()) error_ = status;
    free_images_.push_back(s.image);
    ++reduced_;
  }
}

absl::Status GradientReducer::Finish(const std::vector<Buffer>& grads) {
  if (grads.size() != layout_.num_parameters()) {
    return absl::InvalidArgumentError(absl::StrCat("gradient reducer: ", grads.size(), " gradients for ",
                                                   layout_.num_parameters(), " parameters"));
  }
  started_early_ = next_;
  while (next_ < num_buckets()) StartNext(grads);
  absl::Status error;
  {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &GradientReducer::AllReduced));
    error = error_;
  }
  Reset();
  return error;
}

}  // namespace grpo
