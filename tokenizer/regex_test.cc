#include "tokenizer/regex.h"

#include <gtest/gtest.h>

namespace grpo::tokenizer {
namespace {

std::vector<std::string> Matches(const std::string& pattern, const std::string& text) {
  auto r = Regex::Compile(pattern);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  std::vector<std::pair<size_t, size_t>> m;
  EXPECT_TRUE(r->FindAll(text, m).ok());
  std::vector<std::string> out;
  for (auto [b, e] : m) out.push_back(text.substr(b, e - b));
  return out;
}

TEST(Regex, UnicodeClasses) {
  EXPECT_EQ(Matches("\\p{L}+", "abc déf 你好 123"),
            (std::vector<std::string>{"abc", "déf", "你好"}));
  EXPECT_EQ(Matches("\\p{N}", "a1٣Ⅷ"), (std::vector<std::string>{"1", "٣", "Ⅷ"}));
  EXPECT_EQ(Matches("\\p{N}{1,3}", "1234567"), (std::vector<std::string>{"123", "456", "7"}));
}

TEST(Regex, WhitespaceIsUnicodeWhiteSpace) {
  // U+0085 is White_Space; U+180E (PCRE2's \s) and U+FEFF (JavaScript's \s) are not.
  EXPECT_EQ(Matches("\\s+", "a\xC2\x85" "b"), (std::vector<std::string>{"\xC2\x85"}));
  EXPECT_TRUE(Matches("\\s", "\xE1\xA0\x8E").empty());
  EXPECT_TRUE(Matches("\\s", "\xEF\xBB\xBF").empty());
  EXPECT_EQ(Matches("[^\\s\\p{L}]+", "ab !? cd"), (std::vector<std::string>{"!?"}));
  EXPECT_EQ(Matches("\\s+(?!\\S)", "a   b"), (std::vector<std::string>{"  "}));
  EXPECT_EQ(RewriteWhitespaceClasses("[\\]\\s]"), std::string("[\\]") + "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]");
}

TEST(Regex, CaseInsensitiveGroupAndEmptyMatches) {
  EXPECT_EQ(Matches("(?i:'s|'re)", "it's THEY'RE"), (std::vector<std::string>{"'s", "'RE"}));
  EXPECT_EQ(Matches("x*", "axxb"), (std::vector<std::string>{"xx"}));  // empty matches skipped
}

TEST(Regex, BadPatternIsAnError) {
  auto r = Regex::Compile("(unclosed");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("offset"), std::string::npos);
}

}  // namespace
}  // namespace grpo::tokenizer
