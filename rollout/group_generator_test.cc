// Generation against the model's own full forward: the tokens a group generates, fed back
// through CausalLM::Forward, give the same log-probabilities the generator returned; greedy
// decoding follows the argmax path; a sample depends only on its seed and index.
#include "rollout/group_generator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/presets.h"

namespace grpo {
namespace {

class GeneratorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto config = PresetConfig(GetParam() + "-nano");
    ASSERT_TRUE(config.ok());
    auto m = CausalLM::Create(*config, InitParameters(*config, 5, 0.1));
    ASSERT_TRUE(m.ok());
    model_ = std::move(m).value();
  }
  // Forward logprobs of the completion tokens given the prompt.
  std::vector<float> Score(const std::vector<int32_t>& prompt, const std::vector<int32_t>& completion) {
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), completion.begin(), completion.end());
    auto out = model_->Forward(TokenBatch::FromSequences({seq}), {});
    EXPECT_TRUE(out.ok());
    return std::vector<float>(out->logprobs.end() - completion.size(), out->logprobs.end());
  }
  std::unique_ptr<CausalLM> model_;
};

TEST_P(GeneratorTest, SampledLogprobsEqualTheFullForward) {
  const std::vector<int32_t> prompt = {3, 17, 42, 9, 100};
  GenerationOptions o;
  o.n = 4;
  o.max_new_tokens = 12;
  o.seed = 11;
  auto group = GenerateGroup(*model_, prompt, o);
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  ASSERT_EQ(group->size(), 4u);
  for (const GeneratedSample& s : *group) {
    EXPECT_EQ(s.finish_reason, "length");
    ASSERT_EQ(s.tokens.size(), 12u);
    const std::vector<float> want = Score(prompt, s.tokens);
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      EXPECT_NEAR(s.raw_logprobs[i], want[i], 1e-5);
      EXPECT_NEAR(s.logprobs[i], want[i], 1e-5);  // temperature 1, no filters
    }
  }
  EXPECT_NE((*group)[0].tokens, (*group)[1].tokens);
}

TEST_P(GeneratorTest, GreedyFollowsTheArgmaxPath) {
  const std::vector<int32_t> prompt = {1, 2, 3};
  GenerationOptions o;
  o.sampling.temperature = 0.0;
  o.max_new_tokens = 10;
  auto group = GenerateGroup(*model_, prompt, o);
  ASSERT_TRUE(group.ok());
  std::vector<int32_t> seq = prompt;
  for (int32_t token : (*group)[0].tokens) {
    // The next token of the full forward's distribution is the argmax: no token is more likely.
    const float chosen = Score(seq, {token})[0];
    for (int32_t alt = 0; alt < model_->config().vocab_size; alt += 7) {
      EXPECT_LE(Score(seq, {alt})[0], chosen + 1e-6);
    }
    seq.push_back(token);
  }
}

TEST_P(GeneratorTest, SamplesDependOnlyOnSeedAndIndexAndStopTokensStop) {
  const std::vector<int32_t> prompt = {5, 6, 7, 8};
  GenerationOptions o;
  o.max_new_tokens = 8;
  o.seed = 99;
  o.n = 1;
  auto alone = GenerateGroup(*model_, prompt, o);
  o.n = 5;
  auto many = GenerateGroup(*model_, prompt, o);
  ASSERT_TRUE(alone.ok() && many.ok());
  EXPECT_EQ((*alone)[0].tokens, (*many)[0].tokens);
  // Stop at the first token sample 2 produced: it ends right there with "stop".
  o.stop_tokens = {(*many)[2].tokens[0]};
  auto stopped = GenerateGroup(*model_, prompt, o);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ((*stopped)[2].tokens.size(), 1u);
  EXPECT_EQ((*stopped)[2].finish_reason, "stop");
  o.sampling.top_p = 0.0;
  EXPECT_FALSE(GenerateGroup(*model_, prompt, o).ok());
}

INSTANTIATE_TEST_SUITE_P(Families, GeneratorTest, ::testing::Values("llama", "qwen3_moe", "deepseek_v3"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace grpo
