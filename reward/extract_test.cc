#include "reward/extract.h"

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

TEST(ExtractBoxed, LastBalanced) {
  EXPECT_EQ(*ExtractBoxed("so \\boxed{1} then \\boxed{\\frac{1}{2}}."), "\\frac{1}{2}");
  EXPECT_EQ(*ExtractBoxed("\\fbox{7}"), "7");
  EXPECT_EQ(*ExtractBoxed("\\boxed 42 done"), "42");
  EXPECT_EQ(*ExtractBoxed("\\boxed{a\\{b\\}}"), "a\\{b\\}");
  EXPECT_FALSE(ExtractBoxed("no box here"));
}

TEST(ExtractBoxed, UnterminatedFallsBackToEarlier) {
  EXPECT_EQ(*ExtractBoxed("\\boxed{3} and later \\boxed{4"), "3");
  EXPECT_FALSE(ExtractBoxed("\\boxed{"));
  std::string nested = "\\boxed{" + std::string(100000, '{');
  EXPECT_FALSE(ExtractBoxed(nested));
}

TEST(ExtractAnswerTag, LastTagAndBoxedInside) {
  EXPECT_EQ(*ExtractAnswerTag("<answer> 5 </answer>"), "5");
  EXPECT_EQ(*ExtractAnswerTag("<answer>1</answer><answer>2</answer>"), "2");
  EXPECT_EQ(*ExtractAnswerTag("<answer>The result: \\boxed{9}</answer>"), "9");
  EXPECT_FALSE(ExtractAnswerTag("<answer>5"));
}

TEST(ExtractPhrase, AnswerIsAndAnswerColon) {
  EXPECT_EQ(*ExtractPhrase("Thus the answer is 42."), "42");
  EXPECT_EQ(*ExtractPhrase("Final Answer: $\\frac{1}{2}$\nThanks"), "$\\frac{1}{2}$");
  EXPECT_EQ(*ExtractPhrase("The answer is \\boxed{3}."), "3");
  EXPECT_FALSE(ExtractPhrase("no phrase"));
}

TEST(ExtractAnswer, OrderAndHashes) {
  std::string s = "<answer>1</answer> \\boxed{2}";
  EXPECT_EQ(*ExtractAnswer(s, DefaultExtractMethods()), "2");
  EXPECT_EQ(*ExtractAnswer(s, {ExtractMethod::kAnswerTag, ExtractMethod::kBoxed}), "1");
  EXPECT_EQ(*ExtractAnswer("work\n#### 1,234", {ExtractMethod::kHashes}), "1,234");
  auto m = ParseExtractMethods({"boxed", "hashes"});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 2u);
  EXPECT_FALSE(ParseExtractMethods({"nope"}).ok());
}

TEST(ExtractAnswer, MegabyteCompletionIsFast) {
  std::string big(1 << 20, 'x');
  big += " the answer is 7";
  EXPECT_EQ(*ExtractAnswer(big, DefaultExtractMethods()), "7");
}

}  // namespace
}  // namespace grpo::reward
