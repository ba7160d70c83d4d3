// Internal to sandbox/: the one thread that clones sandboxes. PR_SET_PDEATHSIG fires when the
// *thread* that forked the child exits, not only the process: a sandbox cloned by a short-lived
// caller thread (a gRPC handler thread, a test's thread) would be SIGKILLed while other threads
// still use it. This thread lives as long as the process and blocks every signal.
#ifndef GRPO_SANDBOX_FORK_THREAD_H_
#define GRPO_SANDBOX_FORK_THREAD_H_

#include <functional>

namespace grpo::sandbox::internal {

// Runs `fn` on the fork thread; returns when it has returned.
void RunOnForkThread(const std::function<void()>& fn);

}  // namespace grpo::sandbox::internal

#endif  // GRPO_SANDBOX_FORK_THREAD_H_
