#include "reward/shaping_rules.h"

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

double LengthScore(size_t len, double max_len = 100, double cache = 20) {
  RewardItem it;
  it.completion = std::string(len, 'x');
  return LengthRule({max_len, cache, LengthUnit::kBytes}).Score(it)->score;
}

TEST(LengthRule, DapoOverlongShaping) {
  EXPECT_EQ(LengthScore(0), 0.0);
  EXPECT_EQ(LengthScore(80), 0.0);
  EXPECT_DOUBLE_EQ(LengthScore(90), -0.5);
  EXPECT_DOUBLE_EQ(LengthScore(100), -1.0);
  EXPECT_EQ(LengthScore(101), -1.0);
  EXPECT_DOUBLE_EQ(LengthScore(81), -0.05);
}

TEST(LengthRule, Tokens) {
  LengthRule rule({100, 20, LengthUnit::kTokens});
  RewardItem it;
  EXPECT_FALSE(rule.Score(it).ok());
  it.meta["completion_tokens"] = "95";
  EXPECT_DOUBLE_EQ(rule.Score(it)->score, -0.75);
}

double Rep(std::string text, int n = 3, double maxp = -1.0) {
  RewardItem it;
  it.completion = std::move(text);
  return RepetitionRule({n, maxp}).Score(it)->score;
}

TEST(RepetitionRule, NgramPenalty) {
  EXPECT_EQ(Rep("a b"), 0.0);                        // fewer words than n
  EXPECT_EQ(Rep("the cat sat on the mat"), 0.0);     // all 4 trigrams unique
  // "a b c a b c": trigrams abc bca cab abc -> 3 unique of 4 -> (1 - 3/4) * -1.
  EXPECT_DOUBLE_EQ(Rep("a b c a b c"), -0.25);
  EXPECT_DOUBLE_EQ(Rep("A b C a B c"), -0.25);       // lower-cased
  // "x x x x x": 3 trigrams, 1 unique -> (1 - 1/3) * -0.5.
  EXPECT_DOUBLE_EQ(Rep("x x x x x", 3, -0.5), -0.5 * (1 - 1.0 / 3));
  EXPECT_EQ(Rep(""), 0.0);
}

TEST(RepetitionRule, MegabyteIsFast) {
  std::string s;
  for (int i = 0; i < 200000; ++i) s += "ab ";
  EXPECT_LT(Rep(s), -0.99);
}

}  // namespace
}  // namespace grpo::reward
