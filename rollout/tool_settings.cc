#include "rollout/tool_settings.h"

#include <utility>

#include "absl/time/time.h"
#include <nlohmann/json.hpp>
#include "rollout/python_tool.h"
#include "rollout/tool_plugin.h"

namespace grpo {
namespace {

constexpr int64_t kMaxCalls = 2147483647;
constexpr int64_t kMaxTimeoutMs = 600000;
constexpr int64_t kMaxCallThreads = 256;  // RolloutEngine::Create's limit

absl::Status Bad(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(key + ": " + what);
}

absl::StatusOr<std::shared_ptr<Environment>> OpenPlugin(const ToolSettings& s) {
  ToolPluginOptions po;
  po.path = s.plugin;
  po.config_json = s.plugin_config;
  po.tags = s.tags;
  po.timeout = absl::Milliseconds(s.timeout_ms);
  absl::StatusOr<std::unique_ptr<Environment>> plugin = MakePluginEnvironment(po);
  if (!plugin.ok()) return grpo::WithContext(plugin.status(), "tools.plugin");
  return std::shared_ptr<Environment>(std::move(plugin).value());
}

absl::StatusOr<std::shared_ptr<Environment>> OpenPython(const ToolSettings& s) {
  PythonToolOptions po;
  po.tags = s.tags;
  po.timeout = absl::Milliseconds(s.timeout_ms);
  absl::StatusOr<std::unique_ptr<Environment>> python = MakePythonEnvironment(po);
  if (!python.ok()) return grpo::WithContext(python.status(), "tools.environment python: ");
  return std::shared_ptr<Environment>(std::move(python).value());
}

}  // namespace

ToolTags DefaultToolTags(const std::string& environment) {
  return environment == "python" ? PythonToolTags() : ToolTags{};
}

absl::Status ValidateToolSettings(const ToolSettings& s) {
  if (s.environment != "none" && s.environment != "calculator" && s.environment != "python" &&
      s.environment != "plugin") {
    return Bad("tools.environment", "unknown environment '" + s.environment + "' (none, calculator, python, plugin)");
  }
  const bool plugin = s.environment == "plugin";
  if (plugin && s.plugin.empty()) return Bad("tools.plugin", "tools.environment plugin needs the path of the plugin's shared library");
  if (!plugin && !s.plugin.empty()) return Bad("tools.plugin", "is read only with tools.environment plugin");
  if (!plugin && s.plugin_config != "{}") return Bad("tools.plugin_config", "is read only with tools.environment plugin");
  const nlohmann::json config = nlohmann::json::parse(s.plugin_config, nullptr, false);
  if (!config.is_object()) return Bad("tools.plugin_config", "must be a JSON object");
  if (s.timeout_ms < 1 || s.timeout_ms > kMaxTimeoutMs) return Bad("tools.timeout_ms", "must be in [1, 600000]");
  if (s.max_calls < 0 || s.max_calls > kMaxCalls) {
    return Bad("tools.max_calls", "must be in [0, " + std::to_string(kMaxCalls) + "]");
  }
  if (s.max_output_tokens <= 0) return Bad("tools.max_output_tokens", "must be positive");
  if (s.call_threads < 0 || s.call_threads > kMaxCallThreads) {
    return Bad("tools.call_threads", "must be in [0, " + std::to_string(kMaxCallThreads) +
                                         "] (0: calls run on the engine's loop thread)");
  }
  for (const std::string* tag : {&s.tags.call_start, &s.tags.call_end, &s.tags.result_start, &s.tags.result_end}) {
    if (tag->empty()) return Bad("tools.call_start", "the call and result markers must not be empty");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Environment>> OpenToolEnvironment(const ToolSettings& s) {
  GRPO_RETURN_IF_ERROR(ValidateToolSettings(s));
  if (s.environment == "calculator") return std::shared_ptr<Environment>(MakeCalculatorEnvironment(s.tags));
  if (s.environment == "plugin") return OpenPlugin(s);
  if (s.environment == "python") return OpenPython(s);
  return std::shared_ptr<Environment>();
}

void ToolSettingsToProto(const ToolSettings& s, grpo::v1::ToolEnvironment* out) {
  out->set_environment(s.environment);
  out->set_call_start(s.tags.call_start);
  out->set_call_end(s.tags.call_end);
  out->set_result_start(s.tags.result_start);
  out->set_result_end(s.tags.result_end);
  out->set_plugin(s.plugin);
  out->set_plugin_config(s.plugin_config);
  out->set_timeout_ms(static_cast<uint32_t>(s.timeout_ms));
  out->set_max_calls(static_cast<uint32_t>(s.max_calls));
  out->set_max_output_tokens(static_cast<uint32_t>(s.max_output_tokens));
}

absl::StatusOr<ToolSettings> ToolSettingsFromProto(const grpo::v1::ToolEnvironment& p) {
  ToolSettings s;
  s.environment = p.environment();
  if (s.environment == "none" || s.environment.empty()) {
    return absl::InvalidArgumentError("tools.environment must be calculator, python or plugin (omit tools for single-turn samples)");
  }
  s.tags = DefaultToolTags(s.environment);
  for (auto [field, tag] : {std::pair{&p.call_start(), &s.tags.call_start}, std::pair{&p.call_end(), &s.tags.call_end},
                            std::pair{&p.result_start(), &s.tags.result_start},
                            std::pair{&p.result_end(), &s.tags.result_end}}) {
    if (!field->empty()) *tag = *field;
  }
  s.plugin = p.plugin();
  if (!p.plugin_config().empty()) s.plugin_config = p.plugin_config();
  if (p.timeout_ms() != 0) s.timeout_ms = p.timeout_ms();
  s.max_calls = p.max_calls();
  if (p.max_output_tokens() != 0) s.max_output_tokens = p.max_output_tokens();
  GRPO_RETURN_IF_ERROR(ValidateToolSettings(s));
  return s;
}

}  // namespace grpo
