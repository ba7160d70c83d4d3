// Dataset readers: JSON Lines files of GSM8K, MATH, Countdown or generic prompt/answer rows,
// mapped to Example (example.h).
//
// Row formats (keys renamable through FieldMap; unknown keys are ignored):
//   gsm8k      {"question": "...", "answer": "...reasoning...\n#### 72"}   gold = text after ####
//   math       {"problem": "...", "solution": "... \boxed{\frac{1}{2}} ..."}  gold = last \boxed{}
//              (an "answer" key, when present, wins over the extraction)
//   countdown  {"nums": [3, 7, 25], "target": 46}                          gold = target
//   generic    {"prompt": "...", "answer": "..."}  ("question" when there is no "prompt"; an
//              optional "task" names the task)
//   code       APPS, TACO, CodeContests, LiveCodeBench, HumanEval, MBPP rows (data/code_tasks.h):
//              task "code", gold = the tests as JSON text for the `code` reward rule
// Files are read through core/jsonl.h (blank lines are skipped). A bad row (not a JSON object, a
// missing or mistyped field, no extractable answer) is reported as "PATH:LINE: why", with its
// 1-based line number: kept in Dataset::bad_rows and skipped, or with strict = true the load
// fails with that error (InvalidArgument; ResourceExhausted for a line over the JSONL limit).
// When more than max_bad_fraction of the rows are bad the load fails (InvalidArgument, with the
// counts by reason): a file mostly skipped is the wrong file or the wrong format, not data.
#ifndef GRPO_DATA_DATASET_H_
#define GRPO_DATA_DATASET_H_

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/input_tally.h"
#include "core/status.h"
#include "data/example.h"

namespace grpo::data {

enum class DatasetFormat { kGsm8k, kMath, kCountdown, kGeneric, kCode };

// "gsm8k", "math", "countdown", "generic", "code".
absl::StatusOr<DatasetFormat> DatasetFormatFromName(std::string_view name);

// Source keys per format; empty strings mean the format's default (see the table above).
struct FieldMap {
  std::string question;  // gsm8k "question", math "problem", generic "prompt"
  std::string answer;    // gsm8k "answer", math "solution", generic "answer"
  std::string nums = "nums";
  std::string target = "target";
};

struct DatasetOptions {
  DatasetFormat format = DatasetFormat::kGeneric;
  FieldMap fields;
  bool strict = false;
  // The most bad rows a load accepts, as a fraction of all rows in [0, 1]; 1 accepts any number
  // (the recipe key data.max_bad_fraction sets it for training, default 0.1).
  double max_bad_fraction = 1.0;
};

struct BadRow {
  int64_t line;
  std::string error;  // "PATH:LINE: why"
};

struct Dataset {
  std::vector<Example> examples;
  std::vector<BadRow> bad_rows;
  // The same counts by reason (used = examples): "not JSON" for a line that is not a JSON
  // object, otherwise the row's error ("missing field \"answer\""), each with its first
  // "PATH:LINE: why". Summary("rows", "usable", "bad") is the warning a loader prints.
  InputTally tally;
};

// One row to an Example; errors say what is wrong with the row (without a line number).
absl::StatusOr<Example> ParseRow(const nlohmann::json& row, const DatasetOptions& options);

// Reads a whole JSON Lines file.
absl::StatusOr<Dataset> LoadJsonl(const std::string& path, const DatasetOptions& options);
// The same from text already in memory; `name` prefixes errors.
absl::StatusOr<Dataset> ParseJsonl(std::string_view text, const DatasetOptions& options,
                           const std::string& name = "<input>");

// GSM8K: the text after the last "####", trimmed, thousands separators removed ("1,000" ->
// "1000"); nullopt when there is no "####" or nothing after it.
std::optional<std::string> ExtractGsm8kAnswer(std::string_view solution);
// MATH: the contents of the last \boxed{...} (or \fbox{...}), braces balanced; nullopt if none.
std::optional<std::string> ExtractBoxed(std::string_view solution);
// The Countdown question text for `nums` and `target`.
std::string CountdownQuestion(const std::vector<int64_t>& nums, int64_t target);

}  // namespace grpo::data

#endif  // GRPO_DATA_DATASET_H_
