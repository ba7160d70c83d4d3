// Table-driven equivalence tests: each row is (gold, prediction, expected verdict).
#include "reward/math_equiv.h"

#include <gtest/gtest.h>

#include <string>

namespace grpo::reward {
namespace {

struct Case {
  const char* gold;
  const char* pred;
  bool equal;
};

constexpr Case kCases[] = {
    // Integers, signs, thousands separators, decimal commas.
    {"42", "42", true},
    {"42", "43", false},
    {"42", "042", true},
    {"-7", "-7", true},
    {"-7", "7", false},
    {"7", "+7", true},
    {"1000000", "1,000,000", true},
    {"1000000", "1{,}000{,}000", true},
    {"1000000", "1\\,000\\,000", true},
    {"1234", "1,234", true},
    {"1234", "1,235", false},
    {"3.5", "3,5", true},
    {"3.25", "3,25", true},
    {"3500", "3,500", true},
    {"1.5", "1.50", true},
    {"1.5", "1.05", false},
    {"0.1", "0.10000", true},
    // Close-but-wrong numbers must be wrong.
    {"1", "1/2", false},
    {"1/2", "1", false},
    {"5", "500", false},
    {"500", "5", false},
    {"5", "0.05", false},
    {"0.05", "5", false},
    {"100", "1000", false},
    {"2", "2.0001", false},
    {"1/3", "0.3333", false},
    {"1/3", "0.33", false},
    {"3.14", "\\pi", false},
    // Fractions.
    {"\\frac{1}{2}", "0.5", true},
    {"0.5", "\\frac{1}{2}", true},
    {"\\frac{1}{2}", "\\dfrac{1}{2}", true},
    {"\\frac{1}{2}", "\\tfrac{1}{2}", true},
    {"\\frac{1}{2}", "1/2", true},
    {"\\frac{1}{2}", "\\frac12", true},
    {"\\frac{1}{2}", "\\frac1{2}", true},
    {"\\frac{1}{2}", "\\frac{2}{4}", true},
    {"\\frac{1}{2}", "\\frac{1}{3}", false},
    {"\\frac{3}{4}", "\\frac{4}{3}", false},
    {"-\\frac{1}{2}", "\\frac{-1}{2}", true},
    {"-\\frac{1}{2}", "-0.5", true},
    {"-\\frac{1}{2}", "\\frac{1}{2}", false},
    {"\\frac{7}{3}", "7/3", true},
    {"\\frac{10}{4}", "2.5", true},
    {"\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", true},
    {"\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", true},
    {"\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{2}}{2}", false},
    // Mixed numbers.
    {"\\frac{5}{2}", "2\\frac{1}{2}", true},
    {"2.5", "2 1/2", true},
    {"\\frac{7}{2}", "3\\frac12", true},
    {"\\frac{5}{2}", "2\\frac{1}{3}", false},
    {"1", "2\\frac{1}{2}", false},
    // Percentages.
    {"50\\%", "50", true},
    {"50\\%", "50%", true},
    {"50\\%", "0.5", true},
    {"50", "50\\%", true},
    {"50\\%", "5", false},
    {"50\\%", "0.05", false},
    {"12.5\\%", "\\frac{1}{8}", true},
    {"20", "20 percent", true},
    // Scientific notation.
    {"1500", "1.5e3", true},
    {"1500", "1.5 \\times 10^3", true},
    {"1500", "1.5\\cdot 10^{3}", true},
    {"0.00015", "1.5e-4", true},
    {"1500", "1.5e4", false},
    {"6.02\\times10^{23}", "6.02e23", true},
    {"6.02\\times10^{23}", "6.02e22", false},
    // Roots, pi, e, powers.
    {"\\sqrt{2}", "\\sqrt2", true},
    {"\\sqrt{2}", "2^{1/2}", true},
    {"\\sqrt{2}", "\\frac{2}{\\sqrt{2}}", true},
    {"\\sqrt{2}", "1.414", false},
    {"2\\sqrt{2}", "\\sqrt{8}", true},
    {"2\\sqrt{3}", "\\sqrt{12}", true},
    {"2\\sqrt{3}", "\\sqrt{13}", false},
    {"4", "\\sqrt{16}", true},
    {"3", "\\sqrt[3]{27}", true},
    {"\\sqrt[3]{2}", "2^{1/3}", true},
    {"2\\pi", "2 \\pi", true},
    {"2\\pi", "\\pi \\cdot 2", true},
    {"2\\pi", "\\pi", false},
    {"\\frac{\\pi}{2}", "\\pi/2", true},
    {"\\frac{\\pi}{2}", "0.5\\pi", true},
    {"\\frac{\\pi}{3}", "60", false},
    {"e^2", "e \\cdot e", true},
    {"e", "2.718", false},
    {"2^{10}", "1024", true},
    {"2^10", "1024", true},
    {"1024", "2^{10}", true},
    {"2^{10}", "1023", false},
    {"2^{-2}", "\\frac{1}{4}", true},
    {"(-2)^3", "-8", true},
    {"-2^2", "-4", true},
    {"-2^2", "4", false},
    {"5!", "120", true},
    {"\\binom{5}{2}", "10", true},
    {"|-3|", "3", true},
    {"\\log_2 8", "3", true},
    {"\\ln e", "1", true},
    // Signs and \pm.
    {"\\pm 3", "3, -3", true},
    {"\\pm 3", "-3, 3", true},
    {"\\pm 3", "3", false},
    {"1 \\pm \\sqrt{2}", "1+\\sqrt{2}, 1-\\sqrt{2}", true},
    {"x = \\pm 2", "\\{2, -2\\}", true},
    {"2 \\pm \\sqrt{3}", "2 \\pm \\sqrt{2}", false},
    // Symbolic expressions.
    {"x^2+2x+1", "(x+1)^2", true},
    {"x^2+2x+1", "(x+1)^3", false},
    {"x^2-1", "(x-1)(x+1)", true},
    {"x^2-1", "(x-1)(x+2)", false},
    {"\\frac{x}{2}", "0.5x", true},
    {"2x+3y", "3y+2x", true},
    {"2x+3y", "2y+3x", false},
    {"\\frac{1}{x}+\\frac{1}{y}", "\\frac{x+y}{xy}", true},
    {"\\sin^2 x + \\cos^2 x", "1", true},
    {"a^2b", "b a^2", true},
    {"x+1", "t+1", false},
    {"\\frac{n(n+1)}{2}", "\\frac{n^2+n}{2}", true},
    {"\\frac{n(n+1)}{2}", "\\frac{n^2-n}{2}", false},
    {"\\sqrt{x^2}", "|x|", true},
    {"3x", "x3", true},
    // Sets and tuples.
    {"\\{1, 2, 3\\}", "\\{3, 2, 1\\}", true},
    {"\\{1, 2, 3\\}", "\\{1, 2\\}", false},
    {"\\{1, 2\\}", "\\{1, 2, 3\\}", false},
    {"1, 2, 3", "3, 1, 2", true},
    {"1, 2, 3", "1, 2, 4", false},
    {"\\{1, 2\\}", "1, 2", true},
    {"\\{5\\}", "5", true},
    {"2, 3", "x=2, x=3", true},
    {"2, 3", "x = 2 \\text{ or } x = 3", true},
    {"(1, 2, 3)", "(1, 2, 3)", true},
    {"(1, 2, 3)", "(3, 2, 1)", false},
    {"(1, 2)", "(1, 2)", true},
    {"(1, 2)", "(2, 1)", false},
    {"(\\frac{1}{2}, 3)", "(0.5, 3)", true},
    {"\\{(1,2), (3,4)\\}", "\\{(3,4), (1,2)\\}", true},
    {"\\{(1,2), (3,4)\\}", "\\{(2,1), (3,4)\\}", false},
    {"\\emptyset", "\\varnothing", true},
    // Intervals.
    {"[1, 2)", "[1, 2)", true},
    {"[1, 2)", "(1, 2)", false},
    {"[1, 2)", "[1, 2]", false},
    {"(0, \\infty)", "(0, \\infty)", true},
    {"(0, \\infty)", "[0, \\infty)", false},
    {"(-\\infty, 2) \\cup (3, \\infty)", "(3, \\infty) \\cup (-\\infty, 2)", true},
    {"(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2] \\cup (3, \\infty)", false},
    {"[\\frac{1}{2}, 1]", "[0.5, 1]", true},
    // Inequalities against intervals.
    {"(2, \\infty)", "x > 2", true},
    {"(2, \\infty)", "x \\ge 2", false},
    {"[2, \\infty)", "x \\geq 2", true},
    {"(-\\infty, 5]", "x \\le 5", true},
    {"(-\\infty, 5]", "5 \\ge x", true},
    {"(1, 3]", "1 < x \\le 3", true},
    {"(1, 3]", "1 \\le x \\le 3", false},
    {"x > 2", "(2, \\infty)", true},
    {"[1, 3]", "x \\in [1, 3]", true},
    // x = 5 against 5.
    {"5", "x = 5", true},
    {"x = 5", "5", true},
    {"x = y", "y = x", true},
    {"x = 1, y = 2", "y = 2, x = 1", true},
    {"x = 1, y = 2", "x = 2, y = 1", false},
    {"x = 1, y = 2", "x = 1, y = 3", false},
    {"x = 1, x = 2", "x = 2, x = 1", true},
    {"x = y", "x", false},
    {"3x+2y=6", "2y+3x=6", true},
    {"10\\%", "0.1", true},
    {"10\\%", "1", false},
    {"5", "x = 6", false},
    {"y = 2x + 1", "2x+1", true},
    {"y = 2x + 1", "y = 1 + 2x", true},
    {"y = 2x + 1", "y = 2x - 1", false},
    {"5", "5 = x", true},
    // Units, \text, degrees, dollars.
    {"5", "5 \\text{ cm}", true},
    {"5", "5 cm", true},
    {"5", "5 \\mbox{meters}", true},
    {"12", "\\$12", true},
    {"12", "\\$12.00", true},
    {"12", "12 dollars", true},
    {"90", "90^\\circ", true},
    {"90", "90^{\\circ}", true},
    {"90", "90\xc2\xb0", true},
    {"90^\\circ", "90", true},
    {"90", "91^\\circ", false},
    {"5", "\\text{5}", true},
    // A number followed by words in text mode is the number; words that could change the value
    // or add one keep the answer unequal (math_normalize.h).
    {"12", "12 \\text{ apples}", true},
    {"12", "\\boxed{12 \\text{ apples}}", true},
    {"12", "12\\text{ apples}.", true},
    {"12", "\\text{12 apples}", true},
    {"12", "\\text{12 } \\text{red apples}", true},
    {"12", "12 \\mbox{red apples}", true},
    {"12", "12 \\textbf{apples}", true},
    {"12", "12 \\mathrm{apples}", true},
    {"12", "x = 12 \\text{ apples}", true},
    {"60", "60 \\text{ miles per hour}", true},
    {"3.5", "3.5 \\text{ kg of flour}", true},
    {"\\frac{1}{2}", "\\frac{1}{2} \\text{ cup}", true},
    {"0.12", "12 \\text{ percent}", true},
    {"13", "12 \\text{ apples}", false},
    {"12", "12 \\text{ thousand}", false},
    {"12", "1.2 \\text{ thousand}", false},
    {"12", "12 \\text{ dozen eggs}", false},
    {"12", "12 \\text{ and a half}", false},
    {"12", "12 \\text{ or } 13", false},
    {"12", "12 \\text{ or more}", false},
    {"12", "12 \\text{ squared}", false},
    {"12", "12 \\text{ tenths}", false},
    {"12", "12 \\text{ pi}", false},
    {"12", "12 \\text{ more than } x", false},
    {"12", "12 \\text{ apples}, 13 \\text{ pears}", false},
    {"12", "\\text{twelve apples}", false},
    {"12", "x \\text{ apples}", false},
    {"12", "12 apples", false},
    {"\\text{(B)}", "(B)", true},
    {"\\text{Evelyn}", "Evelyn", true},
    {"\\text{Evelyn}", "Evelin", false},
    {"\\text{east}", "\\text{East}", true},
    {"12", "\\boxed{12}", true},
    {"12", "$12$", true},
    {"12", "\\(12\\)", true},
    {"12", "12.", true},
    {"x = 3", "\\left( 3 \\right)", true},
    {"3", "\\displaystyle 3", true},
    // Unicode.
    {"-5", "\xe2\x88\x92" "5", true},
    {"2\\pi", "2\xcf\x80", true},
    // Large numbers.
    {"123456789012345678901234567890123456789012345", "123456789012345678901234567890123456789012345", true},
    {"123456789012345678901234567890123456789012345", "123456789012345678901234567890123456789012346", false},
    {"100000000000000000000", "10^{20}", true},
    {"2^{100}", "1267650600228229401496703205376", true},
    {"2^{100}", "1267650600228229401496703205377", false},
};

TEST(MathEquivalent, Table) {
  int failures = 0;
  for (const Case& c : kCases) {
    std::string detail;
    absl::StatusOr<bool> r = MathEquivalent(c.gold, c.pred, &detail);
    if (!r.ok()) {
      ADD_FAILURE() << "gold '" << c.gold << "' errored: " << r.status().ToString();
      ++failures;
      continue;
    }
    if (*r != c.equal) {
      ADD_FAILURE() << "gold '" << c.gold << "' pred '" << c.pred << "': expected "
                    << (c.equal ? "equal" : "different") << " (" << detail << ")";
      ++failures;
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GE(sizeof(kCases) / sizeof(kCases[0]), 150u);
}

TEST(MathEquivalent, UnparsableGoldIsAnError) {
  for (const char* gold : {"", "\\frac{1}{", "(1, 2", "1 +", "\\unknowncommand{3}", "(((((",
                           "1/0", "2\\{1\\}", "\\sqrt{-4}"}) {
    absl::StatusOr<bool> r = MathEquivalent(gold, "1");
    EXPECT_FALSE(r.ok()) << "gold '" << gold << "'";
  }
}

TEST(MathEquivalent, UnparsablePredictionIsWrong) {
  for (const char* pred : {"", "\\frac{1}{", "1 +", ")(", "\\boxed{"}) {
    absl::StatusOr<bool> r = MathEquivalent("1", pred);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(*r) << "pred '" << pred << "'";
  }
}

TEST(MathEquivalent, AdversarialInputsTerminate) {
  std::string nested(100000, '{');
  EXPECT_FALSE(MathEquivalent(nested, "1").ok());
  EXPECT_FALSE(*MathEquivalent("1", nested));
  std::string parens = std::string(1000, '(') + "1" + std::string(1000, ')');
  EXPECT_FALSE(*MathEquivalent("1", parens));  // deeper than the depth limit
  std::string digits(10000, '7');
  EXPECT_FALSE(*MathEquivalent("7", digits));  // longer than the answer cap
  EXPECT_FALSE(*MathEquivalent("7", "2^{2^{2^{100}}}"));
  EXPECT_FALSE(*MathEquivalent("7", "10^{10^{10}}"));
  EXPECT_FALSE(*MathEquivalent("7", "9!!!!!!"));
  std::string long_sum;
  for (int i = 0; i < 500; ++i) long_sum += "1+";
  long_sum += "1";
  EXPECT_FALSE(*MathEquivalent("7", long_sum));
}

}  // namespace
}  // namespace grpo::reward
