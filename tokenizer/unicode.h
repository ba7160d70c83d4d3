// Unicode helpers of the tokenizer on top of core/utf8.h (validation, encoding, decoding and
// code point iteration, which callers use from there): NFC normalization, and lossy decoding of
// byte strings that may end in (or contain) broken UTF-8.
//
// NFC uses tables generated from Unicode 14.0 (tools/tokenizer_gen_unicode.py), the Unicode
// version of the PCRE2 library that classifies characters for the pre-tokenizer regexes.
#ifndef GRPO_TOKENIZER_UNICODE_H_
#define GRPO_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/utf8.h"

namespace grpo::tokenizer {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Length of the longest prefix of `bytes` that may still become a valid UTF-8 character with more
// bytes appended, looking only at the end: returns how many trailing bytes form an incomplete (but
// so far valid) sequence, 0 when the string does not end inside a character.
size_t IncompleteUtf8Suffix(std::string_view bytes);

// True when `s` (valid UTF-8) is certainly already in NFC (a fast check: no character that NFC
// could change or combine appears).
bool IsNfcQuick(std::string_view s);

// The NFC normalization of `s` (valid UTF-8).
std::string ToNfc(std::string_view s);

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_UNICODE_H_
