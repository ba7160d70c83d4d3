#include "reward/text_rules.h"

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

RewardItem Item(std::string completion, std::string answer) {
  RewardItem it;
  it.completion = std::move(completion);
  it.answer = std::move(answer);
  return it;
}

TEST(ChoiceLetter, Forms) {
  EXPECT_EQ(ChoiceLetter("B", "ABCDE"), 'B');
  EXPECT_EQ(ChoiceLetter("(B)", "ABCDE"), 'B');
  EXPECT_EQ(ChoiceLetter("B) 42", "ABCDE"), 'B');
  EXPECT_EQ(ChoiceLetter("\\text{(C)}", "ABCDE"), 'C');
  EXPECT_EQ(ChoiceLetter("Option D", "ABCDE"), 'D');
  EXPECT_EQ(ChoiceLetter("F", "ABCDE"), 0);
  EXPECT_EQ(ChoiceLetter("Because", "ABCDE"), 0);
  EXPECT_EQ(ChoiceLetter("b", "ABCDE"), 0);
}

TEST(ChoiceRule, Scores) {
  ChoiceRule rule;
  EXPECT_EQ(rule.Score(Item("\\boxed{B}", "B"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("The answer is (B).", "(B)"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("<answer>C</answer>", "B"))->score, 0.0);
  EXPECT_EQ(rule.Score(Item("no idea", "B"))->score, 0.0);
  EXPECT_FALSE(rule.Score(Item("\\boxed{B}", "42")).ok());
}

TEST(ExactRule, Scores) {
  ExactRule rule;
  EXPECT_EQ(rule.Score(Item("<answer>  Paris </answer>", "paris"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("<answer>New   York</answer>", "new york"))->score, 1.0);
  EXPECT_EQ(rule.Score(Item("<answer>Lyon</answer>", "Paris"))->score, 0.0);
  EXPECT_FALSE(rule.Score(Item("x", " ")).ok());
  ExactRuleOptions o;
  o.case_sensitive = true;
  o.extract = false;
  ExactRule whole(o);
  EXPECT_EQ(whole.Score(Item(" Paris\n", "Paris"))->score, 1.0);
  EXPECT_EQ(whole.Score(Item("paris", "Paris"))->score, 0.0);
}

TEST(RegexRule, MatchFullAndGroups) {
  auto r = RegexRule::Create({"\\d+ apples", false, 0});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->Score(Item("I have 12 apples", ""))->score, 1.0);
  EXPECT_EQ((*r)->Score(Item("I have apples", ""))->score, 0.0);
  auto full = RegexRule::Create({"[a-z]+", true, 0});
  EXPECT_EQ((*full)->Score(Item("abc", ""))->score, 1.0);
  EXPECT_EQ((*full)->Score(Item("abc1", ""))->score, 0.0);
  auto g = RegexRule::Create({"Final: (\\w+)", false, 1});
  EXPECT_EQ((*g)->Score(Item("Final: yes", "yes"))->score, 1.0);
  EXPECT_EQ((*g)->Score(Item("Final: no", "yes"))->score, 0.0);
  EXPECT_FALSE((*g)->Score(Item("Final: no", "")).ok());
}

TEST(RegexRule, BadPatternsAndLinearTime) {
  EXPECT_FALSE(RegexRule::Create({"(", false, 0}).ok());
  EXPECT_FALSE(RegexRule::Create({"a", false, 2}).ok());
  EXPECT_FALSE(RegexRule::Create({"", false, 0}).ok());
  // Catastrophic for backtracking engines; linear for RE2.
  auto r = RegexRule::Create({"(a+)+$", true, 0});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->Score(Item(std::string(100000, 'a') + "b", ""))->score, 0.0);
}

}  // namespace
}  // namespace grpo::reward
