// Tool plugins: an environment for multi-turn rollouts (rollout/environment.h) implemented by a
// shared library with the C ABI of rollout/tool_plugin_abi.h, run the way reward plugins are
// (reward/plugin_host.h): in sandboxed worker processes with their own namespaces, no network,
// a read-only system, seccomp, an address-space limit, and their output to /dev/null.
//
// A call is a tagged tool call (ToolTags): its body goes to the plugin's run(), whose answer is
// the result the model sees. A plugin that misbehaves costs the call, never the rollout:
//   the plugin returns an error         "error: MESSAGE"
//   runs past `timeout`                 "error: the tool timed out after T" (worker killed)
//   crashes, exits, exceeds memory_mb   "error: the tool crashed (worker killed by signal N)"
//   answers more than max_output_bytes  the first max_output_bytes, then "...[output cut]"
// and the next call starts a fresh worker. A plugin that cannot be loaded (missing file or
// symbol, ABI mismatch, failing create()) is MakePluginEnvironment's error, naming the path.
#ifndef GRPO_ROLLOUT_TOOL_PLUGIN_H_
#define GRPO_ROLLOUT_TOOL_PLUGIN_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"
#include "rollout/environment.h"
#include "sandbox/sandbox.h"

namespace grpo {

struct ToolPluginOptions {
  std::string path;                      // the shared library
  std::string config_json = "{}";        // passed to the plugin's create()
  ToolTags tags;                         // the call and result markers
  // The worker command; "--abi tool --max-output N --plugin P --config J" is appended. Empty:
  // this executable's `reward plugin-worker` (the `grpo` binary).
  std::vector<std::string> worker_argv;
  absl::Duration timeout = absl::Seconds(5);  // per call
  int memory_mb = 256;                   // address-space limit of a worker
  size_t max_output_bytes = 1024;        // of one answer; at most 1 MiB
  int workers = 1;                       // concurrent worker processes
  sandbox::Config sandbox;               // isolation of the workers
};

// The plugin as an Environment named by the plugin's `name`, with argument "input". Thread-safe.
absl::StatusOr<std::unique_ptr<Environment>> MakePluginEnvironment(ToolPluginOptions options);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_TOOL_PLUGIN_H_
