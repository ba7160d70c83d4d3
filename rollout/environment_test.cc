// The built-in calculator over a table of expressions and errors, the tagged tool's call parsing
// and result, and the loss mask of environment spans.
#include "rollout/environment.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace grpo {
namespace {

TEST(CalculatorTest, EvaluatesIntegerArithmetic) {
  const std::vector<std::pair<std::string, std::string>> table = {
      {"47+38", "85"},
      {" 2 * (3 + 4) - 5 ", "9"},
      {"-7/2", "-3"},
      {"7%3", "1"},
      {"--4", "4"},
      {"9223372036854775807", "9223372036854775807"},
      {"1+2*3", "7"},
      {"(1+2)*3", "9"},
      {"100/7/2", "7"},
  };
  for (const auto& [expr, want] : table) EXPECT_EQ(Calculate(expr), want) << expr;
}

TEST(CalculatorTest, ReportsErrorsAsOutput) {
  EXPECT_EQ(Calculate("1/0"), "error: division by zero");
  EXPECT_EQ(Calculate("5%0"), "error: division by zero");
  EXPECT_EQ(Calculate("9223372036854775807+1"), "error: result beyond 64 bits");
  EXPECT_EQ(Calculate("99999999999999999999"), "error: number beyond 64 bits");
  EXPECT_EQ(Calculate("2+"), "error: unexpected end of expression");
  EXPECT_EQ(Calculate("2+x"), "error: unexpected 'x'");
  EXPECT_EQ(Calculate("(2+3"), "error: missing ')'");
  EXPECT_EQ(Calculate("2 3"), "error: unexpected '3'");
  EXPECT_EQ(Calculate(""), "error: unexpected end of expression");
  EXPECT_EQ(Calculate("2+\xc3\xa9"), "error: unexpected non-ASCII character");
  EXPECT_EQ(Calculate(std::string(200, '(') + "1" + std::string(200, ')')), "error: nested too deeply");
}

TEST(TaggedToolTest, RunsTheLastCallAndWrapsItsOutput) {
  auto env = MakeCalculatorEnvironment();
  EXPECT_EQ(env->call_end(), "</tool_call>");
  auto r = env->Call("<think>first <tool_call>1+1</tool_call> then</think> <tool_call>47+38</tool_call>");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool, "calculator");
  EXPECT_EQ(r->call, "<tool_call>47+38</tool_call>");
  EXPECT_EQ(nlohmann::json::parse(r->arguments), (nlohmann::json{{"expression", "47+38"}}));
  EXPECT_EQ(r->output, "85");
  EXPECT_EQ(r->text(), "<tool_result>85</tool_result>");

  auto orphan = env->Call("no start</tool_call>");
  ASSERT_TRUE(orphan.ok());
  EXPECT_EQ(orphan->output, "error: no <tool_call> before </tool_call>");
  EXPECT_EQ(orphan->arguments, "{}");
  EXPECT_EQ(env->Call("no marker at all").status().code(), absl::StatusCode::kInvalidArgument);
  // A body that is not UTF-8 still gives JSON arguments (U+FFFD for the bad byte).
  auto bad = env->Call("<tool_call>1\xff</tool_call>");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(nlohmann::json::parse(bad->arguments)["expression"], "1\xef\xbf\xbd");

  ToolTags fence{"```calc\n", "\n```", "```output\n", "\n```\n"};
  auto custom = MakeCalculatorEnvironment(fence);
  auto c = custom->Call("Let me compute.\n```calc\n6*7\n```");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->output, "42");
  EXPECT_EQ(c->text(), "```output\n42\n```\n");
}

TEST(GeneratedTokenMaskTest, ZeroesEnvironmentSpans) {
  auto mask = GeneratedTokenMask(8, {{2, 3, {}}, {6, 1, {}}});
  ASSERT_TRUE(mask.ok());
  EXPECT_EQ(*mask, (std::vector<uint8_t>{1, 1, 0, 0, 0, 1, 0, 1}));
  EXPECT_EQ(*GeneratedTokenMask(3, {}), (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_FALSE(GeneratedTokenMask(4, {{2, 3, {}}}).ok());           // past the end
  EXPECT_FALSE(GeneratedTokenMask(8, {{4, 2, {}}, {1, 1, {}}}).ok());  // out of order
}

}  // namespace
}  // namespace grpo
