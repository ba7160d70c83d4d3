// Crash-test writer: writes synthetic steps to a store in a loop and prints "committed N" on
// stdout (flushed) after each WriteStep has returned. Resumes after the last stored step, so the
// crash test can kill it and start it again. Usage: crash_writer DIR [sync|nosync [PAUSE_MS]]
// (PAUSE_MS: sleep between steps, to pace a writer that readers run beside).
// When a WriteStep fails (the full-disk test runs it under RLIMIT_FSIZE), it prints "error: ..."
// on stdout, tries the same step twice more (printing "error: ..." or "committed N" each time),
// showing that a failed write leaves the process running, then exits with status 1.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <cstring>

#include "store/test_fixture.h"
#include "store/trajectory_store.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: crash_writer DIR [sync]\n");
    return 2;
  }
  grpo::store::Options options;
  options.sync = argc > 2 && std::strcmp(argv[2], "sync") == 0;
  const int pause_ms = argc > 3 ? std::atoi(argv[3]) : 0;
  auto store = grpo::store::TrajectoryStore::Open(argv[1], options);
  if (!store.ok()) {
    std::fprintf(stderr, "crash_writer: %s\n", store.status().ToString().c_str());
    return 1;
  }
  auto run = (*store)->GetRun("crash");
  uint64_t next = 0;
  if (!run.ok()) {
    absl::Status s = (*store)->CreateRun(grpo::store::testing::DemoRunMetadata("crash"));
    if (!s.ok()) {
      std::fprintf(stderr, "crash_writer: %s\n", s.ToString().c_str());
      return 1;
    }
  } else if (run->last_step) {
    next = *run->last_step + 1;
  }
  const grpo::store::testing::SyntheticShape shape;  // the crash test checks with the same shape
  for (uint64_t step = next;; ++step) {
    grpo::store::StepRecords records = grpo::store::testing::SyntheticStep(step, shape);
    absl::Status s = (*store)->WriteStep("crash", &records);
    if (!s.ok()) {
      std::fprintf(stderr, "crash_writer: %s\n", s.ToString().c_str());
      for (int retry = 0; retry < 3; ++retry) {
        if (s.ok()) {
          std::printf("committed %llu\n", static_cast<unsigned long long>(step));
        } else {
          std::printf("error: %s\n", s.ToString().c_str());
        }
        std::fflush(stdout);
        if (retry == 2) break;
        records = grpo::store::testing::SyntheticStep(step, shape);
        s = (*store)->WriteStep("crash", &records);
      }
      return 1;
    }
    std::printf("committed %llu\n", static_cast<unsigned long long>(step));
    std::fflush(stdout);
    if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
}
