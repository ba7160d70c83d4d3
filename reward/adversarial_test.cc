// Adversarial inputs against every built-in rule at once: each item is answered with an error
// or a finite score, quickly (well inside a per-item deadline of 1 s; typically microseconds).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "reward/rule_set.h"

namespace grpo::reward {
namespace {

RuleSet AllRules() {
  auto c = Config::Parse(R"(rules:
  - {type: math}
  - {type: format, mode: strict}
  - {type: format, name: lenient, mode: lenient}
  - {type: format, name: tag_count, mode: tag_count}
  - {type: countdown}
  - {type: choice}
  - {type: exact}
  - {type: regex, pattern: '(a+)+b'}
  - {type: length, max_length: 1000, cache_length: 100}
  - {type: repetition}
  - {type: cosine}
)", "adversarial.yaml");
  auto s = RuleSet::FromConfig(*c, {});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

TEST(Adversarial, EveryRuleAnswersFast) {
  RuleSet rules = AllRules();
  const std::string mb(1 << 20, 'a');
  const std::string digits(10000, '9');
  std::vector<std::pair<std::string, std::string>> cases = {
      {mb, "1"},
      {Repeat("\\boxed{1}", 100000), "1"},
      {"\\boxed{" + std::string(100000, '{'), "1"},
      {"\\boxed{" + std::string(100000, '{') + std::string(100000, '}') + "}", "1"},
      {"\\boxed{", "1"},
      {Repeat("\\boxed{", 200000), "1"},
      {"\\boxed{" + digits + "}", digits},
      {"\\boxed{" + digits + "}", "1"},
      {"\\boxed{2^{2^{2^{100}}}}", "2^{2^{2^{100}}}"},
      {"\\boxed{2^{2^{2^{100}}}}", "1"},
      {"\\boxed{10^{10^{10}}}", "10^{10^{10}}"},
      {"\\boxed{" + Repeat("(", 5000) + "1" + Repeat(")", 5000) + "}", "1"},
      {"\\boxed{" + Repeat("\\sqrt{", 2000) + "2" + Repeat("}", 2000) + "}", "1"},
      {"\\boxed{" + Repeat("x^", 1000) + "x}", "x"},
      {"\\boxed{" + Repeat("1+", 1000) + "1}", "1001"},
      {Repeat("<answer>", 100000) + "1" + Repeat("</answer>", 100000), "1"},
      {Repeat("<think>\n", 100000), "A"},
      {"<answer>" + Repeat("(", 100000) + "</answer>", "24"},
      {Repeat("the answer is ", 80000), "1"},
      {Repeat("a ", 500000) + "b", "1"},
      {"\\boxed{1}", std::string(100000, '{')},
      {"\\boxed{1}", digits},
      {"\\boxed{" + Repeat("\\frac{1}{", 300) + "2" + Repeat("}", 300) + "}", "1"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    RewardItem it;
    it.completion = cases[i].first;
    it.answer = cases[i].second;
    it.meta["numbers"] = "[1, 2, 3]";
    it.meta["target"] = "6";
    auto start = std::chrono::steady_clock::now();
    ItemResult r = rules.Score(it);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(ms, 1000.0) << "case " << i;
    if (r.reward) {
      EXPECT_TRUE(std::isfinite(*r.reward)) << "case " << i;
    } else {
      EXPECT_FALSE(r.error.empty()) << "case " << i;
    }
    // Never a false "correct" for the math rule on these.
    // Never a "correct" from the math rule on these, but for the cases that are really right:
    // 1 (many boxes of 1), 6 (the same long number), 15 (the last <answer> holds 1).
    bool really_right = i == 1 || i == 6 || i == 15;
    for (const auto& rr : r.rules) {
      if (rr.rule == "math" && rr.error.empty()) {
        EXPECT_EQ(rr.score, really_right ? 1.0 : 0.0) << "case " << i;
      }
    }
  }
}

}  // namespace
}  // namespace grpo::reward
