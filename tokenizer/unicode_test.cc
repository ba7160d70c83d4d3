#include "tokenizer/unicode.h"

#include <gtest/gtest.h>

#include <random>

namespace grpo::tokenizer {
namespace {

std::string U8(char32_t cp) {
  std::string s;
  AppendUtf8(cp, &s);
  return s;
}

TEST(Utf8, Validity) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE4\xBD\xA0 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE4\xBD"));          // truncated
  EXPECT_EQ(FirstInvalidUtf8("ab\xFF" "cd"), 2u);
}

TEST(Utf8, IncompleteSuffix) {
  EXPECT_EQ(IncompleteUtf8Suffix("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("a\xE4"), 1u);
  EXPECT_EQ(IncompleteUtf8Suffix("a\xE4\xBD"), 2u);
  EXPECT_EQ(IncompleteUtf8Suffix("a\xE4\xBD\xA0"), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Suffix("\xFF"), 0u);       // invalid, not incomplete
  EXPECT_EQ(IncompleteUtf8Suffix("\xE0\x80"), 0u);   // can never become valid
}

TEST(Nfc, KnownCases) {
  EXPECT_EQ(ToNfc("e" + U8(0x301)), U8(0xE9));
  EXPECT_EQ(ToNfc(U8(0x212B)), U8(0xC5));                        // Angstrom sign -> Å
  EXPECT_EQ(ToNfc(U8(0x2126)), U8(0x3A9));                       // Ohm sign -> Omega
  EXPECT_EQ(ToNfc(U8(0x1100) + U8(0x1161)), U8(0xAC00));         // jamo -> 가
  EXPECT_EQ(ToNfc(U8(0xAC00) + U8(0x11A8)), U8(0xAC01));         // LV + T -> LVT
  EXPECT_EQ(ToNfc("q" + U8(0x307) + U8(0x323)), "q" + U8(0x323) + U8(0x307));  // reordering
  EXPECT_EQ(ToNfc("A" + U8(0x308) + U8(0x304)), U8(0x1DE));      // Ä + macron -> Ǟ
  EXPECT_EQ(ToNfc(U8(0xFB01)), U8(0xFB01));                      // compatibility only: unchanged
  EXPECT_EQ(ToNfc(U8(0x301) + "e"), U8(0x301) + "e");            // leading non-starter
  EXPECT_EQ(ToNfc(U8(0x0958)), U8(0x915) + U8(0x93C));           // composition exclusion
  EXPECT_TRUE(IsNfcQuick("plain text, caf\xC3\xA9"));
  EXPECT_FALSE(IsNfcQuick("e" + U8(0x301)));
}

TEST(Nfc, PropertiesOnRandomStrings) {
  std::mt19937 rng(4);
  const char32_t pool[] = {'a', 'e', 'o', 'A', 0x301, 0x300, 0x308, 0x323, 0x327, 0x30A, 0x1100,
                           0x1161, 0x11A8, 0xAC00, 0x212B, 0x2126, 0x958, 0x93C, 0x915, 0xE9,
                           0x4E00, 0x1F600, 0x345, 0x5B0, 0x5B7};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int n = 1 + rng() % 12;
    for (int k = 0; k < n; ++k) {
      if (rng() % 5 == 0) {
        char32_t cp;
        do cp = rng() % 0x110000; while (cp >= 0xD800 && cp <= 0xDFFF);
        AppendUtf8(cp, &s);
      } else {
        AppendUtf8(pool[rng() % std::size(pool)], &s);
      }
    }
    const std::string once = ToNfc(s);
    ASSERT_TRUE(IsValidUtf8(once));
    EXPECT_EQ(ToNfc(once), once) << "NFC is not idempotent";
    if (IsNfcQuick(s)) {
      EXPECT_EQ(once, s);
    }
  }
}

}  // namespace
}  // namespace grpo::tokenizer
