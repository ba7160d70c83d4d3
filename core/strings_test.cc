#include "core/strings.h"

#include <gtest/gtest.h>

#include <string>

namespace grpo {
namespace {

TEST(Strings, StripAsciiWhitespace) {
  EXPECT_EQ(StripAsciiWhitespace("  a b\t\r\n"), "a b");
  EXPECT_EQ(StripAsciiWhitespace("\v\fx\f\v"), "x");
  EXPECT_EQ(StripAsciiWhitespace(" \t\n"), "");
  EXPECT_EQ(StripAsciiWhitespace(""), "");
  EXPECT_EQ(StripAsciiWhitespace("x"), "x");
  // U+00A0 (no-break space, C2 A0) and other non-ASCII bytes are kept.
  const std::string nbsp = "\xc2\xa0" "x" "\xc2\xa0";
  EXPECT_EQ(StripAsciiWhitespace(nbsp), nbsp);
  // A view into the input, not a copy.
  const std::string s = "  abc ";
  EXPECT_EQ(StripAsciiWhitespace(s).data(), s.data() + 2);
}

}  // namespace
}  // namespace grpo
