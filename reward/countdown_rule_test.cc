#include "reward/countdown_rule.h"

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

absl::StatusOr<RuleOutput> Score(std::string completion, std::string numbers = "[3, 7, 25, 50]",
                         std::string target = "82", double format_score = 0.1) {
  RewardItem it;
  it.completion = std::move(completion);
  if (!numbers.empty()) it.meta["numbers"] = numbers;
  if (!target.empty()) it.meta["target"] = target;
  CountdownRuleOptions o;
  o.format_score = format_score;
  return CountdownRule(o).Score(it);
}

TEST(CountdownRule, Correct) {
  EXPECT_EQ(Score("<answer>50 + 25 + 7 * 3 - 14</answer>")->score, 0.1);  // 14 not given
  EXPECT_EQ(Score("<answer>(50 - 25) * 3 + 7</answer>")->score, 1.0);      // 75 + 7
  EXPECT_EQ(Score("<answer>(50 - 25) \\times 3 + 7 = 82</answer>")->score, 1.0);
  EXPECT_EQ(Score("<answer>(50 - 25) \xc3\x97 3 + 7</answer>")->score, 1.0);
  EXPECT_EQ(Score("<answer>7 + 3 * (50 - 25)</answer>")->score, 1.0);
}

TEST(CountdownRule, ExactRationalArithmetic) {
  // 24 from {1, 3, 4, 6}: 6 / (1 - 3/4) = 24 needs exact fractions.
  EXPECT_EQ(Score("<answer>6 / (1 - 3 / 4)</answer>", "1 3 4 6", "24")->score, 1.0);
  EXPECT_EQ(Score("<answer>6 / (1 - 4 / 3)</answer>", "1 3 4 6", "24")->score, 0.1);
}

TEST(CountdownRule, Violations) {
  EXPECT_EQ(Score("<answer>(50 - 25) * 3 + 7 + 7</answer>")->score, 0.1);  // 7 twice
  EXPECT_EQ(Score("<answer>50 + 25 + 7</answer>")->score, 0.1);            // 3 unused
  EXPECT_EQ(Score("<answer>(50 - 25) * 3 + 7 = 83</answer>")->score, 0.1); // wrong rhs
  EXPECT_EQ(Score("<answer>(50 - 25) ^ 3 + 7</answer>")->score, 0.1);      // ^ not allowed
  EXPECT_EQ(Score("<answer>-(25 - 50) * 3 + 7</answer>")->score, 0.1);     // unary minus
  EXPECT_EQ(Score("<answer>50 / (25 - 25) + 3 + 7</answer>", "[3,7,25,25,50]")->score, 0.1);
  EXPECT_EQ(Score("<answer>((50 - 25) * 3 + 7</answer>")->score, 0.1);
  EXPECT_EQ(Score("no answer")->score, 0.0);
}

TEST(CountdownRule, MissingInputsAreErrors) {
  EXPECT_FALSE(Score("<answer>1</answer>", "", "82").ok());
  EXPECT_FALSE(Score("<answer>1</answer>", "[1]", "").ok());
  EXPECT_FALSE(Score("<answer>1</answer>", "[]", "82").ok());
  EXPECT_FALSE(Score("<answer>1</answer>", "[1]", "8.5").ok());
  RewardItem it;
  it.completion = "<answer>1 + 2</answer>";
  it.meta["nums"] = "[1, 2]";
  it.answer = "3";  // target falls back to the gold answer
  EXPECT_EQ(CountdownRule().Score(it)->score, 1.0);
}

TEST(CountdownRule, Bounded) {
  std::string deep = std::string(5000, '(') + "1" + std::string(5000, ')');
  EXPECT_EQ(Score("<answer>" + deep + "</answer>", "[1]", "1")->score, 0.1);
  std::string many;
  for (int i = 0; i < 300; ++i) many += "1+";
  many += "1";
  EXPECT_EQ(Score("<answer>" + many + "</answer>", "[1]", "1")->score, 0.1);
}

}  // namespace
}  // namespace grpo::reward
