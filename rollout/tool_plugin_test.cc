#include "rollout/tool_plugin.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "sandbox/process_count.h"

namespace grpo {
namespace {

// An outside uid no other process has, so that the workers' leftovers are countable.
const int64_t kTestOutsideUid = 300000 + getpid();

ToolPluginOptions Options(const std::string& lib) {
  ToolPluginOptions o;
  o.path = "rollout/" + lib;
  o.worker_argv = {"reward/plugin_worker"};
  o.timeout = absl::Milliseconds(500);
  o.memory_mb = 64;
  o.max_output_bytes = 64;
  o.sandbox.outside_uid = kTestOutsideUid;
  return o;
}

// The output of a call whose body is `body`.
std::string Answer(Environment& env, const std::string& body) {
  absl::StatusOr<ToolResult> r = env.Call("text <tool_call>" + body + "</tool_call>");
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->output : "";
}

TEST(ToolPlugin, ExampleSortsAndReportsItsErrors) {
  auto env = MakePluginEnvironment(Options("libexample_tool_plugin.so"));
  ASSERT_TRUE(env.ok()) << env.status();
  absl::StatusOr<ToolResult> r = (*env)->Call("I will sort. <tool_call>3, 1 -7\n2</tool_call>");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool, "sort");
  EXPECT_EQ(r->output, "-7 1 2 3");
  EXPECT_EQ(r->arguments, R"({"input":"3, 1 -7\n2"})");
  EXPECT_EQ(r->text(), "<tool_result>-7 1 2 3</tool_result>");
  EXPECT_EQ(Answer(**env, "5 x"), "error: not an integer");
  EXPECT_EQ(Answer(**env, ""), "");
}

TEST(ToolPlugin, ConfigReachesCreate) {
  ToolPluginOptions o = Options("libexample_tool_plugin.so");
  o.config_json = R"({"descending": true})";
  auto env = MakePluginEnvironment(o);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(Answer(**env, "1 3 2"), "3 2 1");
}

TEST(ToolPlugin, LongAnswerIsCut) {
  auto env = MakePluginEnvironment(Options("libexample_tool_plugin.so"));
  ASSERT_TRUE(env.ok());
  std::string body, sorted;
  for (int i = 0; i < 40; ++i) absl::StrAppend(&body, i == 0 ? "" : " ", 100 + i);
  const std::string out = Answer(**env, body);
  EXPECT_EQ(out, body.substr(0, 64) + "...[output cut]");
}

TEST(ToolPlugin, LoadErrorsNameThePlugin) {
  auto missing = MakePluginEnvironment(Options("no_such_tool.so"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no_such_tool.so"), std::string::npos) << missing.status();
  ToolPluginOptions fail = Options("libmisbehaving_tool_plugin.so");
  fail.config_json = R"({"fail_create": true})";
  auto failed = MakePluginEnvironment(fail);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("asked to fail"), std::string::npos) << failed.status();
  // A reward plugin is not a tool plugin.
  ToolPluginOptions reward = Options("libexample_tool_plugin.so");
  reward.path = "reward/plugin_worker";  // not a shared library at all
  EXPECT_FALSE(MakePluginEnvironment(reward).ok());
  ToolPluginOptions big = Options("libexample_tool_plugin.so");
  big.max_output_bytes = 0;
  EXPECT_EQ(MakePluginEnvironment(big).status().code(), absl::StatusCode::kInvalidArgument);
}

// A plugin that crashes, hangs, leaks, floods or forks costs one call an "error: ..." answer; the
// process that hosts the rollouts goes on, and the next call gets a fresh worker.
TEST(ToolPlugin, MisbehavingPluginCostsOnlyTheCall) {
  auto env = MakePluginEnvironment(Options("libmisbehaving_tool_plugin.so"));
  ASSERT_TRUE(env.ok()) << env.status();
  Environment& e = **env;
  EXPECT_EQ(Answer(e, "hello"), "hello");

  const std::string crash = Answer(e, "crash");
  EXPECT_EQ(crash.rfind("error: the tool crashed (", 0), 0u) << crash;
  EXPECT_NE(crash.find("signal 11"), std::string::npos) << crash;
  EXPECT_EQ(Answer(e, "after crash"), "after crash");

  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Answer(e, "hang"), "error: the tool timed out after 500ms");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(Answer(e, "after hang"), "after hang");

  EXPECT_EQ(Answer(e, "leak").rfind("error: the tool crashed (", 0), 0u);
  EXPECT_EQ(Answer(e, "after leak"), "after leak");

  // 8 MiB to stdout and stderr go to /dev/null; the claimed 1 GiB answer is cut to the room.
  EXPECT_EQ(Answer(e, "flood"), std::string(64, 'y') + "...[output cut]");
  EXPECT_EQ(Answer(e, "error"), "error: asked to fail");

  EXPECT_EQ(Answer(e, "fork"), "forked");
  EXPECT_EQ(Answer(e, "after fork"), "after fork");
}

TEST(ToolPlugin, NothingOutlivesTheEnvironment) {
  {
    auto env = MakePluginEnvironment(Options("libmisbehaving_tool_plugin.so"));
    ASSERT_TRUE(env.ok()) << env.status();
    EXPECT_EQ(Answer(**env, "fork"), "forked");
    EXPECT_GT(sandbox::LiveProcessesOfUid(kTestOutsideUid), 20);
    EXPECT_EQ(Answer(**env, "crash").rfind("error: the tool crashed", 0), 0u);
  }
  EXPECT_EQ(sandbox::LiveProcessesOfUidAfterAMoment(kTestOutsideUid), 0);
}

}  // namespace
}  // namespace grpo
