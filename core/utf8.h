// UTF-8: the one validator and the small encode/decode helpers every part uses (config keys and
// values, safetensors headers and names, the tokenizer's text).
//
// "Valid" is the strict definition of Unicode (and of Rust's str::from_utf8, which the
// safetensors reference implementation uses): no overlong forms, no surrogates (U+D800..DFFF),
// nothing above U+10FFFF, no truncated sequence.
#ifndef GRPO_CORE_UTF8_H_
#define GRPO_CORE_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace grpo {

// Byte offset of the first ill-formed sequence in `s`, or s.size() when all of `s` is valid.
size_t FirstInvalidUtf8(std::string_view s);

// True when all of `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

// Decodes the character that starts at s[i] (requires i < s.size()). When the bytes from i on
// begin with a valid sequence, stores its code point in *cp (if cp is not null) and returns its
// length, 1 to 4. Otherwise returns 0 and, when `invalid_length` is not null, stores the length
// of the maximal ill-formed subpart there (1 to 3 bytes: what a lossy decoder replaces with one
// U+FFFD, per the Unicode "best practice" that WHATWG and Python's "replace" follow).
size_t DecodeUtf8(std::string_view s, size_t i, char32_t* cp, size_t* invalid_length = nullptr);

// Decodes the character at s[*i] and advances *i past it, without checks: the fast path for
// iterating over text that IsValidUtf8 accepted. Precondition: IsValidUtf8(s) (on other text
// it may read past the end).
inline char32_t NextCodePoint(std::string_view s, size_t* i) {
  const auto b = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
  const char32_t c0 = b(*i);
  if (c0 < 0x80) {
    *i += 1;
    return c0;
  }
  if (c0 < 0xE0) {
    const char32_t cp = ((c0 & 0x1F) << 6) | (b(*i + 1) & 0x3F);
    *i += 2;
    return cp;
  }
  if (c0 < 0xF0) {
    const char32_t cp = ((c0 & 0x0F) << 12) | ((b(*i + 1) & 0x3F) << 6) | (b(*i + 2) & 0x3F);
    *i += 3;
    return cp;
  }
  const char32_t cp = ((c0 & 0x07) << 18) | ((b(*i + 1) & 0x3F) << 12) | ((b(*i + 2) & 0x3F) << 6) |
                      (b(*i + 3) & 0x3F);
  *i += 4;
  return cp;
}

// `bytes` as valid UTF-8: each maximal ill-formed subpart replaced with U+FFFD (the WHATWG /
// Unicode "best practice" used by TextDecoder, Rust's from_utf8_lossy and Python's "replace").
// Text bound for a protobuf `string` field (which must be UTF-8, or the message does not parse
// again) goes through this when it may hold arbitrary bytes.
std::string Utf8Lossy(std::string_view bytes);

// Appends the UTF-8 encoding of `cp`, which must be a Unicode scalar value (at most U+10FFFF,
// not a surrogate).
void AppendUtf8(char32_t cp, std::string* out);

}  // namespace grpo

#endif  // GRPO_CORE_UTF8_H_
