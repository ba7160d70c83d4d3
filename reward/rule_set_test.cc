#include "reward/rule_set.h"

#include <cmath>
#include <string>

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

absl::StatusOr<RuleSet> Parse(const std::string& yaml, RuleSetOptions o = {}) {
  auto c = Config::Parse(yaml, "rules.yaml");
  if (!c.ok()) return c.status();
  return RuleSet::FromConfig(*c, o);
}

constexpr const char* kRules = R"(rules:
  - type: math
    name: accuracy
    tasks: [math]
  - type: format
    mode: lenient
    weight: 0.5
  - type: countdown
    tasks: [countdown]
)";

RewardItem Item(std::string task, std::string completion, std::string answer) {
  RewardItem it;
  it.task = std::move(task);
  it.completion = std::move(completion);
  it.answer = std::move(answer);
  return it;
}

TEST(RuleSet, WeightedSumPerTask) {
  auto set = Parse(kRules);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  ASSERT_EQ(set->rules().size(), 3u);
  ItemResult r = set->Score(Item("math", "<think>x</think><answer>\\frac{1}{2}</answer>", "0.5"));
  ASSERT_TRUE(r.reward.has_value()) << r.error;
  EXPECT_DOUBLE_EQ(*r.reward, 1.5);
  ASSERT_EQ(r.rules.size(), 2u);
  EXPECT_EQ(r.rules[0].rule, "accuracy");
  EXPECT_EQ(r.rules[1].rule, "format");
  EXPECT_EQ(r.rules[1].weight, 0.5);

  ItemResult wrong = set->Score(Item("math", "<answer>1</answer>", "0.5"));
  EXPECT_DOUBLE_EQ(*wrong.reward, 0.0);

  // The empty task gets only the rules for every task.
  ItemResult none = set->Score(Item("", "<think>a</think><answer>1</answer>", ""));
  EXPECT_DOUBLE_EQ(*none.reward, 0.5);
  ASSERT_EQ(none.rules.size(), 1u);
}

TEST(RuleSet, ErrorsAreNotRewards) {
  auto set = Parse(kRules);
  ASSERT_TRUE(set.ok());
  ItemResult bad = set->Score(Item("math", "<answer>1</answer>", "\\frac{"));
  EXPECT_FALSE(bad.reward.has_value());
  EXPECT_NE(bad.error.find("accuracy"), std::string::npos) << bad.error;
  EXPECT_EQ(bad.rules.size(), 2u);
  EXPECT_FALSE(bad.rules[0].error.empty());

  ItemResult cd = set->Score(Item("countdown", "<answer>1+2</answer>", "3"));
  EXPECT_FALSE(cd.reward.has_value());  // meta numbers missing
}

TEST(RuleSet, UnknownTaskWithoutCatchAll) {
  auto set = Parse("rules:\n  - type: math\n    tasks: [math]\n");
  ASSERT_TRUE(set.ok());
  ItemResult r = set->Score(Item("poetry", "x", "1"));
  EXPECT_FALSE(r.reward.has_value());
  EXPECT_NE(r.error.find("unknown task"), std::string::npos);
  ItemResult e = set->Score(Item("", "x", "1"));
  EXPECT_FALSE(e.reward.has_value());
}

TEST(RuleSet, ConfigErrorsNameTheLine) {
  auto typo = Parse("rules:\n  - type: format\n    mdoe: strict\n");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("rules.yaml:3"), std::string::npos) << typo.status().message();
  auto unknown = Parse("rules:\n  - type: nope\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown rule type"), std::string::npos);
  EXPECT_FALSE(Parse("rules:\n  - type: format\n    mode: fancy\n").ok());
  EXPECT_FALSE(Parse("rules:\n  - type: length\n    max_length: 10\n    cache_length: 20\n").ok());
  EXPECT_FALSE(Parse("rules:\n  - type: regex\n    pattern: '('\n").ok());
  EXPECT_FALSE(Parse("rules:\n  - type: math\n  - type: math\n").ok());  // duplicate name
  EXPECT_FALSE(Parse("rules: []\n").ok());
  EXPECT_FALSE(Parse("other: 1\n").ok());
}

