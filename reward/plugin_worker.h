// The plugin worker process: loads one plugin library (dlopen), then answers score requests
// from the host over two inherited pipe descriptors (kRequestFd, kReplyFd) until the request
// pipe closes. Run by PluginRule (plugin_host.h) through `grpo reward plugin-worker` or the
// standalone //reward:plugin_worker binary; never started by hand.
#ifndef GRPO_REWARD_PLUGIN_WORKER_H_
#define GRPO_REWARD_PLUGIN_WORKER_H_

#include <cstddef>
#include <string>

namespace grpo::reward {

inline constexpr int kRequestFd = 3;
inline constexpr int kReplyFd = 4;

// Serves requests until end of input; returns the process exit code (0 on a clean end).
// On a load failure it sends a fatal hello and returns 1.
int RunPluginWorker(const std::string& plugin_path, const std::string& config_json);

// The same for a tool plugin (rollout/tool_plugin_abi.h): each request's completion is a call's
// input, its meta "deadline_ms" the call's deadline; the reply is kOk with the answer or
// kItemError with the plugin's error message, at most max_output bytes of the plugin's text
// followed by kToolOutputCut when the plugin's answer was longer.
int RunToolPluginWorker(const std::string& plugin_path, const std::string& config_json, size_t max_output);

inline constexpr const char* kToolOutputCut = "...[output cut]";
inline constexpr size_t kMaxToolOutputBytes = size_t{1} << 20;

// main() of a worker binary: argv has "--plugin PATH --config JSON" somewhere after argv[0],
// and for a tool plugin "--abi tool --max-output N" (bytes, 1 to kMaxToolOutputBytes).
int PluginWorkerMain(int argc, char** argv);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_PLUGIN_WORKER_H_
