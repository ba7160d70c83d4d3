#include "learner/gradient_reducer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace grpo {

absl::StatusOr<std::unique_ptr<GradientReducer>> GradientReducer::Create(Collective& collective,
                                                                         const CausalLM& model,
                                                                         const GradientReducerOptions& options) {
  if (collective.memory() != Collective::Memory::kHost) {
    return absl::UnimplementedError("gradient reducer: gradients are staged through host memory; "
                                    "a device-memory collective (nccl) needs a device path");
  }
  if (options.bucket_elements <= 0 || options.bucket_elements > int64_t{INT32_MAX}) {
    return absl::InvalidArgumentError(absl::StrCat("gradient reducer: a bucket of ", options.bucket_elements,
                                                   " floats; it must hold 1 to 2^31-1"));
  }
  std::unique_ptr<GradientReducer> r(new GradientReducer(collective, model.backend(), options));
  r->Layout(model);
  if (collective.size() > 1) r->thread_ = std::thread([p = r.get()] { p->CommunicationLoop(); });
  return r;
}

void GradientReducer::Layout(const CausalLM& model) {
  buckets_of_param_.assign(model.num_parameters(), {});
  int64_t at = 0;
  for (const std::vector<size_t>& group : model.gradient_ready_order()) {
    for (size_t param : group) {
      const int64_t n = NumElements(model.parameter_specs()[param].shape);
      for (int64_t offset = 0; offset < n;) {
        if (buckets_.empty() || buckets_.back().count == options_.bucket_elements) {
          buckets_.push_back(Bucket{{}, at, 0});
        }
        Bucket& b = buckets_.back();
        const int64_t count = std::min(n - offset, options_.bucket_elements - b.count);
        b.pieces.push_back({param, offset, count});
        b.count += count;
        buckets_of_param_[param].push_back(buckets_.size() - 1);
        offset += count;
        at += count;
      }
    }
  }
  host_.assign(at, 0.0f);
  Reset();
}

void GradientReducer::Reset() {
  pending_.clear();
  for (const Bucket& b : buckets_) pending_.push_back(b.pieces.size());
  next_ = 0;
  absl::MutexLock l(&mu_);
  reduced_ = 0;
}

GradientReducer::~GradientReducer() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  thread_.join();
}

GradientsReady GradientReducer::Hook(std::vector<Buffer>* grads) {
  if (!options_.overlap || collective_.size() == 1) return nullptr;
  return [this, grads](std::span<const size_t> params) { OnReady(params, *grads); };
}

void GradientReducer::OnReady(std::span<const size_t> params, std::vector<Buffer>& grads) {
  for (size_t param : params) {
    for (size_t b : buckets_of_param_[param]) --pending_[b];
  }
  while (next_ < buckets_.size() && pending_[next_] == 0) StartNext(grads);
}

void GradientReducer::StartNext(std::vector<Buffer>& grads) {
  const Bucket& b = buckets_[next_];
  int64_t at = b.host_offset;
  for (const Piece& p : b.pieces) {
    backend_.CopyDeviceToHost(grads[p.param].data() + p.offset, host_.data() + at,
                              p.count * static_cast<int64_t>(sizeof(float)));
    at += p.count;
  }
  backend_.Synchronize();
  absl::MutexLock l(&mu_);
  queue_.push_back(next_++);
}

void GradientReducer::CommunicationLoop() {
  while (true) {
    size_t b = 0;
    bool skip = false;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &GradientReducer::HasWork));
      if (stop_) return;  // buckets still queued are dropped: the step was abandoned
      b = queue_.front();
      queue_.pop_front();
      skip = !error_.ok();  // the group is broken: later calls would only repeat the error
    }
    absl::Status s;
    if (!skip) s = collective_.AllReduceSum(absl::MakeSpan(host_.data() + buckets_[b].host_offset, buckets_[b].count));
    absl::MutexLock l(&mu_);
    if (!s.ok() && error_.ok()) error_ = s;
    ++reduced_;
  }
}

absl::Status GradientReducer::Finish(std::vector<Buffer>* grads) {
  if (collective_.size() == 1) return absl::OkStatus();
  if (grads->size() != buckets_of_param_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("gradient reducer: ", grads->size(), " gradients for ",
                                                   buckets_of_param_.size(), " parameters"));
  }
  started_early_ = next_;
  while (next_ < buckets_.size()) StartNext(*grads);
  absl::Status error;
  {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &GradientReducer::AllReduced));
    error = error_;
  }
  Reset();
  GRPO_RETURN_IF_ERROR(error);
  for (const Bucket& b : buckets_) {
    int64_t at = b.host_offset;
    for (const Piece& p : b.pieces) {
      backend_.CopyHostToDevice(host_.data() + at, (*grads)[p.param].data() + p.offset,
                                p.count * static_cast<int64_t>(sizeof(float)));
      at += p.count;
    }
  }
  return absl::OkStatus();
}

}  // namespace grpo
