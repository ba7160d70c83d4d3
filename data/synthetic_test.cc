#include "data/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "data/dataset.h"

namespace grpo::data {
namespace {

// Brute force: can `nums` (all of them, each once) reach `target` with + - * / (exact division)?
bool Solvable(std::vector<int64_t> nums, int64_t target) {
  if (nums.size() == 1) return nums[0] == target;
  for (size_t i = 0; i < nums.size(); ++i) {
    for (size_t j = 0; j < nums.size(); ++j) {
      if (i == j) continue;
      const int64_t a = nums[i], b = nums[j];
      std::vector<int64_t> rest;
      for (size_t k = 0; k < nums.size(); ++k) {
        if (k != i && k != j) rest.push_back(nums[k]);
      }
      std::vector<int64_t> results = {a + b, a - b, a * b};
      if (b != 0 && a % b == 0) results.push_back(a / b);
      for (int64_t r : results) {
        rest.push_back(r);
        if (Solvable(rest, target)) return true;
        rest.pop_back();
      }
    }
  }
  return false;
}

// A small independent evaluator: integers, + - * /, parentheses; nullopt on bad syntax or an
// inexact division. Records the integer literals it reads.
struct Evaluator {
  std::string_view s;
  size_t i = 0;
  std::vector<int64_t> literals;
  void Skip() { while (i < s.size() && s[i] == ' ') ++i; }
  std::optional<int64_t> Primary() {
    Skip();
    if (i < s.size() && s[i] == '(') {
      ++i;
      auto v = Sum();
      Skip();
      if (!v || i >= s.size() || s[i] != ')') return std::nullopt;
      ++i;
      return v;
    }
    bool neg = false;
    if (i < s.size() && s[i] == '-') neg = true, ++i;
    if (i >= s.size() || !isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
    int64_t v = 0;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) v = v * 10 + (s[i++] - '0');
    literals.push_back(neg ? -v : v);
    return neg ? -v : v;
  }
  std::optional<int64_t> Product() {
    auto v = Primary();
    for (;;) {
      Skip();
      if (!v || i >= s.size() || (s[i] != '*' && s[i] != '/')) return v;
      const char op = s[i++];
      auto r = Primary();
      if (!r) return std::nullopt;
      if (op == '*') {
        v = *v * *r;
      } else {
        if (*r == 0 || *v % *r != 0) return std::nullopt;
        v = *v / *r;
      }
    }
  }
  std::optional<int64_t> Sum() {
    auto v = Product();
    for (;;) {
      Skip();
      if (!v || i >= s.size() || (s[i] != '+' && s[i] != '-')) return v;
      const char op = s[i++];
      auto r = Product();
      if (!r) return std::nullopt;
      v = op == '+' ? *v + *r : *v - *r;
    }
  }
};

TEST(Countdown, SolvableByConstructionAndVerifiedByBruteForce) {
  SplitMix64 rng(2026);
  CountdownOptions o;
  for (int n = 0; n < 300; ++n) {
    auto e = GenerateCountdown(rng, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const std::vector<int64_t> nums = e->meta["nums"].get<std::vector<int64_t>>();
    const int64_t target = e->meta["target"].get<int64_t>();
    ASSERT_GE(nums.size(), 3u);
    ASSERT_LE(nums.size(), 4u);
    for (int64_t x : nums) ASSERT_TRUE(x >= 1 && x <= 100);
    ASSERT_TRUE(target >= 1 && target <= 1000);
    EXPECT_EQ(e->answer, std::to_string(target));
    EXPECT_TRUE(Solvable(nums, target)) << e->question;
    // The stored solution uses exactly the numbers and evaluates to the target.
    Evaluator ev{e->solution};
    auto v = ev.Sum();
    ASSERT_TRUE(v.has_value()) << e->solution;
    EXPECT_EQ(*v, target) << e->solution;
    std::vector<int64_t> a = ev.literals, b = nums;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b) << e->solution;
  }
}

TEST(Countdown, DifficultyKnobsAndDeterminism) {
  CountdownOptions o;
  o.min_numbers = o.max_numbers = 5;
  o.max_number = 20;
  o.ops = "+*";
  o.max_target = 100000;
  SplitMix64 r1(1), r2(1);
  for (int n = 0; n < 20; ++n) {
    auto a = GenerateCountdown(r1, o), b = GenerateCountdown(r2, o);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->meta, b->meta);
    EXPECT_EQ(a->meta["nums"].size(), 5u);
    EXPECT_EQ(a->solution.find_first_of("-/"), std::string::npos);
  }
  o.ops = "+^";
  EXPECT_FALSE(GenerateCountdown(r1, o).ok());
  CountdownOptions impossible;
  impossible.min_target = impossible.max_target = 999999;
  impossible.max_number = 2;
  impossible.max_attempts = 50;
  EXPECT_EQ(GenerateCountdown(r1, impossible).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(Arithmetic, AnswersMatchAnIndependentEvaluator) {
  SplitMix64 rng(7);
  ArithmeticOptions o;
  o.min_steps = 1;
  o.max_steps = 6;
  for (int n = 0; n < 500; ++n) {
    auto e = GenerateArithmetic(rng, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    Evaluator ev{e->solution};
    auto v = ev.Sum();
    ASSERT_TRUE(v.has_value()) << e->solution;
    EXPECT_EQ(std::to_string(*v), e->answer) << e->solution;
    EXPECT_GT(*v, 0);
    EXPECT_EQ(ev.i, e->solution.size());
  }
  o.allow_negative = true;
  o.min_operand = -50;
  for (int n = 0; n < 200; ++n) {
    auto e = GenerateArithmetic(rng, o);
    ASSERT_TRUE(e.ok());
    Evaluator ev{e->solution};
    auto v = ev.Sum();
    ASSERT_TRUE(v.has_value()) << e->solution;
    EXPECT_EQ(std::to_string(*v), e->answer) << e->solution;
  }
  ArithmeticOptions bad;
  bad.min_steps = 0;
  EXPECT_FALSE(GenerateArithmetic(rng, bad).ok());
}

TEST(Synthetic, RowsReadBackAsDatasets) {
  SplitMix64 rng(3);
  auto c = GenerateCountdown(rng, {});
  ASSERT_TRUE(c.ok());
  DatasetOptions o;
  o.format = DatasetFormat::kCountdown;
  auto back = ParseRow(ExampleToRow(*c), o);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->question, c->question);
  EXPECT_EQ(back->answer, c->answer);
  EXPECT_EQ(back->fields.at("nums"), c->fields.at("nums"));
  auto a = GenerateArithmetic(rng, {});
  ASSERT_TRUE(a.ok());
  o.format = DatasetFormat::kGeneric;
  auto generic = ParseRow(ExampleToRow(*a), o);
  ASSERT_TRUE(generic.ok()) << generic.status().ToString();
  EXPECT_EQ(generic->answer, a->answer);
  EXPECT_EQ(generic->task, "arithmetic");
}

}  // namespace
}  // namespace grpo::data
