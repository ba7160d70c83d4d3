// The settings of a multi-turn tool environment (docs/tools.md) in one place: the recipe's
// `tools:` section, `grpo generate`'s --tools-* flags and RolloutService's
// GenerateRequest.tools (proto/rollout.proto ToolEnvironment) all come to a ToolSettings, and
// OpenToolEnvironment makes the environment from it, so every path runs the same tool.
//
// Contract:
//  - environment is "none" (single turn), "calculator", "python" or "plugin"; plugin and
//    plugin_config are read only with "plugin". ValidateToolSettings names the recipe key
//    (tools.*) of the first bad setting.
//  - DefaultToolTags(environment): the python tool's fenced blocks, the tagged markers otherwise.
//  - The proto form carries every setting but call_threads (the engine's, set when it starts);
//    FromProto fills what the proto leaves empty or 0 with the defaults below (ToolTags of the
//    environment, 5000 ms, 32 tokens) and validates.
#ifndef GRPO_ROLLOUT_TOOL_SETTINGS_H_
#define GRPO_ROLLOUT_TOOL_SETTINGS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "proto/rollout.pb.h"
#include "rollout/environment.h"

namespace grpo {

struct ToolSettings {
  std::string environment = "none";
  ToolTags tags;
  std::string plugin;                // the plugin's shared library
  std::string plugin_config = "{}";  // a JSON object text for the plugin's create()
  int64_t timeout_ms = 5000;         // per call of the python tool or a plugin, in [1, 600000]
  int64_t max_calls = 2;             // per sample, in [0, 1000000]
  int64_t max_output_tokens = 32;    // per result, > 0
  // The engine's threads for tool calls (EngineOptions::tool_call_threads), in [0, 256]; 0: calls
  // run on the engine's loop thread. Fixed when an engine starts, so not in the proto form: a
  // server takes it at its start (`grpo rollout serve --tools-call-threads`).
  int64_t call_threads = 4;
  bool enabled() const { return environment != "none"; }
  bool operator==(const ToolSettings&) const = default;
};

ToolTags DefaultToolTags(const std::string& environment);

// InvalidArgument naming the tools.* key of the first bad setting.
absl::Status ValidateToolSettings(const ToolSettings& settings);

// The environment of `settings` (null for "none"). Errors: the python tool's sandbox or the
// plugin cannot be set up (the reason, with the key: tools.environment or tools.plugin).
absl::StatusOr<std::shared_ptr<Environment>> OpenToolEnvironment(const ToolSettings& settings);

// Proto form (GenerateRequest.tools). ToolSettingsFromProto: InvalidArgument naming the field.
void ToolSettingsToProto(const ToolSettings& settings, grpo::v1::ToolEnvironment* out);
absl::StatusOr<ToolSettings> ToolSettingsFromProto(const grpo::v1::ToolEnvironment& proto);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_TOOL_SETTINGS_H_
