#include "data/dataset.h"

#include <fstream>
#include <sstream>

namespace grpo::data {
namespace {

using nlohmann::json;

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

Result<std::string> StringField(const json& row, const std::string& key) {
  auto it = row.find(key);
  if (it == row.end()) return Status::InvalidArgument("missing field \"" + key + "\"");
  if (!it->is_string()) return Status::InvalidArgument("field \"" + key + "\" is not a string");
  return it->get<std::string>();
}

Result<int64_t> IntegerField(const json& v, const std::string& what) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  return Status::InvalidArgument(what + " is not an integer");
}

}  // namespace

Result<DatasetFormat> DatasetFormatFromName(std::string_view name) {
  if (name == "gsm8k") return DatasetFormat::kGsm8k;
  if (name == "math") return DatasetFormat::kMath;
  if (name == "countdown") return DatasetFormat::kCountdown;
  if (name == "generic") return DatasetFormat::kGeneric;
  return Status::InvalidArgument("dataset format '" + std::string(name) +
                                 "' (known: gsm8k, math, countdown, generic)");
}

std::optional<std::string> ExtractGsm8kAnswer(std::string_view solution) {
  const size_t mark = solution.rfind("####");
  if (mark == std::string_view::npos) return std::nullopt;
  std::string out;
  for (char c : Trim(solution.substr(mark + 4))) {
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
    if (s[j] == '}' && --depth == 0) return std::string(Trim(s.substr(i + 1, j - i - 1)));
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

Result<Example> ParseRow(const json& row, const DatasetOptions& o) {
  if (!row.is_object()) return Status::InvalidArgument("not a JSON object");
  Example e;
  switch (o.format) {
    case DatasetFormat::kGsm8k: {
      e.task = "gsm8k";
      GRPO_ASSIGN_OR_RETURN(e.question, StringField(row, o.fields.question.empty() ? "question" : o.fields.question));
      GRPO_ASSIGN_OR_RETURN(e.solution, StringField(row, o.fields.answer.empty() ? "answer" : o.fields.answer));
      auto gold = ExtractGsm8kAnswer(e.solution);
      if (!gold) return Status::InvalidArgument("answer has no final \"#### <number>\" line");
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
        if (!gold) return Status::InvalidArgument("solution has no \\boxed{...} answer");
        e.answer = *gold;
      }
      break;
    }
    case DatasetFormat::kCountdown: {
      e.task = "countdown";
      auto nums = row.find(o.fields.nums);
      if (nums == row.end() || !nums->is_array() || nums->empty()) {
        return Status::InvalidArgument("field \"" + o.fields.nums + "\" is not a non-empty array");
      }
      std::vector<int64_t> values;
      for (size_t i = 0; i < nums->size(); ++i) {
        GRPO_ASSIGN_OR_RETURN(int64_t v, IntegerField((*nums)[i], o.fields.nums + "[" + std::to_string(i) + "]"));
        values.push_back(v);
      }
      auto target = row.find(o.fields.target);
      if (target == row.end()) return Status::InvalidArgument("missing field \"" + o.fields.target + "\"");
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
    case DatasetFormat::kGeneric: {
      e.task = "generic";
      std::string qkey = o.fields.question;
      if (qkey.empty()) qkey = row.contains("prompt") || !row.contains("question") ? "prompt" : "question";
      GRPO_ASSIGN_OR_RETURN(e.question, StringField(row, qkey));
      const std::string key = o.fields.answer.empty() ? "answer" : o.fields.answer;
      auto a = row.find(key);
      if (a == row.end()) return Status::InvalidArgument("missing field \"" + key + "\"");
      if (a->is_string()) {
        e.answer = a->get<std::string>();
      } else if (a->is_number()) {
        e.answer = a->dump();
      } else {
        return Status::InvalidArgument("field \"" + key + "\" is not a string or number");
      }
      if (auto t = row.find("task"); t != row.end() && t->is_string()) e.task = t->get<std::string>();
      break;
    }
  }
  e.fields["question"] = e.question;
  e.fields["answer"] = e.answer;
  return e;
}

Result<Dataset> ParseJsonl(std::string_view text, const DatasetOptions& options, const std::string& name) {
  Dataset d;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (Trim(line).empty()) continue;
    Status error;
    try {
      const json row = json::parse(line);
      auto e = ParseRow(row, options);
      if (e.ok()) {
        e->line = line_no;
        d.examples.push_back(std::move(*e));
        continue;
      }
      error = e.status();
    } catch (const json::exception& ex) {
      error = Status::InvalidArgument(std::string("not valid JSON: ") + ex.what());
    }
    if (options.strict) {
      return Status::InvalidArgument(name + ":" + std::to_string(line_no) + ": " + error.message());
    }
    d.bad_rows.push_back({line_no, error.message()});
  }
  return d;
}

Result<Dataset> LoadJsonl(const std::string& path, const DatasetOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IoError(path + ": read failed");
  return ParseJsonl(ss.str(), options, path);
}

}  // namespace grpo::data
