#include "sandbox/pool.h"

#include <utility>

namespace grpo::sandbox {

Pool::Pool(Config config, int size) : config_(std::move(config)), size_(size < 1 ? 1 : size) {
  refill_ = std::thread([this] { Refill(); });
}

Pool::~Pool() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  refill_.join();
  absl::MutexLock l(&mu_);
  ready_.clear();  // kills and reaps the waiting sandboxes
}

bool Pool::NeedsMore() const {
  return stopping_ || (!failing_ && static_cast<int>(ready_.size()) < size_);
}

void Pool::Refill() {
  for (;;) {
    {
      absl::MutexLock l(&mu_, absl::Condition(this, &Pool::NeedsMore));
      if (stopping_) return;
    }
    absl::StatusOr<std::unique_ptr<Sandbox>> sb = Sandbox::Create(config_);
    absl::MutexLock l(&mu_);
    if (!sb.ok()) {
      failing_ = true;  // Run reports the error when it creates one itself
      continue;
    }
    ready_.push_back(std::move(*sb));
  }
}

int Pool::ready() const {
  absl::MutexLock l(&mu_);
  return static_cast<int>(ready_.size());
}

absl::StatusOr<Result> Pool::Run(const Job& job) {
  std::unique_ptr<Sandbox> sb;
  {
    absl::MutexLock l(&mu_);
    if (!ready_.empty()) {
      sb = std::move(ready_.front());
      ready_.pop_front();
    }
  }
  if (!sb) {
    absl::StatusOr<std::unique_ptr<Sandbox>> fresh = Sandbox::Create(config_);
    if (!fresh.ok()) return fresh.status();
    sb = std::move(*fresh);
    absl::MutexLock l(&mu_);
    failing_ = false;  // setup works again: let the background thread refill
  }
  return sb->Run(job);
}

}  // namespace grpo::sandbox
