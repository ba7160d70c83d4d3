// Rule: the unit of reward. A rule scores one item (a completion and what it answers) and
// returns a score, or an error when the item cannot be judged (malformed gold answer, missing
// meta key, crashed plugin): an error is a fault of the data or the scorer, never a score.
//
// Contract for every implementation:
//  - Deterministic: the same item always gives the same output (no clocks, no global RNG).
//  - Thread-safe: Score is const and may be called concurrently from many threads.
//  - Bounded: each rule caps the bytes it looks at and the steps it takes (see Limits), never
//    recurses without a depth limit, and so returns quickly on adversarial input (1 MB
//    completions, 100k nested braces, 10^4-digit numbers, towers of powers).
//  - No exceptions escape Score.
#ifndef GRPO_REWARD_RULE_H_
#define GRPO_REWARD_RULE_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grpo::reward {

// One item to score: the fields of proto RewardRequestItem (without id).
struct RewardItem {
  std::string completion;  // the model's completion (without the prompt)
  std::string answer;      // the gold answer; empty when the task has none
  std::string prompt;      // the prompt the completion answers
  std::string task;        // task name (selects rules in a RuleSet)
  std::map<std::string, std::string> meta;  // extra inputs; non-string JSON values as JSON text
};

// What a rule says about one item.
struct RuleOutput {
  double score = 0.0;  // the rule's raw score (documented per rule in docs/reward_rules.md)
  std::string detail;  // short human-readable explanation, for logs only
};

// Size caps shared by the built-in rules. Inputs beyond a cap are not an error: the rule looks
// only at the capped part (completions) or treats the piece as unparsable (answers).
struct Limits {
  // Completions longer than this are scored on their last kMaxCompletionBytes bytes by rules
  // that search for a final answer, and on their full length by length-based rules.
  static constexpr size_t kMaxCompletionBytes = 4u << 20;
  // An extracted or gold answer longer than this is unparsable.
  static constexpr size_t kMaxAnswerBytes = 2048;
  // Nesting depth of braces/parentheses the math parser accepts.
  static constexpr int kMaxDepth = 64;
};

class Rule {
 public:
  virtual ~Rule() = default;
  // The rule's type name ("math", "format", ...); its configured name lives in RuleSet.
  virtual std::string_view type() const = 0;
  // One line saying what the rule checks and how it scores.
  virtual std::string Describe() const = 0;
  // Scores one item; see the contract above.
  virtual absl::StatusOr<RuleOutput> Score(const RewardItem& item) const = 0;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_RULE_H_
