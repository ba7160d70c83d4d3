// PluginRule: a rule implemented by a shared-library plugin (reward/plugin_abi.h), run in
// sandboxed worker processes (sandbox/sandbox.h) so that a plugin that crashes, hangs, leaks or
// attacks cannot take the service down: a worker cannot signal the host, write the file
// system, reach the network or the host's descriptors, and everything it starts dies with it.
//
// Contract:
//  - Create starts one worker and waits (startup_timeout) for its hello: a missing library,
//    a missing entry symbol, an ABI mismatch or a failing create() is a configuration error.
//  - Score sends the item to an idle worker (starting one if needed; at most `workers` run at
//    once, callers beyond that wait) and waits at most `timeout` for the reply. On timeout the
//    worker is killed (SIGKILL) and reaped and the item gets DeadlineExceeded; if the worker
//    dies (signal, exit, memory limit: RLIMIT_AS = memory_mb) the item gets Unavailable naming
//    the signal. The next call starts a fresh worker. A plugin's own item error comes back as
//    InvalidArgument with its message.
//  - Each worker is the PID 1 of its own sandbox: killing it kills every process it started.
//    It sees the worker binary and the library (bound read-only at kWorkerInside and
//    kLibraryInside, so both must be readable by the sandbox's outside uid), the system's
//    read-only directories and a private /tmp; its fds 0-2 are /dev/null (its output never
//    reaches the host's), 3 and 4 the pipes. Workers get SIGKILL when the host dies
//    (PR_SET_PDEATHSIG) and are killed in ~PluginRule.
//  - Where user namespaces are forbidden, Create fails with FailedPrecondition unless
//    sandbox.isolation is kWeak (docs/sandbox.md).
//  - Creating a PluginRule sets SIGPIPE to ignored in the host process (a dead worker's pipe
//    must give EPIPE, not kill the host).
#ifndef GRPO_REWARD_PLUGIN_HOST_H_
#define GRPO_REWARD_PLUGIN_HOST_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "reward/rule.h"
#include "sandbox/sandbox.h"

namespace grpo::reward {

struct PluginOptions {
  std::string path;                      // the shared library
  std::string config_json = "{}";        // passed to the plugin's create()
  std::vector<std::string> worker_argv;  // worker command; "--plugin P --config J" is appended
  absl::Duration timeout = absl::Seconds(1);  // per item
  absl::Duration startup_timeout = absl::Seconds(5);
  int workers = 2;                       // concurrent worker processes
  int memory_mb = 1024;                  // address-space limit of a worker
  sandbox::Config sandbox;               // isolation of the workers (binds and fds are added)
};

inline constexpr const char* kWorkerInside = "/sandbox/worker";
inline constexpr const char* kLibraryInside = "/sandbox/plugin.so";

// The worker command the `grpo` binary uses for itself: <this executable> reward plugin-worker.
std::vector<std::string> SelfWorkerArgv();

class PluginRule : public Rule {
 public:
  static absl::StatusOr<std::unique_ptr<PluginRule>> Create(PluginOptions options);
  ~PluginRule() override;
  std::string_view type() const override { return "plugin"; }
  std::string Describe() const override { return description_; }
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

  const std::string& plugin_name() const { return plugin_name_; }
  // Workers started so far (restarts included); for tests and logs.
  int workers_started() const;

  struct Worker;

 private:
  explicit PluginRule(PluginOptions options);
  absl::StatusOr<Worker*> Acquire() const ABSL_LOCKS_EXCLUDED(mu_);
  void Release(Worker* w) const ABSL_LOCKS_EXCLUDED(mu_);
  // A caller may take a worker: an idle one, or room to start one.
  bool CanAcquire() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PluginOptions options_;
  std::string plugin_name_;
  std::string description_;
  // A Worker is used by the one caller that acquired it, outside mu_.
  mutable absl::Mutex mu_;
  mutable std::vector<std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<Worker*> idle_ ABSL_GUARDED_BY(mu_);
  mutable int started_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_PLUGIN_HOST_H_
