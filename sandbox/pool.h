// A pool of warm sandboxes: each is cloned with its namespaces and file system set up ahead of
// time and waits on a pipe for its job, so a run costs an exec and the program's own work, not
// a fork of a large host plus the setup. Every sandbox still runs exactly one job (no state
// passes from one run to the next); a background thread keeps `size` of them ready. A job
// brings its own descriptors (Job::fds: a compiled program in a SealedMemfd, say), which reach
// the waiting sandbox with the job, so jobs that need files of their own use the pool too.
//
// Run is thread-safe. When none is ready, Run creates one itself (so a burst is slower, never
// refused). A setup failure (e.g. user namespaces unavailable) is returned by Run.
#ifndef GRPO_SANDBOX_POOL_H_
#define GRPO_SANDBOX_POOL_H_

#include <deque>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "sandbox/sandbox.h"

namespace grpo::sandbox {

class Pool {
 public:
  // config.capture_output must be true (Run captures output).
  Pool(Config config, int size);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  absl::StatusOr<Result> Run(const Job& job) ABSL_LOCKS_EXCLUDED(mu_);

  // Sandboxes ready right now; for tests and logs.
  int ready() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Refill() ABSL_LOCKS_EXCLUDED(mu_);
  bool NeedsMore() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Config config_;
  const int size_;
  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Sandbox>> ready_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool failing_ ABSL_GUARDED_BY(mu_) = false;  // the last background setup failed: stop trying
  std::thread refill_;
};

}  // namespace grpo::sandbox

#endif  // GRPO_SANDBOX_POOL_H_
