// FormatRule ("format"): the DeepSeek-R1 `<think>...</think><answer>...</answer>` structure.
//
// Modes (scores exact):
//  - strict:    1 if the completion (trailing whitespace ignored) is exactly
//               "<think>\n" T "\n</think>\n<answer>\n" A "\n</answer>", where T and A contain
//               none of the four tags; else 0 (open-r1's format reward).
//  - lenient:   1 if each of the four tags occurs exactly once, in the order <think> </think>
//               <answer> </answer>, with only whitespace before <think>, between </think> and
//               <answer>, and after </answer>; else 0.
//  - tag_count: 0.25 for each of "<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>"
//               that occurs exactly once (0, 0.25, ..., 1; open-r1's tag_count reward).
// With think_prefilled (the prompt template ends with "<think>", as in R1-Zero), "<think>" is
// put in front of the completion before checking.
#ifndef GRPO_REWARD_FORMAT_RULE_H_
#define GRPO_REWARD_FORMAT_RULE_H_

#include <string>

#include "reward/rule.h"

namespace grpo::reward {

enum class FormatMode { kStrict, kLenient, kTagCount };
absl::StatusOr<FormatMode> ParseFormatMode(const std::string& name);

struct FormatRuleOptions {
  FormatMode mode = FormatMode::kStrict;
  bool think_prefilled = false;
};

class FormatRule : public Rule {
 public:
  explicit FormatRule(FormatRuleOptions options = {}) : options_(options) {}
  std::string_view type() const override { return "format"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  FormatRuleOptions options_;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_FORMAT_RULE_H_
