#include "reward/math_rule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace grpo::reward {
namespace {

RewardItem Item(std::string completion, std::string answer) {
  RewardItem it;
  it.completion = std::move(completion);
  it.answer = std::move(answer);
  return it;
}

TEST(MathRule, CorrectWrongMissing) {
  MathRule rule;
  EXPECT_EQ(rule.Score(Item("so \\boxed{\\frac{1}{2}}", "0.5"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("so \\boxed{1}", "0.5"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("<answer>42</answer>", "42"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("The answer is 42.", "42"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("I don't know", "42"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("\\boxed{", "42"))->score, 0.0);
}

TEST(MathRule, NumberWithANounInTextIsTheNumber) {
  MathRule rule;
  EXPECT_EQ(rule.Score(Item("so \\boxed{12 \\text{ apples}}", "12"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("<answer>\\text{12 apples}</answer>", "12"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("so \\boxed{12 \\text{ apples}}", "13"))->score, 0.0);
  // Words that change the value are not swallowed.
  EXPECT_EQ(rule.Score(Item("so \\boxed{12 \\text{ thousand}}", "12"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("so \\boxed{12 \\text{ or } 13}", "12"))->score, 0.0);
}

TEST(MathRule, BadGoldIsError) {
  MathRule rule;
  EXPECT_FALSE(rule.Score(Item("\\boxed{1}", "")).ok());
  EXPECT_FALSE(rule.Score(Item("\\boxed{1}", "\\frac{1}{")).ok());
  // The error repeats from the per-thread cache too.
  EXPECT_FALSE(rule.Score(Item("\\boxed{2}", "\\frac{1}{")).ok());
}

TEST(MathRule, ConfigurableExtraction) {
  MathRuleOptions o;
  o.extract = {ExtractMethod::kAnswerTag};
  MathRule rule(o);
  EXPECT_EQ(rule.Score(Item("\\boxed{5}", "5"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("<answer>5</answer>", "5"))->score, 1.0);
}

TEST(MathRule, AdversarialCompletions) {
  MathRule rule;
  std::string mb(1 << 20, 'a');
  EXPECT_EQ(rule.Score(Item(mb, "1"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("\\boxed{" + std::string(100000, '{'), "1"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("\\boxed{" + std::string(10000, '9') + "}", "1"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("\\boxed{2^{2^{2^{100}}}}", "1"))->score, 0.0);
}

TEST(CosineRule, ExactScores) {
  CosineRuleOptions o;
  o.max_len = 100;
  CosineRule rule(o);
  // Correct, length 9 ("\boxed{5}") of 100: 0.5 + 0.25 * (1 + cos(0.09 pi)).
  double expect = 0.5 + 0.25 * (1 + std::cos(0.09 * M_PI));
  EXPECT_NEAR(rule.Score(Item("\\boxed{5}", "5"))->score, expect, 1e-12);
  // Wrong and short: (lo, hi) = (-0.5, 0.0).
  double wrong = -0.5 + 0.25 * (1 + std::cos(0.09 * M_PI));
  EXPECT_NEAR(rule.Score(Item("\\boxed{6}", "5"))->score, wrong, 1e-12);
  // Longer than max_len: the floor.
  std::string long_ok = std::string(200, ' ') + "\\boxed{5}";
  EXPECT_NEAR(rule.Score(Item(long_ok, "5"))->score, 0.5, 1e-12);
  std::string long_bad = std::string(200, ' ') + "\\boxed{6}";
  EXPECT_NEAR(rule.Score(Item(long_bad, "5"))->score, -0.5, 1e-12);
}

TEST(CosineRule, TokenUnitNeedsMeta) {
  CosineRuleOptions o;
  o.unit = LengthUnit::kTokens;
  CosineRule rule(o);
  RewardItem it = Item("\\boxed{5}", "5");
  EXPECT_FALSE(rule.Score(it).ok());
  it.meta["completion_tokens"] = "0";
  EXPECT_NEAR(rule.Score(it)->score, 1.0, 1e-12);
  it.meta["completion_tokens"] = "abc";
  EXPECT_FALSE(rule.Score(it).ok());
}

}  // namespace
}  // namespace grpo::reward
