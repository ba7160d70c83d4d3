#include "reward/format_rule.h"

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

double Score(FormatMode mode, std::string c, bool prefilled = false) {
  FormatRuleOptions o;
  o.mode = mode;
  o.think_prefilled = prefilled;
  RewardItem it;
  it.completion = std::move(c);
  return FormatRule(o).Score(it)->score;
}

TEST(FormatRule, Strict) {
  EXPECT_EQ(Score(FormatMode::kStrict, "<think>\nhmm\n</think>\n<answer>\n5\n</answer>"), 1.0);
  EXPECT_EQ(Score(FormatMode::kStrict, "<think>\nhmm\n</think>\n<answer>\n5\n</answer>\n"), 1.0);
  EXPECT_EQ(Score(FormatMode::kStrict, "<think>\n\n</think>\n<answer>\n\n</answer>"), 1.0);
  EXPECT_EQ(Score(FormatMode::kStrict, "<think>hmm</think><answer>5</answer>"), 0.0);
  EXPECT_EQ(Score(FormatMode::kStrict, "x<think>\nhmm\n</think>\n<answer>\n5\n</answer>"), 0.0);
  EXPECT_EQ(Score(FormatMode::kStrict, "<think>\nhmm\n</think>\n<answer>\n5\n</answer> more"), 0.0);
  EXPECT_EQ(Score(FormatMode::kStrict,
                  "<think>\na\n</think>\n<answer>\n<think>\n</answer>"), 0.0);
  EXPECT_EQ(Score(FormatMode::kStrict, "hmm\n</think>\n<answer>\n5\n</answer>", true), 0.0);
  EXPECT_EQ(Score(FormatMode::kStrict, "\nhmm\n</think>\n<answer>\n5\n</answer>", true), 1.0);
  EXPECT_EQ(Score(FormatMode::kStrict, ""), 0.0);
}

TEST(FormatRule, Lenient) {
  EXPECT_EQ(Score(FormatMode::kLenient, "<think>hmm</think> <answer>5</answer>"), 1.0);
  EXPECT_EQ(Score(FormatMode::kLenient, "  <think>hmm</think>\n<answer>5</answer>\n"), 1.0);
  EXPECT_EQ(Score(FormatMode::kLenient, "<think>hmm</think> so <answer>5</answer>"), 0.0);
  EXPECT_EQ(Score(FormatMode::kLenient, "<answer>5</answer><think>hmm</think>"), 0.0);
  EXPECT_EQ(Score(FormatMode::kLenient, "<think>a</think><answer>5</answer><answer>6</answer>"), 0.0);
  EXPECT_EQ(Score(FormatMode::kLenient, "hmm</think><answer>5</answer>", true), 1.0);
}

TEST(FormatRule, TagCount) {
  EXPECT_EQ(Score(FormatMode::kTagCount, "<think>\na\n</think>\n<answer>\n5\n</answer>"), 1.0);
  EXPECT_EQ(Score(FormatMode::kTagCount, "<think>\na</think><answer>5</answer>"), 0.25);
  EXPECT_EQ(Score(FormatMode::kTagCount, "<think>\na\n</think>\nb"), 0.5);
  EXPECT_EQ(Score(FormatMode::kTagCount, "<think>\n<think>\n"), 0.0);
  EXPECT_EQ(Score(FormatMode::kTagCount, "plain"), 0.0);
}

TEST(FormatRule, ParseMode) {
  EXPECT_TRUE(ParseFormatMode("strict").ok());
  EXPECT_TRUE(ParseFormatMode("tag_count").ok());
  EXPECT_FALSE(ParseFormatMode("loose").ok());
}

}  // namespace
}  // namespace grpo::reward
