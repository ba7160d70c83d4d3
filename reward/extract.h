// Final-answer extraction from a completion.
//
// Methods (tried in the configured order; the first that finds something wins):
//  - boxed:      the content of the LAST `\boxed{...}` or `\fbox{...}` with balanced braces
//                (`\boxed 5` without braces takes the next word). An unterminated `\boxed{`
//                is skipped and earlier ones are tried (at most 16).
//  - answer_tag: the content of the LAST `<answer>...</answer>`; a `\boxed{}` inside it wins.
//  - phrase:     the text after the last "answer is" / "answer:" (any case) in the final 64 KiB,
//                up to the end of its line (at most 512 bytes), trailing period stripped.
//  - hashes:     the text after the last "####" (GSM8K style), up to the end of its line.
// Completions longer than Limits::kMaxCompletionBytes are searched in their last bytes only.
// Every method is linear in the text it looks at.
#ifndef GRPO_REWARD_EXTRACT_H_
#define GRPO_REWARD_EXTRACT_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grpo::reward {

enum class ExtractMethod { kBoxed, kAnswerTag, kPhrase, kHashes };

// The default order: boxed, answer_tag, phrase.
const std::vector<ExtractMethod>& DefaultExtractMethods();
// Parses method names ("boxed", "answer_tag", "phrase", "hashes").
absl::StatusOr<std::vector<ExtractMethod>> ParseExtractMethods(const std::vector<std::string>& names);
std::string_view ExtractMethodName(ExtractMethod m);

std::optional<std::string> ExtractBoxed(std::string_view text);
std::optional<std::string> ExtractAnswerTag(std::string_view text);
std::optional<std::string> ExtractPhrase(std::string_view text);
std::optional<std::string> ExtractHashes(std::string_view text);

// Tries `methods` in order on `completion`.
std::optional<std::string> ExtractAnswer(std::string_view completion,
                                         const std::vector<ExtractMethod>& methods);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_EXTRACT_H_
