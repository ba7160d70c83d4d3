#include "data/dataset.h"

#include <cstdio>

#include "core/jsonl.h"
#include "core/strings.h"
#include "data/code_tasks.h"

namespace grpo::data {
namespace {

using nlohmann::json;

absl::StatusOr<std::string> StringField(const json& row, const std::string& key) {
  auto it = row.find(key);
  if (it == row.end()) return absl::InvalidArgumentError("missing field \"" + key + "\"");
  if (!it->is_string()) return absl::InvalidArgumentError("field \"" + key + "\" is not a string");
  return it->get<std::string>();
}

absl::StatusOr<int64_t> IntegerField(const json& v, const std::string& what) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  return absl::InvalidArgumentError(what + " is not an integer");
}

}  // namespace

absl::StatusOr<DatasetFormat> DatasetFormatFromName(std::string_view name) {
  if (name == "gsm8k") return DatasetFormat::kGsm8k;
  if (name == "math") return DatasetFormat::kMath;
  if (name == "countdown") return DatasetFormat::kCountdown;
  if (name == "generic") return DatasetFormat::kGeneric;
  if (name == "code") return DatasetFormat::kCode;
  return absl::InvalidArgumentError("dataset format '" + std::string(name) +
                                 "' (known: gsm8k, math, countdown, generic, code)");
}

