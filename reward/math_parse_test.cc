#include "reward/math_parse.h"

#include <gtest/gtest.h>

#include "reward/math_normalize.h"

namespace grpo::reward {
namespace {

TEST(NormalizeMathAnswer, StripsDecorations) {
  EXPECT_EQ(NormalizeMathAnswer("$\\dfrac{1}{2}$"), "\\frac{1}{2}");
  EXPECT_EQ(NormalizeMathAnswer("\\left( 1, 2 \\right)"), "( 1, 2  )");
  EXPECT_EQ(NormalizeMathAnswer("90^\\circ"), "90");
  EXPECT_EQ(NormalizeMathAnswer("5 \\text{ cm}"), "5");
  EXPECT_EQ(NormalizeMathAnswer("3,5"), "3.5");
  EXPECT_EQ(NormalizeMathAnswer("3,500"), "3,500");
  EXPECT_EQ(NormalizeMathAnswer("12."), "12");
  EXPECT_EQ(NormalizeMathAnswer("\\$12"), "12");
}

TEST(ParseMath, Structures) {
  auto set = ParseMath("\\{1, 2\\}");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->nodes[set->root].kind, NodeKind::kSet);
  auto tup = ParseMath("(1, 2]");
  ASSERT_TRUE(tup.ok());
  EXPECT_EQ(tup->nodes[tup->root].kind, NodeKind::kTuple);
  EXPECT_EQ(tup->nodes[tup->root].close, ']');
  auto rel = ParseMath("x \\le 3");
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel->nodes[rel->root].kind, NodeKind::kRel);
  auto word = ParseMath("\\text{Monday}");
  ASSERT_TRUE(word.ok());
  EXPECT_TRUE(word->is_text);
  EXPECT_EQ(word->text, "monday");
}

TEST(ParseMath, Variables) {
  auto r = ParseMath("x_1 + x_{2} + \\alpha");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->var_names.size(), 3u);
  EXPECT_EQ(r->var_names[0], "x_1");
  EXPECT_EQ(r->var_names[1], "x_2");
  EXPECT_EQ(r->var_names[2], "alpha");
}

TEST(ParseMath, RejectsMalformed) {
  for (const char* s : {"", "(", "1+", "\\frac{1}", "[1,2", "\\sqrt", "1 2 )"}) {
    EXPECT_FALSE(ParseMath(s).ok()) << s;
  }
}

TEST(ParseMath, Limits) {
  EXPECT_FALSE(ParseMath(std::string(5000, '1')).ok());  // longer than kMaxAnswerBytes
  std::string deep = std::string(200, '(') + "1" + std::string(200, ')');
  EXPECT_FALSE(ParseMath(deep).ok());
}

}  // namespace
}  // namespace grpo::reward
