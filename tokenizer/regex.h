// A compiled PCRE2 regular expression used by the pre-tokenizer's Split steps.
//
// Patterns are compiled with PCRE2_UTF | PCRE2_UCP (so \p{L}, \w, \d and friends follow the
// Unicode database) and JIT-compiled. Before compiling, `\s` and `\S` outside character classes
// and `\s` inside them are rewritten to the Unicode White_Space property (the meaning they have in
// the Oniguruma engine of HuggingFace `tokenizers`; PCRE2's own \s also matches U+180E).
// A Regex is immutable after Compile and safe to use from many threads at once.
#ifndef GRPO_TOKENIZER_REGEX_H_
#define GRPO_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace grpo::tokenizer {

class Regex {
 public:
  // Compiles `pattern` (PCRE/Oniguruma syntax as written in tokenizer.json). Errors name the
  // offset and PCRE2's message.
  static absl::StatusOr<Regex> Compile(std::string_view pattern);

  // Appends the [begin, end) byte ranges of all non-overlapping, non-empty matches of the
  // pattern in `text` (valid UTF-8), left to right, to `matches`. Errors come from PCRE2 (for
  // example a match limit).
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const;

  const std::string& pattern() const;

 private:
  struct Impl;
  explicit Regex(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// The rewrite Compile applies: `\s`/`\S` to White_Space classes. Exposed for tests.
std::string RewriteWhitespaceClasses(std::string_view pattern);

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_REGEX_H_
