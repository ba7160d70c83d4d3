#include "store/query.h"

#include <gtest/gtest.h>

#include <cmath>

namespace grpo::store {
namespace {

grpo::v1::Trajectory Sample(uint32_t prompt, uint32_t index, std::optional<double> math, int tokens = 4) {
  grpo::v1::Trajectory t;
  t.set_prompt_index(prompt);
  t.set_sample_index(index);
  for (int i = 0; i < tokens; ++i) t.mutable_sample()->add_token_ids(i);
  auto* rule = t.mutable_reward()->add_rules();
  rule->set_rule("math");
  if (math) {
    rule->set_score(*math);
    t.mutable_reward()->set_reward(*math);
  } else {
    rule->set_error("boom");
    t.mutable_reward()->set_error("boom");
  }
  return t;
}

TEST(QueryTest, PassAtK) {
  EXPECT_DOUBLE_EQ(PassAtK(4, 0, 1), 0.0);
  EXPECT_DOUBLE_EQ(PassAtK(4, 1, 1), 0.25);
  EXPECT_DOUBLE_EQ(PassAtK(4, 1, 4), 1.0);
  EXPECT_DOUBLE_EQ(PassAtK(4, 2, 2), 1.0 - 1.0 / 6.0);  // 1 - C(2,2)/C(4,2)
  EXPECT_DOUBLE_EQ(PassAtK(4, 4, 2), 1.0);
  EXPECT_DOUBLE_EQ(PassAtK(3, 1, 10), 1.0);  // k > n -> k = n
  EXPECT_DOUBLE_EQ(PassAtK(0, 0, 1), 0.0);
}

TEST(QueryTest, CorrectnessUsesTheNamedRulesAndThreshold) {
  CorrectnessSpec spec;
  EXPECT_TRUE(IsCorrect(Sample(0, 0, 1.0), spec));
  EXPECT_FALSE(IsCorrect(Sample(0, 0, 0.9), spec));
  EXPECT_FALSE(IsCorrect(Sample(0, 0, std::nullopt), spec));
  spec.threshold = 0.5;
  EXPECT_TRUE(IsCorrect(Sample(0, 0, 0.9), spec));
  spec.rules = {"countdown"};
  EXPECT_FALSE(IsCorrect(Sample(0, 0, 1.0), spec));
}

// The trainer asks with the reward alone; the answer is the stored sample's.
TEST(QueryTest, CorrectnessOfARewardResult) {
  const CorrectnessSpec spec;
  for (std::optional<double> math : {std::optional<double>(1.0), std::optional<double>(0.0),
                                     std::optional<double>()}) {
    const grpo::v1::Trajectory t = Sample(0, 0, math);
    EXPECT_EQ(IsCorrect(t.reward(), spec), IsCorrect(t, spec));
    EXPECT_EQ(TotalReward(t.reward()), TotalReward(t));
  }
  grpo::v1::RewardResult r;
  r.set_reward(1.0);
  auto* fmt = r.add_rules();
  fmt->set_rule("format");
  fmt->set_score(1.0);
  EXPECT_FALSE(IsCorrect(r, spec));  // no answer-checking rule
  auto* exact = r.add_rules();
  exact->set_rule("exact");
  exact->set_score(1.0);
  EXPECT_TRUE(IsCorrect(r, spec));
  exact->set_error("timeout");
  EXPECT_FALSE(IsCorrect(r, spec));  // a rule with an error does not count
  exact->clear_error();
  r.set_error("plugin crashed");
  EXPECT_FALSE(IsCorrect(r, spec));  // nor does a reward with an error
  EXPECT_FALSE(TotalReward(r).has_value());
}

TEST(QueryTest, GroupAndStepSummaries) {
  std::vector<grpo::v1::Trajectory> g = {Sample(0, 0, 0.0, 2), Sample(0, 1, 1.0, 4), Sample(0, 2, 1.0, 6),
                                         Sample(0, 3, std::nullopt, 8)};
  GroupStats s = SummarizeGroup(g, {});
  EXPECT_EQ(s.num_samples, 4u);
  EXPECT_EQ(s.num_scored, 3u);
  EXPECT_EQ(s.num_correct, 2u);
  EXPECT_EQ(s.best_sample_index, 1);  // tie with 2 goes to the lower index
  EXPECT_DOUBLE_EQ(s.reward_mean, 2.0 / 3);
  EXPECT_DOUBLE_EQ(s.response_len_mean, 5.0);

  g.push_back(Sample(1, 0, 0.0));
  g.push_back(Sample(1, 1, 0.0));
  auto step = SummarizeStep("r", 3, g, {});
  EXPECT_EQ(step.num_prompts(), 2u);
  EXPECT_EQ(step.num_samples(), 6u);
  EXPECT_EQ(step.num_reward_errors(), 1u);
  EXPECT_EQ(step.num_zero_std_groups(), 1u);
  EXPECT_DOUBLE_EQ(step.pass_at_g(), 0.5);
  EXPECT_DOUBLE_EQ(step.accuracy(), 2.0 / 5);
  EXPECT_DOUBLE_EQ(step.reward_mean(), 0.4);
  EXPECT_NEAR(step.reward_std(), std::sqrt(0.24), 1e-12);
  EXPECT_DOUBLE_EQ(step.rule_means().at("math"), 0.4);
}

TEST(QueryTest, Matches) {
  auto t = Sample(2, 1, 0.5);
  t.mutable_sample()->add_weight_versions()->set_version(7);
  SampleQuery q;
  EXPECT_TRUE(Matches(t, q));
  q.min_reward = 0.6;
  EXPECT_FALSE(Matches(t, q));
  q = {};
  q.weight_version = 6;
  EXPECT_FALSE(Matches(t, q));
  q.weight_version = 7;
  EXPECT_TRUE(Matches(t, q));
  q.rule = RuleOutcome{"math", 0.5, 1.0};
  EXPECT_TRUE(Matches(t, q));
  q.rule->min_score = 0.6;
  EXPECT_FALSE(Matches(t, q));
  EXPECT_FALSE(Matches(Sample(0, 0, std::nullopt), SampleQuery{.min_reward = -10.0}));
}

}  // namespace
}  // namespace grpo::store
