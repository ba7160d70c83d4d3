// Rules built on math answer equivalence (math_equiv.h):
//  - MathRule ("math"): 1 when the extracted answer is equivalent to the gold answer, else 0
//    (also 0 when no answer can be extracted). An empty or unparsable gold answer is an error.
//  - CosineRule ("cosine"): correctness as MathRule, scaled by length with a cosine schedule
//    (open-r1's cosine_scaled reward):
//        r = lo + 0.5 * (hi - lo) * (1 + cos(pi * min(L / max_len, 1)))
//    with (lo, hi) = (min_value_correct, max_value_correct) when correct and
//    (max_value_wrong, min_value_wrong) when wrong; L is the completion length in bytes, or the
//    integer meta "completion_tokens" when length_unit is tokens.
#ifndef GRPO_REWARD_MATH_RULE_H_
#define GRPO_REWARD_MATH_RULE_H_

#include <string>
#include <vector>

#include "reward/extract.h"
#include "reward/rule.h"

namespace grpo::reward {

struct MathRuleOptions {
  std::vector<ExtractMethod> extract = DefaultExtractMethods();
};

class MathRule : public Rule {
 public:
  explicit MathRule(MathRuleOptions options = {}) : options_(std::move(options)) {}
  std::string_view type() const override { return "math"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

  // Correctness alone (shared with CosineRule): true/false, or an error for a bad gold answer.
  absl::StatusOr<bool> Correct(const RewardItem& item, std::string* detail) const;

 private:
  MathRuleOptions options_;
};

enum class LengthUnit { kBytes, kTokens };

// Length of the completion in `unit` (tokens: meta "completion_tokens", an integer >= 0).
absl::StatusOr<double> CompletionLength(const RewardItem& item, LengthUnit unit);
absl::StatusOr<LengthUnit> ParseLengthUnit(const std::string& name);

struct CosineRuleOptions {
  MathRuleOptions math;
  double min_value_wrong = 0.0;
  double max_value_wrong = -0.5;
  double min_value_correct = 0.5;
  double max_value_correct = 1.0;
  double max_len = 1000;  // > 0
  LengthUnit unit = LengthUnit::kBytes;
};

class CosineRule : public Rule {
 public:
  explicit CosineRule(CosineRuleOptions options) : options_(options), math_(options.math) {}
  std::string_view type() const override { return "cosine"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  CosineRuleOptions options_;
  MathRule math_;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_MATH_RULE_H_
