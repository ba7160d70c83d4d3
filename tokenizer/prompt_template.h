// Prompt templates: how a dataset row becomes the text a policy model is asked to continue.
//
//  - R1ZeroPrompt: the DeepSeek-R1-Zero template (DeepSeek-R1 paper, table 1): a fixed
//    conversation asking for the reasoning inside <think>…</think> and the answer inside
//    <answer>…</answer>, with the user's question in it, ending with "Assistant:".
//  - PromptTemplate: plain text with named fields, "Question: {question}\nAnswer:"; "{{" and "}}"
//    stand for literal braces. Parsing checks the template once; Render fails on a missing field.
#ifndef GRPO_TOKENIZER_PROMPT_TEMPLATE_H_
#define GRPO_TOKENIZER_PROMPT_TEMPLATE_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grpo::tokenizer {

// The R1-Zero conversation with `question` as the user's prompt.
std::string R1ZeroPrompt(std::string_view question);

class PromptTemplate {
 public:
  // Errors: an unclosed "{", a lone "}", an empty or non-identifier field name ([A-Za-z0-9_]).
  static absl::StatusOr<PromptTemplate> Parse(std::string_view text);

  // The template's text with every {field} replaced; a field missing from `fields` is an
  // InvalidArgument error naming it. Fields not used by the template are ignored.
  absl::StatusOr<std::string> Render(const std::map<std::string, std::string>& fields) const;

  // The field names used, in order of first use.
  const std::vector<std::string>& fields() const { return fields_; }

 private:
  struct Part {
    bool is_field;
    std::string text;  // literal text, or the field name
  };
  std::vector<Part> parts_;
  std::vector<std::string> fields_;
};

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_PROMPT_TEMPLATE_H_
