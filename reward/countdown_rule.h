// CountdownRule ("countdown"): the Countdown arithmetic game (TinyZero).
//
// Inputs: the numbers from meta "numbers" (or "nums"): every integer in the value, e.g.
// "[3, 7, 25, 50]"; the target from meta "target", else the gold answer. Missing or malformed
// numbers/target are an error.
// The equation is the last <answer>...</answer> (or, failing that, the last \boxed{}); an
// optional "= value" suffix is allowed and must equal the target.
// Scores: 1.0 when the expression uses each given number exactly once, only + - * / (also
// × ÷ \times \div \cdot) and parentheses, and evaluates exactly (rational arithmetic) to the
// target; `format_score` (default 0) when an equation was found but breaks any of these (wrong
// value, numbers reused or missing, other characters, division by zero, unary minus); 0 when no
// equation was found. Bounds: equations over 1024 bytes or nested deeper than 64 are invalid.
#ifndef GRPO_REWARD_COUNTDOWN_RULE_H_
#define GRPO_REWARD_COUNTDOWN_RULE_H_

#include <string>
#include <vector>

#include "reward/rational.h"
#include "reward/rule.h"

namespace grpo::reward {

struct CountdownRuleOptions {
  double format_score = 0.0;
};

// Evaluates a Countdown expression exactly; fills `used` with the integer literals in order.
// InvalidArgument describes why the expression is not valid.
absl::StatusOr<Rational> EvalCountdownExpression(std::string_view expr, std::vector<int64_t>* used);

class CountdownRule : public Rule {
 public:
  explicit CountdownRule(CountdownRuleOptions options = {}) : options_(options) {}
  std::string_view type() const override { return "countdown"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  CountdownRuleOptions options_;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_COUNTDOWN_RULE_H_
