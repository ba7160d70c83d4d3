// Shaping rules that look at the completion's length and repetition, not its correctness.
//  - LengthRule ("length"): DAPO's soft overlong punishment. With L the completion length (bytes,
//    or meta "completion_tokens" with unit tokens), L_max = max_length, L_cache = cache_length:
//        0                               if L <= L_max - L_cache
//        ((L_max - L_cache) - L) / L_cache   if L_max - L_cache < L <= L_max
//        -1                              if L > L_max
//  - RepetitionRule ("repetition"): open-r1's n-gram repetition penalty. Words are the
//    whitespace-separated, lower-cased tokens of the completion (at most the first 1,000,000);
//    with N = ngram_size, if there are fewer than N words the score is 0, else
//        (1 - unique_ngrams / total_ngrams) * max_penalty        (max_penalty <= 0)
//    n-grams are compared by a 64-bit hash (a collision, vanishingly rare, counts as a repeat).
#ifndef GRPO_REWARD_SHAPING_RULES_H_
#define GRPO_REWARD_SHAPING_RULES_H_

#include "reward/math_rule.h"
#include "reward/rule.h"

namespace grpo::reward {

struct LengthRuleOptions {
  double max_length = 4096;   // L_max > 0
  double cache_length = 512;  // 0 < L_cache <= L_max
  LengthUnit unit = LengthUnit::kBytes;
};

class LengthRule : public Rule {
 public:
  explicit LengthRule(LengthRuleOptions options) : options_(options) {}
  std::string_view type() const override { return "length"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  LengthRuleOptions options_;
};

struct RepetitionRuleOptions {
  int ngram_size = 3;         // >= 1
  double max_penalty = -1.0;  // <= 0
};

class RepetitionRule : public Rule {
 public:
  explicit RepetitionRule(RepetitionRuleOptions options) : options_(options) {}
  std::string_view type() const override { return "repetition"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  RepetitionRuleOptions options_;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_SHAPING_RULES_H_
