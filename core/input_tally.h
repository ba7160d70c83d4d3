// What a command did with the records of its input (lines of a JSON Lines file, dataset rows):
// how many it used and how many it skipped, by reason. Every command that reads records prints
// Summary() when it ends, and one that used none of a non-empty input fails (RequireSome()), so
// that no run "succeeds" with nothing to show for it (issue 19, class 6).
//
//   InputTally tally;
//   ... tally.Used();  or  tally.Skip("not a JSON object", "IN.jsonl:3: not a JSON object");
//   std::fprintf(stderr, "grpo tokenize: %s\n", tally.Summary("lines", "encoded").c_str());
//   GRPO_RETURN_IF_ERROR(tally.RequireSome("lines"));  // before the output is put in place
//
// Reasons are short categories chosen by the caller ("bad JSON", "does not fit the model");
// each keeps its count and the message of its first instance. Reasons are reported in the order
// they were first met. Not thread-safe.
#ifndef GRPO_CORE_INPUT_TALLY_H_
#define GRPO_CORE_INPUT_TALLY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grpo {

class InputTally {
 public:
  // A record that gave output.
  void Used(int64_t n = 1) { used_ += n; }
  // A record that gave none: `reason` groups it, `detail` (its full message, "IN:LINE: why")
  // is kept for the first record of each reason.
  void Skip(std::string_view reason, std::string_view detail);

  int64_t used() const { return used_; }
  int64_t skipped() const { return skipped_; }
  int64_t total() const { return used_ + skipped_; }
  // The number skipped for `reason` (0 if never seen).
  int64_t skipped(std::string_view reason) const;

  // "5 lines: 3 encoded, 2 skipped (1 not a JSON object, first IN:3: ...; 1 no \"text\" string,
  // first IN:4: ...)"; without skips "5 lines: 5 encoded". `used_as` and `skipped_as` name the
  // two outcomes. A first message longer than 300 bytes is cut with "...".
  std::string Summary(std::string_view unit = "lines", std::string_view used_as = "used",
                      std::string_view skipped_as = "skipped") const;
  // OK when the input was empty or at least one record was used; otherwise InvalidArgument
  // "nothing to output: none of the N <unit> could be used (<reasons as in Summary>)".
  absl::Status RequireSome(std::string_view unit = "lines") const;

 private:
  struct Reason {
    std::string name;
    int64_t count = 0;
    std::string first;
  };
  std::string Reasons() const;

  int64_t used_ = 0;
  int64_t skipped_ = 0;
  std::vector<Reason> reasons_;
};

}  // namespace grpo

#endif  // GRPO_CORE_INPUT_TALLY_H_
