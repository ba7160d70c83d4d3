#include "core/checked_math.h"

#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

namespace grpo {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(CheckedInt64, ExactWhenItFits) {
  const CheckedInt64 v = CheckedInt64(3) * 4 + 5 - 2;
  EXPECT_FALSE(v.overflowed());
  EXPECT_EQ(v.value(), 15);
  CheckedInt64 acc = 1;
  acc *= int64_t{1} << 31;
  acc *= int64_t{1} << 31;
  acc += kMax - (int64_t{1} << 62);
  EXPECT_FALSE(acc.overflowed());
  EXPECT_EQ(acc.value(), kMax);
}

TEST(CheckedInt64, ProductOverflowIsStickyAndSaturates) {
  // intermediate_size 2^62 times hidden_size 4: wraps to 0 in plain int64 arithmetic.
  CheckedInt64 v = CheckedInt64(int64_t{1} << 62) * 4;
  EXPECT_TRUE(v.overflowed());
  EXPECT_EQ(v.value(), kMax);
  v = v * 0 + 1;  // sticky: no way back to a small number
  EXPECT_TRUE(v.overflowed());
  EXPECT_EQ(v.value(), kMax);
}

TEST(CheckedInt64, SumAndDifferenceOverflow) {
  EXPECT_TRUE((CheckedInt64(kMax) + 1).overflowed());
  EXPECT_TRUE((CheckedInt64(std::numeric_limits<int64_t>::min()) - 1).overflowed());
  EXPECT_FALSE((CheckedInt64(kMax) - 1).overflowed());
}

TEST(CheckedInt64, UnsignedAboveInt64MaxIsOverflowed) {
  EXPECT_TRUE(CheckedInt64(std::numeric_limits<uint64_t>::max()).overflowed());
  EXPECT_FALSE(CheckedInt64(sizeof(float)).overflowed());
  EXPECT_EQ((CheckedInt64(sizeof(float)) * 2).value(), 8);
}

TEST(CheckedInt64, NegativeOperandsAreArithmetic) {
  EXPECT_EQ((CheckedInt64(-3) * 5).value(), -15);
  EXPECT_TRUE((CheckedInt64(std::numeric_limits<int64_t>::min()) * -1).overflowed());
}

}  // namespace
}  // namespace grpo
