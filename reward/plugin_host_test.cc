#include "reward/plugin_host.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace grpo::reward {
namespace {

PluginOptions Options(const std::string& lib) {
  PluginOptions o;
  o.path = "reward/" + lib;
  o.worker_argv = {"reward/plugin_worker"};
  o.timeout = absl::Milliseconds(500);
  o.workers = 2;
  o.memory_mb = 256;
  return o;
}

RewardItem Item(std::string completion, std::string answer = "") {
  RewardItem it;
  it.completion = std::move(completion);
  it.answer = std::move(answer);
  return it;
}

TEST(PluginRule, ExamplePluginScores) {
  PluginOptions o = Options("libexample_reward_plugin.so");
  o.config_json = R"({"keywords": ["alpha", "beta"]})";
  auto rule = PluginRule::Create(o);
  ASSERT_TRUE(rule.ok()) << rule.status().ToString();
  EXPECT_EQ((*rule)->plugin_name(), "keyword");
  EXPECT_EQ((*rule)->Score(Item("alpha and beta"))->score, 1.0);
  EXPECT_EQ((*rule)->Score(Item("only alpha"))->score, 0.5);
  auto r = (*rule)->Score(Item("nothing"));
  EXPECT_EQ(r->score, 0.0);
  EXPECT_EQ(r->detail, "0 of 2 keywords");
}

TEST(PluginRule, GoldAnswerKeywordAndItemError) {
  auto rule = PluginRule::Create(Options("libexample_reward_plugin.so"));
  ASSERT_TRUE(rule.ok());
  EXPECT_EQ((*rule)->Score(Item("the answer is 42", "42"))->score, 1.0);
  auto err = (*rule)->Score(Item("x", ""));
  EXPECT_EQ(err.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PluginRule, LoadErrors) {
  EXPECT_FALSE(PluginRule::Create(Options("no_such_plugin.so")).ok());
  PluginOptions bad = Options("libmisbehaving_reward_plugin.so");
  bad.config_json = R"({"fail_create": true})";
  auto r = PluginRule::Create(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("asked to fail"), std::string::npos);
  PluginOptions no_worker = Options("libexample_reward_plugin.so");
  no_worker.worker_argv = {"/nonexistent/worker"};
  EXPECT_FALSE(PluginRule::Create(no_worker).ok());
}

TEST(PluginRule, CrashLoopLeakAreIsolatedAndRestarted) {
  auto rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so"));
  ASSERT_TRUE(rule.ok()) << rule.status().ToString();
  const PluginRule& r = **rule;
  EXPECT_EQ(r.Score(Item("abc"))->score, 3.0);

  auto crash = r.Score(Item("crash"));
  EXPECT_EQ(crash.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(crash.status().message().find("signal"), std::string::npos) << crash.status().message();
  EXPECT_EQ(r.Score(Item("abcd"))->score, 4.0);  // a fresh worker

  auto start = std::chrono::steady_clock::now();
  auto loop = r.Score(Item("loop"));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(loop.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(ms, 3000);
  EXPECT_EQ(r.Score(Item("ab"))->score, 2.0);

  auto leak = r.Score(Item("leak"));
  EXPECT_FALSE(leak.ok());
  EXPECT_EQ(r.Score(Item("a"))->score, 1.0);

  EXPECT_FALSE(r.Score(Item("abort")).ok());
  EXPECT_EQ(r.Score(Item("error")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_GE(r.workers_started(), 4);
}

TEST(PluginRule, WorkerOutlivesTheThreadThatStartedIt) {
  // PR_SET_PDEATHSIG follows the thread that forked, not the process: a worker started from a
  // thread that has ended since (a gRPC handler's, say) must still serve.
  absl::StatusOr<std::unique_ptr<PluginRule>> rule;
  std::thread([&] { rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so")); }).join();
  ASSERT_TRUE(rule.ok()) << rule.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a parent-death signal lands
  auto r = (*rule)->Score(Item("abc"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->score, 3.0);
  EXPECT_EQ((*rule)->workers_started(), 1);
}

TEST(PluginRule, ConcurrentCallers) {
  auto rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so"));
  ASSERT_TRUE(rule.ok());
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string s(static_cast<size_t>(t + i + 1), 'x');
        auto r = (*rule)->Score(Item(s));
        if (r.ok() && r->score == static_cast<double>(s.size())) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 100);
  EXPECT_LE((*rule)->workers_started(), 2);
}

}  // namespace
}  // namespace grpo::reward
