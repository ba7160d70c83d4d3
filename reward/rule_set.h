// RuleSet: rules composed into one reward per task, from a rules file.
//
// Rules file (YAML or JSON, read with core/config.h):
//
//   rules:
//     - type: math            # a built-in rule type (docs/reward_rules.md) or "plugin"
//       name: accuracy        # optional, default: the type; unique; reported per rule
//       weight: 1.0           # optional, default 1.0; finite, |weight| <= kMaxRuleWeight
//       tasks: [math, gsm8k]  # optional; absent or empty: every task
//       extract: [boxed, answer_tag]   # type-specific keys beside the common ones
//     - type: format
//       mode: strict
//       weight: 0.1
//
// Unknown keys are errors with file:line (and a suggestion). Scoring an item: the rules whose
// `tasks` are empty or contain item.task apply, in file order; total = sum(weight * score).
// An item whose task is non-empty but named by no rule, or to which no rule applies, gets an
// error; so does an item any applied rule reports an error for (reward unset; the breakdown
// keeps every rule's outcome), and one whose total is not finite (a plugin's huge score times its
// weight): a reward is always a finite number. Plugins (type: plugin) take `path` (relative paths are resolved
// against the rules file's directory), `config` (a mapping passed to the plugin as JSON),
// `timeout_ms`, `workers`, `memory_mb`, `isolation` (namespaces | weak, docs/sandbox.md).
#ifndef GRPO_REWARD_RULE_SET_H_
#define GRPO_REWARD_RULE_SET_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "reward/rule.h"

namespace grpo::reward {

// The largest |weight| a rule may have: rule scores are small numbers (mostly in [-1, 1]), and a
// weight beyond this only serves to overflow the total.
inline constexpr double kMaxRuleWeight = 1e6;

struct RuleSetOptions {
  // Directory that relative plugin paths are resolved against ("" = current directory).
  std::string base_dir;
  // Worker command for plugins (see PluginOptions::worker_argv).
  std::vector<std::string> plugin_worker_argv;
};

struct ConfiguredRule {
  std::string name;
  std::string type;
  double weight = 1.0;
  std::vector<std::string> tasks;  // empty: every task
  std::shared_ptr<const Rule> rule;
};

struct RuleResult {
  std::string rule;
  double score = 0;
  double weight = 0;
  std::string error;
  std::string detail;
};

struct ItemResult {
  std::optional<double> reward;  // set iff error is empty
  std::vector<RuleResult> rules;
  std::string error;
};

class RuleSet {
 public:
  static absl::StatusOr<RuleSet> FromConfig(const Config& config, const RuleSetOptions& options);
  static absl::StatusOr<RuleSet> LoadFile(const std::string& path, RuleSetOptions options);
  // One built-in rule with its default settings and weight 1, for `grpo reward score --rule`.
  static absl::StatusOr<RuleSet> Single(const std::string& type);

  ItemResult Score(const RewardItem& item) const;
  const std::vector<ConfiguredRule>& rules() const { return rules_; }

 private:
  std::vector<ConfiguredRule> rules_;
  std::vector<std::string> known_tasks_;
};

// Builds one rule of `type` from its entry in the rules file (type-specific keys only are read).
absl::StatusOr<std::unique_ptr<Rule>> MakeRule(const std::string& type, const Config& entry,
                                       const RuleSetOptions& options);
// The built-in rule types.
const std::vector<std::string>& BuiltinRuleTypes();

}  // namespace grpo::reward

#endif  // GRPO_REWARD_RULE_SET_H_
