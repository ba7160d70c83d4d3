// The Python tool: a program's output as the result, its traceback when it fails, a deadline for
// one that never ends, a cap on output, the call parsed from a fenced block, in the sandbox.
#include "rollout/python_tool.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace grpo {
namespace {

std::unique_ptr<Environment> Make(PythonToolOptions o = {}) {
  o.timeout = absl::Seconds(2);
  o.max_output_bytes = 200;
  auto env = MakePythonEnvironment(o);
  EXPECT_TRUE(env.ok()) << env.status();
  return env.ok() ? std::move(env).value() : nullptr;
}

std::string Output(Environment& env, const std::string& program) {
  auto r = env.Call("Let me compute.\n```python\n" + program + "\n```");
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->output : "";
}

TEST(PythonTool, RunsTheBlockInTheSandbox) {
  auto env = Make();
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(env->call_end(), "\n```");
  auto r = env->Call("```python\nprint(6 * 7)\n```");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool, "python");
  EXPECT_EQ(r->output, "42");
  EXPECT_EQ(nlohmann::json::parse(r->arguments)["code"], "print(6 * 7)");
  EXPECT_EQ(r->text(), "```output\n42\n```\n");
  // No state passes from one call to the next; the sandbox has no network.
  EXPECT_EQ(Output(*env, "import os\nprint(os.getuid())"), "1000");
  const std::string net = Output(*env, "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\nprint('connected')");
  EXPECT_EQ(net.find("connected"), std::string::npos) << net;
  EXPECT_NE(net.find("rror"), std::string::npos) << net;
}

TEST(PythonTool, FailuresAreTheOutput) {
  auto env = Make();
  ASSERT_NE(env, nullptr);
  const std::string crash = Output(*env, "print('before')\n1/0");
  EXPECT_EQ(crash.rfind("before\n", 0), 0u) << crash;
  EXPECT_NE(crash.find("ZeroDivisionError: division by zero"), std::string::npos) << crash;
  EXPECT_EQ(Output(*env, "while True: pass"), "error: timed out after 2s");
  EXPECT_EQ(Output(*env, "print('x' * 1000)"), std::string(200, 'x') + "...[output cut]");
  const std::string long_crash = Output(*env, "print('y' * 1000)\nraise ValueError('bad')");
  EXPECT_EQ(long_crash.rfind("yyy", 0), 0u) << long_crash;
  EXPECT_TRUE(long_crash.ends_with("ValueError: bad")) << long_crash;
  EXPECT_LE(long_crash.size(), 200u + 20u) << long_crash;
}

TEST(PythonTool, BadOptionsAreRefused) {
  PythonToolOptions o;
  o.memory_mb = 1;
  EXPECT_EQ(MakePythonEnvironment(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace grpo
