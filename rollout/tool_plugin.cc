#include "rollout/tool_plugin.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "reward/plugin_host.h"
#include "reward/plugin_worker.h"

namespace grpo {
namespace {

// What the model sees of a call that did not answer: the host's status, as a tool's error.
std::string FailedCallOutput(const absl::Status& st, const reward::PluginRule& rule, absl::Duration timeout) {
  const std::string message(st.message());
  switch (st.code()) {
    case absl::StatusCode::kInvalidArgument: {  // the plugin's own error: "plugin NAME: MESSAGE"
      const std::string prefix = "plugin " + rule.plugin_name() + ": ";
      return "error: " + (message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message);
    }
    case absl::StatusCode::kDeadlineExceeded:
      return absl::StrCat("error: the tool timed out after ", absl::FormatDuration(timeout));
    case absl::StatusCode::kUnavailable: {  // "plugin NAME crashed: worker killed by signal N"
      const size_t how = message.find(": ");
      return "error: the tool crashed (" + (how == std::string::npos ? message : message.substr(how + 2)) + ")";
    }
    default:
      return "error: the tool failed: " + message;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Environment>> MakePluginEnvironment(ToolPluginOptions o) {
  if (o.max_output_bytes == 0 || o.max_output_bytes > reward::kMaxToolOutputBytes) {
    return absl::InvalidArgumentError("tool plugin: max_output_bytes must be in [1, 1048576]");
  }
  reward::PluginOptions po;
  po.path = o.path;
  po.config_json = o.config_json;
  po.worker_argv = o.worker_argv.empty() ? reward::SelfWorkerArgv() : o.worker_argv;
  po.worker_argv.insert(po.worker_argv.end(), {"--abi", "tool", "--max-output", std::to_string(o.max_output_bytes)});
  po.timeout = o.timeout;
  po.workers = o.workers;
  po.memory_mb = o.memory_mb;
  po.sandbox = o.sandbox;
  absl::StatusOr<std::unique_ptr<reward::PluginRule>> created = reward::PluginRule::Create(std::move(po));
  if (!created.ok()) return grpo::WithContext(created.status(), "tool plugin");
  std::shared_ptr<const reward::PluginRule> rule = std::move(created).value();
  const std::string name = rule->plugin_name();
  ToolFunction run = [rule, timeout = o.timeout](const std::string& body) -> std::string {
    reward::RewardItem call;
    call.completion = body;
    call.meta["deadline_ms"] = std::to_string(absl::ToInt64Milliseconds(timeout));
    absl::StatusOr<reward::RuleOutput> answer = rule->Score(call);
    return answer.ok() ? answer->detail : FailedCallOutput(answer.status(), *rule, timeout);
  };
  return MakeTaggedTool(name, "input", std::move(o.tags), std::move(run));
}

}  // namespace grpo
