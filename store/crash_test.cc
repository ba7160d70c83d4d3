// Crash test: a child process writes steps in a loop and is killed with SIGKILL at random times,
// many times. After each kill the store must open without repair, every step the child reported
// as committed must be complete and intact, and no stored step may be partial. A second test
// opens readers (read-only and secondary) beside a live writer process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>

#include "store/test_fixture.h"
#include "store/trajectory_store.h"

namespace grpo::store {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string WriterPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir && ws) return std::string(srcdir) + "/" + ws + "/store/crash_writer";
  return "bazel-bin/store/crash_writer";
}

// Starts the writer with its stdout on a pipe; returns its pid and the pipe's read end.
std::pair<pid_t, int> StartWriter(const std::string& dir, bool sync, int pause_ms) {
  int fds[2];
  if (pipe(fds) != 0) return {-1, -1};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::string path = WriterPath();
    std::string pause = std::to_string(pause_ms);
    execl(path.c_str(), path.c_str(), dir.c_str(), sync ? "sync" : "nosync", pause.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

// Checks that every step in the store is complete and intact, and that `committed` steps are
// present; returns the stored steps.
std::set<uint64_t> CheckStore(const TrajectoryStore& store, const std::set<uint64_t>& committed) {
  const testing::SyntheticShape shape;
  const uint32_t per_step = shape.prompts * shape.group_size;
  if (committed.empty() && store.GetRun("crash").status().code() == absl::StatusCode::kNotFound) {
    return {};  // killed before it created the run
  }
  std::map<uint64_t, uint32_t> samples_per_step;
  absl::Status s = store.ScanSamples("crash", {}, [&](const grpo::v1::Trajectory& t) {
    ++samples_per_step[t.step()];
    absl::Status ok = testing::CheckSyntheticSample(t, shape);
    EXPECT_TRUE(ok.ok()) << ok.ToString();
    return ok.ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto steps = store.ListSteps("crash");
  EXPECT_TRUE(steps.ok()) << steps.status().ToString();
  std::set<uint64_t> summarized;
  if (steps.ok()) {
    for (const auto& st : *steps) summarized.insert(st.step());
  }
  for (uint64_t c : committed) {
    EXPECT_EQ(samples_per_step[c], per_step) << "committed step " << c << " is incomplete";
    EXPECT_TRUE(summarized.count(c)) << "committed step " << c << " has no summary";
  }
  for (const auto& [step, n] : samples_per_step) {
    EXPECT_EQ(n, per_step) << "step " << step << " is partial";
    EXPECT_TRUE(summarized.count(step)) << "step " << step << " has samples but no summary";
  }
  for (uint64_t step : summarized) EXPECT_EQ(samples_per_step[step], per_step) << "step " << step;
  // Steps are contiguous from 0: the writer resumed exactly after the last stored one.
  if (!summarized.empty()) {
    EXPECT_EQ(*summarized.rbegin() + 1, summarized.size());
  }
  return summarized;
}

// Runs the writer until `kill_after`, then SIGKILLs it. Adds every "committed N" it printed.
void RunAndKill(const std::string& dir, bool sync, std::chrono::milliseconds kill_after,
                std::set<uint64_t>* committed) {
  auto [pid, read_fd] = StartWriter(dir, sync, 0);
  ASSERT_GE(pid, 0);
  std::string buffer;
  const auto deadline = Clock::now() + kill_after;
  bool killed = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 && !killed) {
      kill(pid, SIGKILL);
      killed = true;
    }
    pollfd p{read_fd, POLLIN, 0};
    poll(&p, 1, killed ? 1000 : static_cast<int>(std::max<int64_t>(left, 1)));
    if (!(p.revents & (POLLIN | POLLHUP))) continue;
    char buf[4096];
    ssize_t n = read(read_fd, buf, sizeof buf);
    if (n <= 0) break;  // EOF: the child is gone
    buffer.append(buf, n);
  }
  close(read_fd);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "the writer exited on its own (status " << wstatus << ")";
  size_t pos = 0;
  while ((pos = buffer.find("committed ", pos)) != std::string::npos) {
    size_t end = buffer.find('\n', pos);
    if (end == std::string::npos) break;  // a line cut by the kill: not a full report
    committed->insert(std::stoull(buffer.substr(pos + 10, end - pos - 10)));
    pos = end;
  }
}

TEST(CrashTest, KilledWriterNeverLeavesAPartialStep) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = (fs::path(tmp ? tmp : "/tmp") / "crash_store").string();
  fs::remove_all(dir);
  std::mt19937 rng(12345);
  std::set<uint64_t> committed;
  const auto start = Clock::now();
  int iterations = 0;
  for (; iterations < 30 && Clock::now() - start < std::chrono::seconds(45); ++iterations) {
    // Odd iterations fsync the WAL on every step (Options::sync), even ones do not.
    const auto kill_after = std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 400)(rng));
    RunAndKill(dir, iterations % 2 == 1, kill_after, &committed);
    if (HasFatalFailure()) return;

    // Opens without repair (read-only here; the next iteration's writer opens it normally).
    auto store = TrajectoryStore::OpenReadOnly(dir);
    if (committed.empty() && store.status().code() == absl::StatusCode::kNotFound) continue;  // killed while creating
    ASSERT_TRUE(store.ok()) << "iteration " << iterations << ": " << store.status().ToString();
    CheckStore(**store, committed);
    if (HasFailure()) return;
  }
  EXPECT_GE(iterations, 10);
  EXPECT_GT(committed.size(), 0u);
  std::printf("%d kills, %zu steps committed\n", iterations, committed.size());
}

// Readers open the store read-only and as a secondary instance while the writer runs in another
// process, and always see whole steps.
TEST(CrashTest, ReadersSeeWholeStepsWhileTheWriterRuns) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = (fs::path(tmp ? tmp : "/tmp") / "live_store").string();
  fs::remove_all(dir);
  auto [pid, read_fd] = StartWriter(dir, false, 2);
  ASSERT_GE(pid, 0);
  // Wait until the store exists (the first step committed).
  char buf[256];
  ASSERT_GT(read(read_fd, buf, sizeof buf), 0);
  std::unique_ptr<TrajectoryStore> secondary;
  size_t last_seen = 0;
  int opens = 0;
  const auto start = Clock::now();
  while (Clock::now() - start < std::chrono::seconds(4) && !HasFailure()) {
    while (true) {  // drain the pipe so the writer never blocks
      pollfd p{read_fd, POLLIN, 0};
      if (poll(&p, 1, 0) <= 0 || read(read_fd, buf, sizeof buf) <= 0) break;
    }
    auto ro = TrajectoryStore::OpenReadOnly(dir);
    ASSERT_TRUE(ro.ok()) << "read-only open beside a live writer: " << ro.status().ToString();
    CheckStore(**ro, {});
    if (!secondary) {
      auto s = TrajectoryStore::OpenSecondary(dir, dir + ".secondary");
      ASSERT_TRUE(s.ok()) << "secondary open beside a live writer: " << s.status().ToString();
      secondary = std::move(*s);
    }
    absl::Status caught = secondary->CatchUp();
    ASSERT_TRUE(caught.ok()) << caught.ToString();
    size_t seen = CheckStore(*secondary, {}).size();
    EXPECT_GE(seen, last_seen);
    last_seen = seen;
    ++opens;
  }
  kill(pid, SIGKILL);
  close(read_fd);
  waitpid(pid, nullptr, 0);
  EXPECT_GT(last_seen, 1u);
  std::printf("%d read-only opens beside the writer; the secondary followed it to %zu steps\n", opens, last_seen);
}

}  // namespace
}  // namespace grpo::store
