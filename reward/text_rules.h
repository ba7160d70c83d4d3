// Text-matching rules.
//  - ChoiceRule ("choice"): multiple choice. The gold answer is one option letter ("B", "(B)",
//    "B)", "\text{(B)}"); anything else is an error. The prediction is the final answer
//    (boxed, answer_tag, phrase), reduced to its option letter the same way. Score 1 if the
//    letters are equal, else 0 (also 0 when no letter is found).
//  - ExactRule ("exact"): 1 if the final answer (or, with extract: false, the whole completion)
//    equals the gold answer after trimming and collapsing whitespace (case-insensitively unless
//    case_sensitive), else 0. An empty gold answer is an error.
//  - RegexRule ("regex"): RE2 (linear time, no backtracking). 1 if `pattern` matches the
//    completion (anywhere, or the whole of it with full_match), else 0. With compare_group N,
//    the N-th capture group of the first match must also equal the gold
//    answer (trimmed). An invalid pattern is a configuration error.
#ifndef GRPO_REWARD_TEXT_RULES_H_
#define GRPO_REWARD_TEXT_RULES_H_

#include <memory>
#include <string>
#include <vector>

#include "reward/extract.h"
#include "reward/rule.h"

namespace re2 {
class RE2;
}

namespace grpo::reward {

struct ChoiceRuleOptions {
  std::string letters = "ABCDE";
  std::vector<ExtractMethod> extract = DefaultExtractMethods();
};

// The option letter that `text` denotes ("B", "(B)", "B.", "\text{(B)} 42"), or 0.
char ChoiceLetter(std::string_view text, std::string_view letters);

class ChoiceRule : public Rule {
 public:
  explicit ChoiceRule(ChoiceRuleOptions options = {}) : options_(std::move(options)) {}
  std::string_view type() const override { return "choice"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  ChoiceRuleOptions options_;
};

struct ExactRuleOptions {
  bool case_sensitive = false;
  bool extract = true;
  std::vector<ExtractMethod> methods = DefaultExtractMethods();
};

class ExactRule : public Rule {
 public:
  explicit ExactRule(ExactRuleOptions options = {}) : options_(std::move(options)) {}
  std::string_view type() const override { return "exact"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  ExactRuleOptions options_;
};

struct RegexRuleOptions {
  std::string pattern;
  bool full_match = false;
  int compare_group = 0;  // 0: just match; N > 0: group N must equal the gold answer
};

class RegexRule : public Rule {
 public:
  // Compiles the pattern; InvalidArgument names RE2's complaint.
  static absl::StatusOr<std::unique_ptr<RegexRule>> Create(RegexRuleOptions options);
  ~RegexRule() override;
  std::string_view type() const override { return "regex"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  RegexRule(RegexRuleOptions options, std::unique_ptr<re2::RE2> re);
  RegexRuleOptions options_;
  std::unique_ptr<re2::RE2> re_;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_TEXT_RULES_H_
