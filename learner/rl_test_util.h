// Builders shared by the learner's tests (testonly): small models from presets and random GRPO
// groups to train on.
#ifndef GRPO_LEARNER_RL_TEST_UTIL_H_
#define GRPO_LEARNER_RL_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "learner/rl_update.h"
#include "model/causal_lm.h"
#include "rollout/engine.h"
#include "rollout/service.h"

namespace grpo::rl_test {

// The preset's model with InitParameters(config, seed, 0.1) on BackendForTests(); a failure is a
// test failure (and a null model).
std::unique_ptr<CausalLM> MakeModel(const std::string& preset, uint64_t seed);

struct RandomGroupsOptions {
  int64_t max_completion_tokens = 9;  // completions have 1..max tokens; prompts 2..6
  // Environment tokens (multi-turn): every other token of the last group's last sample is out of
  // the loss (loss_mask 1, 0, 1, ...).
  bool mask_tool_tokens = false;
};

// `num_groups` groups of `g` samples with random tokens below `vocab` and advantages in
// [-1.5, 1.5), the same for the same seed; the first sample is not trained (a masked sample).
std::vector<RlGroup> RandomGroups(int64_t num_groups, int64_t g, uint64_t seed, int32_t vocab,
                                  const RandomGroupsOptions& options = {});

// `grpo rollout serve` in this process: an engine over MakeModel(preset, seed) listening on
// `listen`, taking weight pushes without a token; with `serve_logprobs` it also answers Logprobs
// with a separate copy of the same weights (--serve-logprobs). A failure is a test failure.
struct ServedEngine {
  ServedEngine(const std::string& preset, uint64_t seed, const std::string& listen = "127.0.0.1:0",
               bool serve_logprobs = false);
  // Shuts the server down at once (in-flight calls fail); the engine stays for inspection.
  void Stop();

  std::unique_ptr<RolloutEngine> engine;
  std::unique_ptr<CausalLM> scorer;  // with serve_logprobs
  std::unique_ptr<RolloutServer> server;
  std::string endpoint;  // 127.0.0.1:PORT
};

}  // namespace grpo::rl_test

#endif  // GRPO_LEARNER_RL_TEST_UTIL_H_
