#include "sandbox/pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sandbox/process_count.h"

namespace grpo::sandbox {
namespace {

Job Python(const std::string& code) {
  Job j;
  j.argv = {"/usr/bin/python3", "-S", "-c", code};
  return j;
}

// An outside uid no other process has (see sandbox_test.cc): what a run leaves is countable.
const int64_t kTestOutsideUid = 300000 + getpid();

Config TestConfig(Isolation isolation = Isolation::kNamespaces) {
  Config c;
  c.isolation = isolation;
  c.outside_uid = kTestOutsideUid;
  return c;
}

Job Shell(const std::string& script) {
  Job j;
  j.argv = {"/bin/sh", "-c", script};
  return j;
}

int ProcessesLeftAfterAMoment() { return LiveProcessesOfUidAfterAMoment(kTestOutsideUid); }

void WaitReady(const Pool& pool, int n) {
  for (int i = 0; i < 500 && pool.ready() < n; ++i) absl::SleepFor(absl::Milliseconds(10));
}

TEST(Pool, RunsJobsInFreshSandboxes) {
  Pool pool(Config(), 2);
  // A file written by one run is not seen by the next: each run has its own scratch.
  absl::StatusOr<Result> a = pool.Run(Python("open('/tmp/mark', 'w').write('x'); print('wrote')"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->stdout_data, "wrote\n");
  absl::StatusOr<Result> b = pool.Run(Python("import os; print(os.path.exists('/tmp/mark'))"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->stdout_data, "False\n");
}

TEST(Pool, ConcurrentRuns) {
  Pool pool(Config(), 2);
  std::atomic<int> right{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        Job j;
        j.argv = {"/bin/sh", "-c", "echo $1", "sh", std::to_string(t * 10 + i)};
        absl::StatusOr<Result> r = pool.Run(j);
        if (r.ok() && r->stdout_data == std::to_string(t * 10 + i) + "\n") ++right;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(right.load(), 12);
}

// Prints the latency of a warm run next to a cold one (sandbox created per run) and a plain
// unsandboxed start of the same program; bench/sandbox_bench measures throughput.
TEST(Pool, PrintsWarmAndColdLatency) {
  Pool pool(Config(), 4);
  Job j;
  j.argv = {"/bin/true"};
  absl::Duration warm, cold;
  const int n = 20;
  for (int i = 0; i < n; ++i) {
    WaitReady(pool, 1);
    absl::Time t0 = absl::Now();
    absl::StatusOr<Result> r = pool.Run(j);
    warm += absl::Now() - t0;
    ASSERT_TRUE(r.ok() && r->exit_code == 0) << r.status();
    t0 = absl::Now();
    r = sandbox::Run(Config(), j);
    cold += absl::Now() - t0;
    ASSERT_TRUE(r.ok() && r->exit_code == 0) << r.status();
  }
  std::cout << "/bin/true: warm pool run " << warm / n << ", cold sandbox run " << cold / n << "\n";
}

// A job's descriptors reach a sandbox that was built before the job, as the only extra ones,
// with either isolation.
TEST(Pool, JobDescriptorsReachAWarmSandbox) {
  for (Isolation isolation : {Isolation::kNamespaces, Isolation::kWeak}) {
    Pool pool(TestConfig(isolation), 1);
    WaitReady(pool, 1);
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    Job j = Shell("echo through-7 >&7; ls /proc/self/fd | tr '\\n' ' '");
    j.fds = {{p[1], 7}};
    absl::StatusOr<Result> r = pool.Run(j);
    close(p[1]);
    ASSERT_TRUE(r.ok()) << r.status();
    char buf[64] = {};
    ASSERT_GT(read(p[0], buf, sizeof buf - 1), 0);
    close(p[0]);
    EXPECT_EQ(std::string(buf), "through-7\n");
    EXPECT_EQ(r->stdout_data, "0 1 2 3 7 ") << r->stderr_data;  // 3: ls's own directory
  }
}

// A program in a sealed memfd runs in one warm sandbox after another; none can change it, and
// what it leaves behind dies with it.
TEST(Pool, RunsASealedProgramThatNoRunCanChange) {
  absl::StatusOr<int> program = SealedMemfd(
      "#!/bin/sh\n"
      "echo ran \"$1\"\n"
      "(echo changed >> /proc/self/fd/3) 2>/dev/null && echo wrote\n"
      "sleep 1000 &\n");
  ASSERT_TRUE(program.ok()) << program.status();
  {
    Pool pool(TestConfig(), 2);
    for (const char* arg : {"a", "b", "c"}) {
      Job j;
      j.argv = {"/proc/self/fd/3", arg};
      j.fds = {{*program, 3}};
      absl::StatusOr<Result> r = pool.Run(j);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->stdout_data, absl::StrCat("ran ", arg, "\n")) << r->stderr_data;
      EXPECT_EQ(r->exit_code, 0);
    }
  }  // the pool's waiting sandboxes run as the test's uid too: gone now
  EXPECT_EQ(ProcessesLeftAfterAMoment(), 0);
  EXPECT_NE(write(*program, "x", 1), 1);  // sealed for the host too
  close(*program);
}

TEST(Pool, BadJobDescriptorsAreClearErrors) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Config c = TestConfig();
  c.fds = {{p[0], 5}};
  Pool pool(c, 1);
  auto run_with = [&](std::vector<PassedFd> fds) {
    Job j = Shell("true");
    j.fds = std::move(fds);
    return pool.Run(j).status();
  };
  EXPECT_TRUE(run_with({{p[1], 6}}).ok());
  EXPECT_EQ(run_with({{p[1], 2}}).code(), absl::StatusCode::kInvalidArgument);          // stderr's number
  EXPECT_EQ(run_with({{p[1], 5}}).code(), absl::StatusCode::kInvalidArgument);          // the Config's fd
  EXPECT_EQ(run_with({{p[1], 6}, {p[0], 6}}).code(), absl::StatusCode::kInvalidArgument);  // twice
  EXPECT_EQ(run_with({{1000000, 6}}).code(), absl::StatusCode::kInvalidArgument);       // not open
  std::vector<PassedFd> many;
  for (int i = 0; i <= static_cast<int>(kMaxJobFds); ++i) many.push_back({p[1], 10 + i});
  absl::Status too_many = run_with(many);
  EXPECT_EQ(too_many.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.message().find("at most"), std::string::npos) << too_many;
  close(p[0]);
  close(p[1]);
}

TEST(Pool, SetupErrorsReachRun) {
  Config c;
  c.binds = {{"/no/such/dir", "/x"}};
  Pool pool(c, 1);
  Job j;
  j.argv = {"/bin/true"};
  EXPECT_FALSE(pool.Run(j).ok());
}

}  // namespace
}  // namespace grpo::sandbox
