#include "sandbox/fork_thread.h"

#include <signal.h>

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace grpo::sandbox::internal {
namespace {

class ForkThread {
 public:
  static ForkThread& Get() {
    static ForkThread* t = new ForkThread;  // never destroyed: sandboxes outlive every caller
    return *t;
  }
  void Run(const std::function<void()>& fn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_, absl::Condition(this, &ForkThread::Free));
    job_ = &fn;
    done_ = false;
    mu_.Await(absl::Condition(&done_));
    job_ = nullptr;
  }

 private:
  ForkThread() { std::thread([this] { Loop(); }).detach(); }
  bool Free() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return job_ == nullptr; }
  bool Pending() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return job_ != nullptr && !done_; }
  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    for (;;) {
      const std::function<void()>* fn;
      {
        absl::MutexLock l(&mu_, absl::Condition(this, &ForkThread::Pending));
        fn = job_;
      }
      (*fn)();  // the caller waits in Run, so *fn stays valid
      absl::MutexLock l(&mu_);
      done_ = true;
    }
  }

  absl::Mutex mu_;
  const std::function<void()>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void RunOnForkThread(const std::function<void()>& fn) { ForkThread::Get().Run(fn); }

}  // namespace grpo::sandbox::internal
