#include "tokenizer/prompt_template.h"

#include <algorithm>

namespace grpo::tokenizer {

std::string R1ZeroPrompt(std::string_view question) {
  std::string s =
      "A conversation between User and Assistant. The user asks a question, and the Assistant "
      "solves it. The assistant first thinks about the reasoning process in the mind and then "
      "provides the user with the answer. The reasoning process and answer are enclosed within "
      "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
      "process here </think> <answer> answer here </answer>. User: ";
  s.append(question);
  s.append(". Assistant:");
  return s;
}

absl::StatusOr<PromptTemplate> PromptTemplate::Parse(std::string_view text) {
  PromptTemplate t;
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) t.parts_.push_back({false, std::move(literal)});
    literal.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      literal.push_back('{');
      ++i;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      literal.push_back('}');
      ++i;
    } else if (c == '{') {
      const size_t close = text.find('}', i + 1);
      if (close == std::string_view::npos) {
        return absl::InvalidArgumentError("prompt template: '{' at offset " + std::to_string(i) + " is not closed");
      }
      const std::string name(text.substr(i + 1, close - i - 1));
      const bool ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
      });
      if (!ok) {
        return absl::InvalidArgumentError("prompt template: bad field name '{" + name + "}' at offset " +
                                       std::to_string(i));
      }
      flush();
      t.parts_.push_back({true, name});
      if (std::find(t.fields_.begin(), t.fields_.end(), name) == t.fields_.end()) t.fields_.push_back(name);
      i = close;
    } else if (c == '}') {
      return absl::InvalidArgumentError("prompt template: lone '}' at offset " + std::to_string(i) +
                                     " (write '}}' for a brace)");
    } else {
      literal.push_back(c);
    }
  }
  flush();
  return t;
}

absl::StatusOr<std::string> PromptTemplate::Render(const std::map<std::string, std::string>& fields) const {
  std::string out;
  for (const Part& p : parts_) {
    if (!p.is_field) {
      out += p.text;
      continue;
    }
    auto it = fields.find(p.text);
    if (it == fields.end()) return absl::InvalidArgumentError("prompt template: no value for field '" + p.text + "'");
    out += it->second;
  }
  return out;
}

}  // namespace grpo::tokenizer
