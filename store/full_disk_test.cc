// The store on a disk that fills up, simulated two ways without root or a real full disk:
//  * FullDiskEnv: RocksDB's files draw on a byte budget; once spent, appends fail with NoSpace,
//    as RocksDB's POSIX Env reports ENOSPC (with the default RocksDB info log this aborted the
//    process on an assertion, `sync_without_flush_called_`: store/info_log.h);
//  * a writer process (crash_writer) under RLIMIT_FSIZE with SIGXFSZ ignored: the real write(2)
//    fails with EFBIG once the write-ahead log reaches the limit.
// Either way a failed write must be an error naming the store, never a crash; later writes must
// fail the same way; and every step acknowledged before must be there, intact, once the store is
// reopened with space.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "store/full_disk_env.h"
#include "store/test_fixture.h"
#include "store/trajectory_store.h"

namespace grpo::store {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) { return testing::FreshPath("full_disk_test_" + name); }

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Checks that every step of `run` is complete and intact and that every step of `acked` is
// stored; returns the stored steps.
std::set<uint64_t> CheckStore(const TrajectoryStore& store, const std::string& run, const std::set<uint64_t>& acked,
                              const testing::SyntheticShape& shape) {
  std::map<uint64_t, uint32_t> samples;
  absl::Status s = store.ScanSamples(run, {}, [&](const grpo::v1::Trajectory& t) {
    ++samples[t.step()];
    absl::Status ok = testing::CheckSyntheticSample(t, shape);
    EXPECT_TRUE(ok.ok()) << ok.ToString();
    return ok.ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto steps = store.ListSteps(run);
  EXPECT_TRUE(steps.ok()) << steps.status().ToString();
  std::set<uint64_t> stored;
  if (steps.ok()) {
    for (const auto& st : *steps) stored.insert(st.step());
  }
  const uint32_t per_step = shape.prompts * shape.group_size;
  for (uint64_t step : acked) EXPECT_TRUE(stored.count(step)) << "acknowledged step " << step << " was lost";
  for (uint64_t step : stored) EXPECT_EQ(samples[step], per_step) << "step " << step << " is partial";
  for (const auto& [step, n] : samples) EXPECT_TRUE(stored.count(step)) << "step " << step << " has no summary";
  return stored;
}

void ExpectFullDiskError(const absl::Status& s, const std::string& dir) {
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_TRUE(Contains(std::string(s.message()), dir)) << s.ToString();
  EXPECT_TRUE(Contains(std::string(s.message()), "the disk is full")) << s.ToString();
}

class FullDiskTest : public ::testing::TestWithParam<bool> {};  // Options::sync

TEST_P(FullDiskTest, WritesFailWithAnErrorAndEveryStoredStepSurvives) {
  const std::string dir = TempDir(GetParam() ? "wal_sync" : "wal");
  const testing::SyntheticShape shape;
  testing::FullDiskEnv disk;
  Options options;
  options.env = disk.env();
  options.sync = GetParam();
  std::set<uint64_t> acked;
  uint64_t failed_step = 0;
  {
    auto store = TrajectoryStore::Open(dir, options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->CreateRun(testing::DemoRunMetadata("full")).ok());
    for (uint64_t step = 0; step < 3; ++step) {
      StepRecords rec = testing::SyntheticStep(step, shape);
      ASSERT_TRUE((*store)->WriteStep("full", &rec).ok());
      acked.insert(step);
    }
    disk.SetBudget(200 << 10);  // a few more steps fit (one is ~40 KB), then the disk is full
    absl::Status failed;
    for (uint64_t step = 3; step < 100 && failed.ok(); ++step) {
      StepRecords rec = testing::SyntheticStep(step, shape);
      failed = (*store)->WriteStep("full", &rec);
      if (failed.ok()) acked.insert(step);
      failed_step = step;
    }
    ASSERT_FALSE(failed.ok()) << "the disk never filled";
    EXPECT_GT(acked.size(), 3u);
    ExpectFullDiskError(failed, dir);
    EXPECT_TRUE(Contains(std::string(failed.message()), "step " + std::to_string(failed_step))) << failed.ToString();
    EXPECT_GT(disk.failed_appends(), 0u);

    // Every later write fails the same way; none crashes.
    for (int i = 0; i < 3; ++i) {
      StepRecords rec = testing::SyntheticStep(failed_step + i, shape);
      ExpectFullDiskError((*store)->WriteStep("full", &rec), dir);
    }
    ExpectFullDiskError((*store)->CreateRun(testing::DemoRunMetadata("another")), dir);
    ExpectFullDiskError((*store)->Flush(), dir);
    ExpectFullDiskError((*store)->DeleteStepsFrom("full", 1).status(), dir);
    // Reading still works.
    CheckStore(**store, "full", acked, shape);
  }  // closed on the full disk

  // Opening while the disk is still full is an error too (replaying the log writes files).
  auto full = TrajectoryStore::Open(dir, options);
  ASSERT_FALSE(full.ok());
  ExpectFullDiskError(full.status(), dir);

  disk.Free();
  auto store = TrajectoryStore::Open(dir, options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::set<uint64_t> stored = CheckStore(**store, "full", acked, shape);
  // The failed step is whole or absent; nothing after it was stored.
  EXPECT_LE(*stored.rbegin(), failed_step);
  // The store writes again.
  StepRecords rec = testing::SyntheticStep(*stored.rbegin() + 1, shape);
  EXPECT_TRUE((*store)->WriteStep("full", &rec).ok());
  EXPECT_TRUE((*store)->Flush().ok());
}

INSTANTIATE_TEST_SUITE_P(Sync, FullDiskTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Sync" : "NoSync"; });

// The disk fills while RocksDB flushes memtables to table files (a background error): the
// flush fails, then so does every write, naming the store; nothing stored is lost.
TEST(FullDiskTest, AFailedBackgroundFlushStopsWritesAndLosesNothing) {
  const std::string dir = TempDir("flush");
  const testing::SyntheticShape shape;
  testing::FullDiskEnv disk;
  Options options;
  options.env = disk.env();
  std::set<uint64_t> acked;
  {
    auto store = TrajectoryStore::Open(dir, options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->CreateRun(testing::DemoRunMetadata("full")).ok());
    for (uint64_t step = 0; step < 4; ++step) {
      StepRecords rec = testing::SyntheticStep(step, shape);
      ASSERT_TRUE((*store)->WriteStep("full", &rec).ok());
      acked.insert(step);
    }
    disk.Fill();
    ExpectFullDiskError((*store)->Flush(), dir);
    StepRecords rec = testing::SyntheticStep(4, shape);
    absl::Status s = (*store)->WriteStep("full", &rec);
    ExpectFullDiskError(s, dir);
    EXPECT_TRUE(Contains(std::string(s.message()), "background error")) << s.ToString();
  }
  disk.Free();
  auto store = TrajectoryStore::Open(dir, options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(CheckStore(**store, "full", acked, shape), acked);
}

// Once space is free again, RocksDB recovers by itself (its SstFileManager polls the free space
// every few seconds): the open store writes again, and nothing was lost.
TEST(FullDiskTest, TheOpenStoreWritesAgainOnceSpaceIsFree) {
  const std::string dir = TempDir("recover");
  const testing::SyntheticShape shape;
  testing::FullDiskEnv disk;
  Options options;
  options.env = disk.env();
  auto store = TrajectoryStore::Open(dir, options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE((*store)->CreateRun(testing::DemoRunMetadata("full")).ok());
  std::set<uint64_t> acked;
  StepRecords rec = testing::SyntheticStep(0, shape);
  ASSERT_TRUE((*store)->WriteStep("full", &rec).ok());
  acked.insert(0);
  disk.Fill();
  rec = testing::SyntheticStep(1, shape);
  ExpectFullDiskError((*store)->WriteStep("full", &rec), dir);
  disk.Free();
  absl::Status s;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    rec = testing::SyntheticStep(1, shape);
    s = (*store)->WriteStep("full", &rec);
  } while (!s.ok() && std::chrono::steady_clock::now() < deadline);
  ASSERT_TRUE(s.ok()) << "no recovery within 30 s: " << s.ToString();
  acked.insert(1);
  store->reset();
  store = TrajectoryStore::Open(dir, options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(CheckStore(**store, "full", acked, shape), acked);
}

// Creating a store on a full disk fails with an error and leaves nothing behind.
TEST(FullDiskTest, CreatingAStoreOnAFullDiskLeavesNothing) {
  const std::string dir = TempDir("create");
  testing::FullDiskEnv disk;
  disk.Fill();
  Options options;
  options.env = disk.env();
  auto store = TrajectoryStore::Open(dir, options);
  ASSERT_FALSE(store.ok());
  ExpectFullDiskError(store.status(), dir);
  EXPECT_FALSE(fs::exists(dir));
  for (const auto& entry : fs::directory_iterator(fs::path(dir).parent_path())) {
    EXPECT_FALSE(Contains(entry.path().filename().string(), ".full_disk_test_create.creating-")) << entry.path();
  }
  disk.Free();
  EXPECT_TRUE(TrajectoryStore::Open(dir, options).ok());
}

std::string WriterPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir && ws) return std::string(srcdir) + "/" + ws + "/store/crash_writer";
  return "bazel-bin/store/crash_writer";
}

// Runs crash_writer on `dir` with files limited to `max_file_bytes` (writes past it fail with
// EFBIG); returns its exit status and stdout.
std::pair<int, std::string> RunWriterWithFileLimit(const std::string& dir, rlim_t max_file_bytes) {
  int fds[2];
  if (pipe(fds) != 0) return {-1, ""};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    signal(SIGXFSZ, SIG_IGN);  // stays ignored across exec: write(2) fails with EFBIG instead
    const rlimit limit{max_file_bytes, max_file_bytes};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(126);
    const std::string path = WriterPath();
    execl(path.c_str(), path.c_str(), dir.c_str(), "nosync", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {status, out};
}

TEST(FullDiskTest, AWriterProcessAtItsFileSizeLimitReportsErrorsAndKeepsRunning) {
  const std::string dir = TempDir("rlimit");
  auto [status, out] = RunWriterWithFileLimit(dir, 1 << 20);
  ASSERT_TRUE(WIFEXITED(status)) << "the writer died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << "; output:\n" << out;
  EXPECT_EQ(WEXITSTATUS(status), 1) << out;

  std::set<uint64_t> acked;
  std::vector<std::string> errors;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("committed ", 0) == 0) {
      EXPECT_TRUE(errors.empty()) << "a step was committed after a failed one: " << line;
      acked.insert(std::stoull(line.substr(10)));
    } else if (line.rfind("error: ", 0) == 0) {
      errors.push_back(line);
    }
  }
  EXPECT_GT(acked.size(), 3u) << out;
  ASSERT_EQ(errors.size(), 3u) << out;  // the failed write and both tries after it
  for (const std::string& e : errors) {
    EXPECT_TRUE(Contains(e, dir)) << e;
    EXPECT_TRUE(Contains(e, "File too large")) << e;
  }

  auto store = TrajectoryStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  const std::set<uint64_t> stored = CheckStore(**store, "crash", acked, testing::SyntheticShape());
  EXPECT_LE(stored.size(), acked.size() + 1);  // the failed step is whole or absent
}

}  // namespace
}  // namespace grpo::store
