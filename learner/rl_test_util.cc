#include "learner/rl_test_util.h"

#include <gtest/gtest.h>

#include <random>

#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"

namespace grpo::rl_test {

std::unique_ptr<CausalLM> MakeModel(const std::string& preset, uint64_t seed) {
  auto c = PresetConfig(preset);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return nullptr;
  auto m = CausalLM::Create(*c, InitParameters(*c, seed, 0.1), BackendForTests());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  if (!m.ok()) return nullptr;
  return std::move(m).value();
}

std::vector<RlGroup> RandomGroups(int64_t num_groups, int64_t g, uint64_t seed, int32_t vocab,
                                  const RandomGroupsOptions& options) {
  std::mt19937_64 rng(seed);
  std::vector<RlGroup> groups(num_groups);
  for (auto& group : groups) {
    const int64_t p = 2 + rng() % 5;
    for (int64_t i = 0; i < p; ++i) group.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    for (int64_t s = 0; s < g; ++s) {
      RlSample sample;
      const int64_t t = 1 + rng() % options.max_completion_tokens;
      for (int64_t i = 0; i < t; ++i) sample.completion.push_back(static_cast<int32_t>(rng() % vocab));
      sample.advantage = std::uniform_real_distribution<double>(-1.5, 1.5)(rng);
      group.samples.push_back(std::move(sample));
    }
  }
  groups[0].samples[0].trained = false;
  if (options.mask_tool_tokens) {
    RlSample& tool = groups.back().samples.back();
    for (size_t j = 0; j < tool.completion.size(); ++j) tool.loss_mask.push_back(j % 2 == 0 ? 1 : 0);
  }
  return groups;
}

ServedEngine::ServedEngine(const std::string& preset, uint64_t seed, const std::string& listen,
                           bool serve_logprobs) {
  auto e = RolloutEngine::Create(MakeModel(preset, seed), {});
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return;
  engine = std::move(e).value();
  RolloutServeOptions o;
  o.listen = listen;
  o.allow_unauthenticated_push = true;
  if (serve_logprobs) {
    scorer = MakeModel(preset, seed);
    o.logprobs_model = scorer.get();
  }
  auto s = RolloutServer::Start(*engine, nullptr, o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return;
  server = std::move(s).value();
  endpoint = "127.0.0.1:" + std::to_string(server->port());
}

void ServedEngine::Stop() {
  server->Shutdown(absl::ZeroDuration());
  server.reset();
}

}  // namespace grpo::rl_test
