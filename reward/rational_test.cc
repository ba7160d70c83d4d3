#include "reward/rational.h"

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

TEST(Rational, NormalizesSignAndGcd) {
  auto r = Rational::Make(6, -8);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ToString(), "-3/4");
  EXPECT_FALSE(Rational::Make(1, 0));
  EXPECT_EQ(Rational::Make(0, -5)->ToString(), "0");
}

TEST(Rational, ParsesDecimalsExactly) {
  EXPECT_EQ(Rational::FromDecimal("0.5")->ToString(), "1/2");
  EXPECT_EQ(Rational::FromDecimal("-1.25")->ToString(), "-5/4");
  EXPECT_EQ(Rational::FromDecimal("1.5e3")->ToString(), "1500");
  EXPECT_EQ(Rational::FromDecimal("25e-2")->ToString(), "1/4");
  EXPECT_EQ(Rational::FromDecimal(".5")->ToString(), "1/2");
  EXPECT_FALSE(Rational::FromDecimal("1.2.3"));
  EXPECT_FALSE(Rational::FromDecimal("abc"));
  EXPECT_FALSE(Rational::FromDecimal(std::string(60, '9')));  // beyond 128 bits
  EXPECT_FALSE(Rational::FromDecimal("1e1000"));
}

TEST(Rational, ArithmeticDetectsOverflow) {
  Rational big = *Rational::FromDecimal("100000000000000000000000000000000000");  // 1e35
  EXPECT_TRUE(big.Add(Rational(1)));
  EXPECT_FALSE(big.Mul(big));
  EXPECT_FALSE(Rational(2).Pow(200));
  EXPECT_EQ(Rational(2).Pow(100)->ToString(), "1267650600228229401496703205376");
  EXPECT_EQ(Rational(2).Pow(-2)->ToString(), "1/4");
  EXPECT_FALSE(Rational(0).Pow(-1));
  EXPECT_FALSE(Rational(2).Pow(1000000000));
  EXPECT_FALSE(Rational(1).Div(Rational(0)));
}

TEST(Rational, AddSubMulDiv) {
  Rational a = *Rational::Make(1, 3), b = *Rational::Make(1, 6);
  EXPECT_EQ(a.Add(b)->ToString(), "1/2");
  EXPECT_EQ(a.Sub(b)->ToString(), "1/6");
  EXPECT_EQ(a.Mul(b)->ToString(), "1/18");
  EXPECT_EQ(a.Div(b)->ToString(), "2");
  EXPECT_EQ(*a.Compare(b), 1);
}

TEST(Rational, ExactRoots) {
  EXPECT_EQ(Rational(16).Root(2)->ToString(), "4");
  EXPECT_EQ(Rational::Make(8, 27)->Root(3)->ToString(), "2/3");
  EXPECT_EQ(Rational(-8).Root(3)->ToString(), "-2");
  EXPECT_FALSE(Rational(2).Root(2));
  EXPECT_FALSE(Rational(-4).Root(2));
}

}  // namespace
}  // namespace grpo::reward
