#include "core/utf8.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace grpo {
namespace {

// An independent statement of the rule: decode by the bit patterns, then refuse overlong forms,
// surrogates and code points above U+10FFFF. Returns the length of the valid sequence at the
// start of `s`, or 0.
size_t ReferenceLength(std::string_view s, char32_t* cp) {
  const auto c = static_cast<unsigned char>(s[0]);
  size_t len;
  char32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[k]);
    if ((cc & 0xC0) != 0x80) return 0;
    v = (v << 6) | (cc & 0x3F);
  }
  if ((len == 2 && v < 0x80) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000)) return 0;
  if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

TEST(Utf8, KnownCases) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE4\xBD\xA0 \xF0\x9F\x98\x80"));
  EXPECT_TRUE(IsValidUtf8(std::string("nul \0 inside", 12)));
  EXPECT_TRUE(IsValidUtf8("\xEF\xBF\xBF\xF4\x8F\xBF\xBF"));  // U+FFFF, U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));                     // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x9F\xBF"));                 // overlong U+07FF
  EXPECT_FALSE(IsValidUtf8("\xF0\x8F\xBF\xBF"));             // overlong U+FFFF
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));                 // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xED\xBF\xBF"));                 // surrogate U+DFFF
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));             // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xE4\xBD"));                     // truncated
  EXPECT_FALSE(IsValidUtf8("\x80"));                         // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

TEST(Utf8, FirstInvalidIsTheOffsetOfTheBadSequence) {
  EXPECT_EQ(FirstInvalidUtf8(""), 0u);
  EXPECT_EQ(FirstInvalidUtf8("abc"), 3u);
  EXPECT_EQ(FirstInvalidUtf8("ab\xFF" "cd"), 2u);
  EXPECT_EQ(FirstInvalidUtf8("\xC3\xA9\xE4\xBD"), 2u);                  // truncated at the end
  EXPECT_EQ(FirstInvalidUtf8("0123456789abcdef\xED\xA0\x80"), 16u);    // after the 8-byte path
  EXPECT_EQ(FirstInvalidUtf8("0123456\xC3\xA9" "89abcdefgh\xC0"), 19u);  // straddling words
}

TEST(Utf8, MatchesTheReferenceOnEveryOneTwoAndThreeByteString) {
  char32_t want_cp = 0, got_cp = 0;
  for (int a = 0; a < 256; ++a) {
    const std::string one = Bytes({a});
    EXPECT_EQ(IsValidUtf8(one), ReferenceLength(one, &want_cp) == 1) << a;
    for (int b = 0; b < 256; ++b) {
      const std::string two = Bytes({a, b});
      const size_t want2 = ReferenceLength(two, &want_cp);
      ASSERT_EQ(DecodeUtf8(two, 0, &got_cp), want2) << a << " " << b;
      if (want2 > 0) {
        ASSERT_EQ(got_cp, want_cp);
      }
      ASSERT_EQ(IsValidUtf8(two), want2 == 2 || (want2 == 1 && ReferenceLength(two.substr(1), &want_cp) == 1));
      if (a < 0xE0 || a > 0xEF) continue;  // three-byte leads only: 16 * 65536 strings
      for (int c = 0; c < 256; ++c) {
        const std::string three = Bytes({a, b, c});
        const size_t want3 = ReferenceLength(three, &want_cp);
        ASSERT_EQ(DecodeUtf8(three, 0, &got_cp), want3) << a << " " << b << " " << c;
        if (want3 > 0) {
          ASSERT_EQ(got_cp, want_cp);
        }
        ASSERT_EQ(IsValidUtf8(three), want3 == 3);
      }
    }
  }
}