std::optional<std::string> ExtractGsm8kAnswer(std::string_view solution) {
  const size_t mark = solution.rfind("####");
  if (mark == std::string_view::npos) return std::nullopt;
  std::string out;
  for (char c : StripAsciiWhitespace(solution.substr(mark + 4))) {
    if (c != ',') out.push_back(c);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::optional<std::string> ExtractBoxed(std::string_view s) {
  size_t best = std::string_view::npos;
  size_t skip = 0;
  for (std::string_view cmd : {std::string_view("\\boxed"), std::string_view("\\fbox")}) {
    const size_t at = s.rfind(cmd);
    if (at != std::string_view::npos && (best == std::string_view::npos || at > best)) {
      best = at;
      skip = cmd.size();
    }
  }
  if (best == std::string_view::npos) return std::nullopt;
  size_t i = best + skip;
  while (i < s.size() && s[i] == ' ') ++i;
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  int depth = 0;
  for (size_t j = i; j < s.size(); ++j) {
    if (s[j] == '\\' && j + 1 < s.size()) {
      ++j;  // an escaped brace does not count
      continue;
    }
    if (s[j] == '{') ++depth;
    if (s[j] == '}' && --depth == 0) return std::string(StripAsciiWhitespace(s.substr(i + 1, j - i - 1)));
  }
  return std::nullopt;  // unbalanced
}

std::string CountdownQuestion(const std::vector<int64_t>& nums, int64_t target) {
  std::string list = "[";
  for (size_t i = 0; i < nums.size(); ++i) list += (i ? ", " : "") + std::to_string(nums[i]);
  list += "]";
  return "Using the numbers " + list + ", create an equation that equals " + std::to_string(target) +
         ". You can use basic arithmetic operations (+, -, *, /) and each number can only be used once.";
}

absl::StatusOr<Example> ParseRow(const json& row, const DatasetOptions& o) {
  if (!row.is_object()) return absl::InvalidArgumentError("not a JSON object");
  Example e;
  switch (o.format) {
    case DatasetFormat::kGsm8k: {
      e.task = "gsm8k";
      GRPO_ASSIGN_OR_RETURN(e.question, StringField(row, o.fields.question.empty() ? "question" : o.fields.question));
      GRPO_ASSIGN_OR_RETURN(e.solution, StringField(row, o.fields.answer.empty() ? "answer" : o.fields.answer));
      auto gold = ExtractGsm8kAnswer(e.solution);
      if (!gold) return absl::InvalidArgumentError("answer has no final \"#### <number>\" line");
      e.answer = *gold;
      break;
    }
    case DatasetFormat::kMath: {
      e.task = "math";
      GRPO_ASSIGN_OR_RETURN(e.question, StringField(row, o.fields.question.empty() ? "problem" : o.fields.question));
      GRPO_ASSIGN_OR_RETURN(e.solution, StringField(row, o.fields.answer.empty() ? "solution" : o.fields.answer));
      if (auto given = row.find("answer"); given != row.end() && given->is_string() && o.fields.answer != "answer") {
        e.answer = given->get<std::string>();
      } else {
        auto gold = ExtractBoxed(e.solution);
        if (!gold) return absl::InvalidArgumentError("solution has no \\boxed{...} answer");
        e.answer = *gold;
      }
      break;
    }
    case DatasetFormat::kCountdown: {
      e.task = "countdown";
      auto nums = row.find(o.fields.nums);
      if (nums == row.end() || !nums->is_array() || nums->empty()) {
        return absl::InvalidArgumentError("field \"" + o.fields.nums + "\" is not a non-empty array");
      }
      std::vector<int64_t> values;
      for (size_t i = 0; i < nums->size(); ++i) {
        GRPO_ASSIGN_OR_RETURN(int64_t v, IntegerField((*nums)[i], o.fields.nums + "[" + std::to_string(i) + "]"));
        values.push_back(v);
      }
      auto target = row.find(o.fields.target);
      if (target == row.end()) return absl::InvalidArgumentError("missing field \"" + o.fields.target + "\"");
      GRPO_ASSIGN_OR_RETURN(int64_t t, IntegerField(*target, "field \"" + o.fields.target + "\""));
      e.question = CountdownQuestion(values, t);
      e.answer = std::to_string(t);
      if (auto s = row.find("solution"); s != row.end() && s->is_string()) e.solution = s->get<std::string>();
      e.meta = json{{"nums", values}, {"target", t}};
      std::string list = json(values).dump();
      std::string spaced;
      for (char c : list) spaced += c == ',' ? std::string(", ") : std::string(1, c);
      e.fields["nums"] = spaced;
      e.fields["target"] = e.answer;
      break;
    }
    case DatasetFormat::kCode:
      return ParseCodeRow(row);
    case DatasetFormat::kGeneric: {
      e.task = "generic";
      std::string qkey = o.fields.question;
      if (qkey.empty()) qkey = row.contains("prompt") || !row.contains("question") ? "prompt" : "question";
      GRPO_ASSIGN_OR_RETURN(e.question, StringField(row, qkey));
      const std::string key = o.fields.answer.empty() ? "answer" : o.fields.answer;
      auto a = row.find(key);
      if (a == row.end()) return absl::InvalidArgumentError("missing field \"" + key + "\"");
      if (a->is_string()) {
        e.answer = a->get<std::string>();
      } else if (a->is_number()) {
        e.answer = a->dump();
      } else {
        return absl::InvalidArgumentError("field \"" + key + "\" is not a string or number");
      }
      if (auto t = row.find("task"); t != row.end() && t->is_string()) e.task = t->get<std::string>();
      break;
    }
  }
  e.fields["question"] = e.question;
  e.fields["answer"] = e.answer;
  return e;
}

namespace {

// Every row of `reader`: an example, or a bad row (with strict, the first bad row fails).
absl::StatusOr<Dataset> ReadRows(JsonlReader& reader, const DatasetOptions& options) {
  if (!(options.max_bad_fraction >= 0 && options.max_bad_fraction <= 1)) {
    return absl::InvalidArgumentError("max_bad_fraction must be in [0, 1]");
  }
  Dataset d;
  JsonlRecord record;
  while (reader.Next(&record)) {
    absl::Status error = record.status;
    std::string reason = "not JSON";
    if (error.ok()) {
      absl::StatusOr<Example> e = ParseRow(record.value, options);
      if (e.ok()) {
        e->line = record.line;
        d.examples.push_back(std::move(e).value());
        d.tally.Used();
        continue;
      }
      reason = std::string(e.status().message());
      error = absl::InvalidArgumentError(reader.path() + ":" + std::to_string(record.line) + ": " + reason);
    }
    if (options.strict) return error;
    d.bad_rows.push_back({record.line, std::string(error.message())});
    d.tally.Skip(reason, std::string(error.message()));
  }
  GRPO_RETURN_IF_ERROR(reader.status());
  const double bad = static_cast<double>(d.tally.skipped());
  if (bad > 0 && bad > options.max_bad_fraction * static_cast<double>(d.tally.total())) {
    char fraction[32];
    std::snprintf(fraction, sizeof fraction, "%g", options.max_bad_fraction);
    return absl::InvalidArgumentError(reader.path() + ": more than " + fraction + " of the rows are bad: " +
                                      d.tally.Summary("rows", "usable", "bad") +
                                      "; is this the dataset's format (and field names)?");
  }
  return d;
}

}  // namespace

absl::StatusOr<Dataset> ParseJsonl(std::string_view text, const DatasetOptions& options, const std::string& name) {
  return ReadRows(*JsonlReader::FromText(name, text), options);
}

absl::StatusOr<Dataset> LoadJsonl(const std::string& path, const DatasetOptions& options) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> reader, JsonlReader::Open(path));
  return ReadRows(*reader, options);
}

}  // namespace grpo::data
