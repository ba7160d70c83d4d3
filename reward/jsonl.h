// The JSON Lines form of reward items and results (ARCHITECTURE.md, `grpo reward score`):
//   in:  {"id":"..","completion":"..","answer":"..","prompt":"..","task":"..","meta":{..}}
//   out: {"id":"..","reward":x,"rules":{"name":x,..},"error":".."}
// Unknown input keys are ignored; every known key is optional but must have the right type
// (strings; meta an object whose non-string values travel as compact JSON text). In the
// output, "id" is echoed when the input had one, "reward" is present iff "error" is absent,
// and "rules" maps each applied rule to its score (null for a rule that reported an error).
#ifndef GRPO_REWARD_JSONL_H_
#define GRPO_REWARD_JSONL_H_

#include <string>
#include <string_view>

#include "core/input_tally.h"
#include "core/status.h"
#include "reward/rule.h"
#include "reward/rule_set.h"

namespace grpo::reward {

struct JsonlItem {
  std::string id;
  bool has_id = false;
  RewardItem item;
};

// Parses one input line; InvalidArgument says what is wrong with it.
absl::StatusOr<JsonlItem> ParseJsonlItem(std::string_view line);
// One output line (without the newline).
std::string FormatJsonlResult(const JsonlItem& in, const ItemResult& result);

struct ScoreFileStats {
  size_t lines = 0;       // non-empty input lines
  size_t scored = 0;      // items with a reward
  size_t item_errors = 0; // items written with an error
  size_t bad_lines = 0;   // lines skipped as malformed
  // The same by reason: used = scored; the others under "bad line" or "error: <what>" (the
  // item error's text before its first quote or colon, e.g. "error: unknown task"), each with
  // its first "<input>:<line>: <why>".
  InputTally tally;
};

// Scores every line of `input_path` into `output_path` (one output line per good input line,
// in order), both through core/jsonl.h ("-" is stdin / stdout): the output is replaced
// atomically, only when the whole input was scored. Bad lines are reported on stderr as
// "<input>:<line>: <why>" and skipped; with `strict` the first bad line fails the run and
// leaves `output_path` as it was. A non-empty input of which no item was scored (all lines bad
// or all items errors) fails too (InputTally::RequireSome) and leaves `output_path` as it was.
// Uses `threads` threads (0: all cores).
absl::StatusOr<ScoreFileStats> ScoreJsonlFile(const RuleSet& rules, const std::string& input_path,
                                      const std::string& output_path, bool strict, int threads);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_JSONL_H_