// Issue 19, class 6: a weight of 1e308 made the total inf, written as "reward": null and counted
// as scored. Weights are bounded at load (rules files and recipes alike go through FromConfig).
TEST(RuleSet, WeightsMustBeFiniteAndBounded) {
  for (const char* w : {"1e308", "-1e308", "1.0e7", ".inf", ".nan"}) {
    auto set = Parse(std::string("rules:\n  - type: format\n    weight: ") + w + "\n");
    ASSERT_FALSE(set.ok()) << w;
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument) << w;
    EXPECT_NE(set.status().message().find("rules.yaml:3"), std::string::npos) << set.status().message();
    EXPECT_NE(set.status().message().find("[-1e6, 1e6]"), std::string::npos) << set.status().message();
  }
  EXPECT_TRUE(Parse("rules:\n  - type: format\n    weight: 1e6\n").ok());
  EXPECT_TRUE(Parse("rules:\n  - type: format\n    weight: -1e6\n").ok());
}

// A total that overflows although every weight is in bounds (a rule's own huge score) is an error
// for the item, not a reward (the fresh variant: a cosine rule's own values, not a weight).
TEST(RuleSet, NonFiniteTotalIsAnItemError) {
  auto set = Parse(R"(rules:
  - {type: cosine, max_value_correct: 1e308, min_value_correct: 1e308, max_value_wrong: 1e308, min_value_wrong: 1e308,
     weight: 1e6}
  - {type: format, mode: lenient}
)");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  ItemResult r = set->Score(Item("", "<think>a</think><answer>2</answer>", "2"));
  EXPECT_FALSE(r.reward.has_value());
  EXPECT_NE(r.error.find("reward is not finite"), std::string::npos) << r.error;
  ASSERT_EQ(r.rules.size(), 2u);  // the breakdown stays
  EXPECT_TRUE(std::isfinite(r.rules[0].score));
  // Two large finite terms of opposite signs still give a reward.
  auto ok = Parse(R"(rules:
  - {type: cosine, max_value_correct: 1e300, min_value_correct: 1e300, max_value_wrong: 1e300, min_value_wrong: 1e300}
  - {type: cosine, name: neg, max_value_correct: 1e300, min_value_correct: 1e300, max_value_wrong: 1e300,
     min_value_wrong: 1e300, weight: -1}
)");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ItemResult z = ok->Score(Item("", "<think>a</think><answer>2</answer>", "2"));
  ASSERT_TRUE(z.reward.has_value()) << z.error;
  EXPECT_EQ(*z.reward, 0.0);
}

TEST(RuleSet, AllBuiltinsLoadWithSettings) {
  auto set = Parse(R"(rules:
  - {type: math, extract: [boxed]}
  - {type: format, mode: tag_count, think_prefilled: true}
  - {type: countdown, format_score: 0.1}
  - {type: choice, letters: ABCD}
  - {type: exact, case_sensitive: true}
  - {type: regex, pattern: 'x+', full_match: true}
  - {type: length, max_length: 100, cache_length: 10, unit: tokens}
  - {type: repetition, ngram_size: 2, max_penalty: -0.5}
  - {type: cosine, max_len: 50}
)");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->rules().size(), 9u);
}

TEST(RuleSet, SingleRule) {
  auto set = RuleSet::Single("math");
  ASSERT_TRUE(set.ok());
  EXPECT_DOUBLE_EQ(*set->Score(Item("", "\\boxed{2}", "2")).reward, 1.0);
  EXPECT_FALSE(RuleSet::Single("regex").ok());
  EXPECT_FALSE(RuleSet::Single("bogus").ok());
}

TEST(RuleSet, PluginRule) {
  RuleSetOptions o;
  o.plugin_worker_argv = {"reward/plugin_worker"};
  auto set = Parse(R"(rules:
  - type: plugin
    name: kw
    path: reward/libexample_reward_plugin.so
    timeout_ms: 2000
    config:
      keywords: [foo]
)", o);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_DOUBLE_EQ(*set->Score(Item("", "a foo", "")).reward, 1.0);
  EXPECT_DOUBLE_EQ(*set->Score(Item("", "a bar", "")).reward, 0.0);
}

}  // namespace
}  // namespace grpo::reward
