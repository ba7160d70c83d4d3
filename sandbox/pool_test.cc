#include "sandbox/pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace grpo::sandbox {
namespace {

Job Python(const std::string& code) {
  Job j;
  j.argv = {"/usr/bin/python3", "-S", "-c", code};
  return j;
}

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
