// Tool settings: validation names the key, the proto form round-trips and fills defaults, and
// the calculator opened from settings answers a call.
#include "rollout/tool_settings.h"

#include <gtest/gtest.h>

namespace grpo {
namespace {

TEST(ToolSettingsTest, ValidationNamesTheKey) {
  const std::vector<std::pair<ToolSettings, std::string>> table = {
      {{.environment = "shell"}, "tools.environment"},
      {{.environment = "plugin"}, "tools.plugin"},
      {{.environment = "calculator", .plugin = "x.so"}, "tools.plugin"},
      {{.environment = "plugin", .plugin = "x.so", .plugin_config = "[1]"}, "tools.plugin_config"},
      {{.environment = "calculator", .timeout_ms = 0}, "tools.timeout_ms"},
      {{.environment = "calculator", .max_calls = -1}, "tools.max_calls"},
      {{.environment = "calculator", .max_output_tokens = 0}, "tools.max_output_tokens"},
      {{.environment = "calculator", .tags = {.call_end = ""}}, "tools.call_start"},
      {{.environment = "calculator", .call_threads = -1}, "tools.call_threads"},
      {{.environment = "calculator", .call_threads = 257}, "tools.call_threads"},
  };
  for (const auto& [settings, key] : table) {
    absl::Status s = ValidateToolSettings(settings);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_NE(std::string(s.message()).find(key), std::string::npos) << s;
  }
  EXPECT_TRUE(ValidateToolSettings({}).ok());
  EXPECT_TRUE(ValidateToolSettings({.environment = "calculator", .max_calls = 0}).ok());
  EXPECT_TRUE(ValidateToolSettings({.environment = "calculator", .call_threads = 0}).ok());
  EXPECT_EQ(ToolSettings().call_threads, 4);
}

TEST(ToolSettingsTest, ProtoRoundTrips) {
  const ToolSettings s{.environment = "plugin",
                       .tags = {"[c]", "[/c]", "[r]", "[/r]"},
                       .plugin = "/p/libsort.so",
                       .plugin_config = "{\"descending\":true}",
                       .timeout_ms = 700,
                       .max_calls = 3,
                       .max_output_tokens = 9};
  grpo::v1::ToolEnvironment p;
  ToolSettingsToProto(s, &p);
  absl::StatusOr<ToolSettings> back = ToolSettingsFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, s);
}

TEST(ToolSettingsTest, ProtoDefaultsFollowTheEnvironment) {
  grpo::v1::ToolEnvironment p;
  p.set_environment("python");
  absl::StatusOr<ToolSettings> s = ToolSettingsFromProto(p);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->tags, DefaultToolTags("python"));
  EXPECT_EQ(s->tags.call_start, "```python\n");
  EXPECT_EQ(s->timeout_ms, 5000);
  EXPECT_EQ(s->max_output_tokens, 32);
  EXPECT_EQ(s->max_calls, 0);
  p.set_environment("");
  EXPECT_EQ(ToolSettingsFromProto(p).status().code(), absl::StatusCode::kInvalidArgument);
  p.set_environment("calculator");
  p.set_plugin("/x.so");
  EXPECT_EQ(ToolSettingsFromProto(p).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ToolSettingsTest, OpensTheCalculator) {
  absl::StatusOr<std::shared_ptr<Environment>> none = OpenToolEnvironment({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
  absl::StatusOr<std::shared_ptr<Environment>> calc = OpenToolEnvironment({.environment = "calculator"});
  ASSERT_TRUE(calc.ok()) << calc.status();
  absl::StatusOr<ToolResult> r = (*calc)->Call("so <tool_call>6*7</tool_call>");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->output, "42");
  EXPECT_EQ(r->tool, "calculator");
}

}  // namespace
}  // namespace grpo
