#include "reward/plugin_host.h"

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sandbox/process_count.h"

namespace grpo::reward {
namespace {

// An outside uid owned by no one else, this process included (concurrent runs of this test get
// their own): the sandboxes' leftovers are then countable.
const int64_t kTestOutsideUid = 200000 + getpid();

PluginOptions Options(const std::string& lib) {
  PluginOptions o;
  o.path = "reward/" + lib;
  o.worker_argv = {"reward/plugin_worker"};
  o.timeout = absl::Milliseconds(500);
  o.workers = 2;
  o.memory_mb = 256;
  o.sandbox.outside_uid = kTestOutsideUid;
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

// The attacks of issue 21, each tried by a plugin: every one must fail while the host goes on.

TEST(PluginSandbox, CannotSignalTheHost) {
  auto rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so"));
  ASSERT_TRUE(rule.ok()) << rule.status();
  // SIGTERM's default action would end this test process.
  auto r = (*rule)->Score(Item(absl::StrCat("kill:", getpid())));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->score, 0.0);
  EXPECT_EQ((*rule)->Score(Item("abc"))->score, 3.0);
}

TEST(PluginSandbox, ItsChildrenDieWithIt) {
  {
    auto rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so"));
    ASSERT_TRUE(rule.ok()) << rule.status();
    EXPECT_EQ((*rule)->Score(Item("fork"))->score, 20.0);  // forking is allowed...
    EXPECT_FALSE((*rule)->Score(Item("crash")).ok());       // ...and a dead worker takes them along
    EXPECT_EQ(grpo::sandbox::LiveProcessesOfUid(kTestOutsideUid), 0);
    EXPECT_EQ((*rule)->Score(Item("fork"))->score, 20.0);
  }  // as does the rule's end
  EXPECT_EQ(grpo::sandbox::LiveProcessesOfUid(kTestOutsideUid), 0);
}

TEST(PluginSandbox, CannotWriteEtcOrBindPorts) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // find a free port
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  auto rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so"));
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_EQ((*rule)->Score(Item("write-etc"))->score, 0.0);
  EXPECT_NE(access("/etc/grpo_plugin_probe", F_OK), 0);
  EXPECT_EQ((*rule)->Score(Item(absl::StrCat("bind:", ntohs(a.sin_port))))->score, 0.0);
}

TEST(PluginSandbox, RestartedWorkerInheritsNoHostFiles) {
  std::string out = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp", "/host_output.jsonl");
  int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);  // not close-on-exec: the old leak
  ASSERT_GE(fd, 0);
  auto rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so"));
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_EQ((*rule)->Score(Item("write-fds"))->score, 0.0);
  EXPECT_FALSE((*rule)->Score(Item("crash")).ok());
  EXPECT_EQ((*rule)->Score(Item("write-fds"))->score, 0.0);  // the restarted worker
  close(fd);
  std::ifstream in(out);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "");
}

TEST(PluginSandbox, ItsOutputDoesNotReachTheHostsStdout) {
  std::string path = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp", "/host_stdout");
  fflush(stdout);
  int saved_out = dup(1), saved_err = dup(2);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 1);
  dup2(fd, 2);
  {
    auto rule = PluginRule::Create(Options("libmisbehaving_reward_plugin.so"));
    if (rule.ok()) (void)(*rule)->Score(Item("stdout"));
  }
  dup2(saved_out, 1);
  dup2(saved_err, 2);
  close(fd);
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content.find("PLUGIN-STDOUT-MARKER"), std::string::npos) << content;
}

TEST(PluginSandbox, WeakIsolationStillServesAndKillsItsChildren) {
  PluginOptions o = Options("libmisbehaving_reward_plugin.so");
  o.sandbox.isolation = sandbox::Isolation::kWeak;
  // Without a view of its own the worker reads the binary and library at their host paths
  // (under the Bazel cache in /root here, closed to 65534): keep the caller's uid. That is the
  // weakest setting: same uid as the host (docs/sandbox.md).
  o.sandbox.outside_uid = getuid();
  auto rule = PluginRule::Create(o);
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_EQ((*rule)->Score(Item("abc"))->score, 3.0);
  EXPECT_EQ((*rule)->Score(Item("write-fds"))->score, 0.0);  // still only its pipes
  EXPECT_EQ((*rule)->Score(Item("bind:1"))->score, 0.0);  // seccomp refuses AF_INET
}

}  // namespace
}  // namespace grpo::reward
