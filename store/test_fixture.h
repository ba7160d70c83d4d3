// Deterministic trajectory-store contents for tests, golden files, the crash test and the bench.
#ifndef GRPO_STORE_TEST_FIXTURE_H_
#define GRPO_STORE_TEST_FIXTURE_H_

#include <cstdint>
#include <string>

#include "core/status.h"
#include "store/trajectory_store.h"

namespace grpo::store::testing {

// A run's metadata with fixed identities and timestamps.
// A path under $TEST_TMPDIR (or /tmp) that does not exist (removed if it did): where a test
// creates a store. `name` should be unique within the test binary.
std::string FreshPath(const std::string& name);
// The same path, created as an empty directory.
std::string FreshDir(const std::string& name);

grpo::v1::RunMetadata DemoRunMetadata(const std::string& run);

// A small, hand-shaped run "demo" with 2 steps x 2 prompts x 3 samples, covering every export
// filter: correct and wrong answers, ties, a duplicate completion, a truncated sample, an
// aborted one, a reward error, a completion without <think>, and a long one. Timestamps fixed.
absl::Status WriteDemoRun(TrajectoryStore& store);

// Shape of synthetic steps (crash test, bench).
struct SyntheticShape {
  uint32_t prompts = 4;
  uint32_t group_size = 4;
  uint32_t tokens = 256;        // completion tokens per sample
  bool raw_logprobs = false;
  uint32_t moe_layers = 0;      // routing: 0 = dense model, no routing
  uint32_t top_k = 8;
  uint32_t num_experts = 64;
};

// A synthetic step whose every value is a function of (step, prompt, sample), so a reader can
// verify it with CheckSyntheticSample.
StepRecords SyntheticStep(uint64_t step, const SyntheticShape& shape);
// Whether `t` is exactly what SyntheticStep wrote for its key (an error names the difference).
absl::Status CheckSyntheticSample(const grpo::v1::Trajectory& t, const SyntheticShape& shape);

}  // namespace grpo::store::testing

#endif  // GRPO_STORE_TEST_FIXTURE_H_