TEST(Utf8, MatchesTheReferenceOnFourByteLeads) {
  char32_t want_cp = 0, got_cp = 0;
  for (int a = 0xF0; a < 0x100; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (int c : {0x00, 0x7F, 0x80, 0xA5, 0xBF, 0xC0, 0xFF}) {
        for (int d : {0x3F, 0x80, 0x9A, 0xBF, 0xC0}) {
          const std::string four = Bytes({a, b, c, d});
          const size_t want = ReferenceLength(four, &want_cp);
          ASSERT_EQ(DecodeUtf8(four, 0, &got_cp), want) << a << " " << b << " " << c << " " << d;
          if (want > 0) {
            ASSERT_EQ(got_cp, want_cp);
          }
          ASSERT_EQ(IsValidUtf8(four), want == 4);
        }
      }
    }
  }
}

TEST(Utf8, EncodeDecodeRoundTripsEveryScalarValue) {
  std::string s;
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    s.clear();
    AppendUtf8(cp, &s);
    const size_t want_len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    ASSERT_EQ(s.size(), want_len) << static_cast<uint32_t>(cp);
    char32_t back = 0;
    ASSERT_EQ(DecodeUtf8(s, 0, &back), want_len) << static_cast<uint32_t>(cp);
    ASSERT_EQ(back, cp);
    ASSERT_TRUE(IsValidUtf8(s)) << static_cast<uint32_t>(cp);
  }
}

TEST(Utf8, NextCodePointIteratesOverValidText) {
  std::string s;
  const char32_t cps[] = {U'a', 0xE9, 0x4F60, 0x1F600, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF};
  for (char32_t cp : cps) AppendUtf8(cp, &s);
  size_t i = 0;
  for (char32_t cp : cps) {
    ASSERT_LT(i, s.size());
    EXPECT_EQ(static_cast<uint32_t>(NextCodePoint(s, &i)), static_cast<uint32_t>(cp));
  }
  EXPECT_EQ(i, s.size());
}

TEST(Utf8, DecodeAtAnOffsetAndMaximalIllFormedSubparts) {
  const std::string s = "a\xC3\xA9\xF0\x9F\x98\x80";
  char32_t cp = 0;
  EXPECT_EQ(DecodeUtf8(s, 1, &cp), 2u);
  EXPECT_EQ(cp, 0xE9u);
  EXPECT_EQ(DecodeUtf8(s, 3, &cp), 4u);
  EXPECT_EQ(cp, 0x1F600u);
  EXPECT_EQ(DecodeUtf8(s, 4, nullptr), 0u);  // a continuation byte does not start a character

  // Unicode 15, Table 3-8's examples: how many bytes each U+FFFD replaces.
  size_t bad = 0;
  EXPECT_EQ(DecodeUtf8("\xC0\xAF", 0, &cp, &bad), 0u);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(DecodeUtf8("\xE0\x80\xAF", 0, &cp, &bad), 0u);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(DecodeUtf8("\xED\xA0\x80", 0, &cp, &bad), 0u);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(DecodeUtf8("\xF4\x91\x92\x93", 0, &cp, &bad), 0u);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(DecodeUtf8("\xF0\x9F\x98" "b", 0, &cp, &bad), 0u);  // truncated 4-byte: one
  EXPECT_EQ(bad, 3u);
  EXPECT_EQ(DecodeUtf8("\xE1\x80", 0, &cp, &bad), 0u);            // truncated at the end
  EXPECT_EQ(bad, 2u);
  EXPECT_EQ(DecodeUtf8("\xE1\x80\x41", 0, &cp, &bad), 0u);
  EXPECT_EQ(bad, 2u);
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  // The Unicode / WHATWG examples: one U+FFFD per maximal ill-formed subpart.
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Utf8Lossy("a\xF0\x9F\x98" "b"), "a" + fffd + "b");   // truncated 4-byte: one
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), fffd + fffd);                  // overlong: two
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), fffd + fffd + fffd);        // surrogate: three
  EXPECT_EQ(Utf8Lossy("\xE4\xBD"), fffd);                          // truncated at the end
  EXPECT_EQ(Utf8Lossy("ok \xE4\xBD\xA0"), "ok \xE4\xBD\xA0");
}

}  // namespace
}  // namespace grpo
