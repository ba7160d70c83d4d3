// UTF-8 and Unicode helpers of the tokenizer: validation, code point iteration, NFC
// normalization, and lossy decoding of byte strings that may end in (or contain) broken UTF-8.
//
// NFC uses tables generated from Unicode 14.0 (tools/tokenizer_gen_unicode.py), the Unicode
// version of the PCRE2 library that classifies characters for the pre-tokenizer regexes.
#ifndef GRPO_TOKENIZER_UNICODE_H_
#define GRPO_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace grpo::tokenizer {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// True when `s` is well-formed UTF-8 (no surrogates, no overlong forms, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s);

// Byte offset of the first ill-formed sequence in `s`, or s.size() when it is all valid.
size_t FirstInvalidUtf8(std::string_view s);

// Appends the UTF-8 encoding of `cp` (which must be a Unicode scalar value).
void AppendUtf8(char32_t cp, std::string& out);

// Decodes one code point of valid UTF-8 at s[i] and advances i. Precondition: IsValidUtf8(s).
char32_t NextCodePoint(std::string_view s, size_t& i);

// Length of the longest prefix of `bytes` that may still become a valid UTF-8 character with more
// bytes appended, looking only at the end: returns how many trailing bytes form an incomplete (but
// so far valid) sequence, 0 when the string does not end inside a character.
size_t IncompleteUtf8Suffix(std::string_view bytes);

// Decodes bytes as UTF-8, replacing each maximal ill-formed subpart with U+FFFD (the WHATWG /
// Unicode "best practice" used by TextDecoder, Rust's from_utf8_lossy and Python's "replace").
std::string Utf8Lossy(std::string_view bytes);

// True when `s` (valid UTF-8) is certainly already in NFC (a fast check: no character that NFC
// could change or combine appears).
bool IsNfcQuick(std::string_view s);

// The NFC normalization of `s` (valid UTF-8).
std::string ToNfc(std::string_view s);

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_UNICODE_H_
