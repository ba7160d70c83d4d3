#include "data/addition.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace grpo::data {
namespace {

TEST(Addition, ColumnTraceCarriesAndPadsColumns) {
  EXPECT_EQ(ColumnAdditionTrace(47, 38, 2), "7+8=15,4+3+1=8");
  EXPECT_EQ(ColumnAdditionTrace(5, 95, 2), "5+5=10,0+9+1=10");
  EXPECT_EQ(ColumnAdditionTrace(0, 0, 2), "0+0=0,0+0=0");
  EXPECT_EQ(ColumnAdditionTrace(999, 1, 3), "9+1=10,9+0+1=10,9+0+1=10");
  EXPECT_EQ(ColumnAdditionTrace(3, 4, 1), "3+4=7");
}

// The answer a reader reconstructs from the trace (last column's full sum, then the other
// columns' last digits from high to low) is the sum, for every pair.
TEST(Addition, TraceDeterminesTheSumForAllTwoDigitPairs) {
  for (int64_t a = 0; a < 100; ++a) {
    for (int64_t b = 0; b < 100; ++b) {
      const std::string trace = ColumnAdditionTrace(a, b, 2);
      std::vector<std::string> sums;
      size_t pos = 0;
      while (true) {
        const size_t eq = trace.find('=', pos);
        const size_t comma = trace.find(',', eq);
        sums.push_back(trace.substr(eq + 1, comma == std::string::npos ? std::string::npos : comma - eq - 1));
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
      std::string answer = sums.back();
      for (int i = static_cast<int>(sums.size()) - 2; i >= 0; --i) answer += sums[i].back();
      EXPECT_EQ(std::stoll(answer), a + b) << trace;
    }
  }
}

TEST(Addition, SplitsAreDisjointAndSizedByTheFraction) {
  AdditionOptions options;
  options.held_out_fraction = 0.1;
  int held = 0;
  for (int64_t a = 0; a < 100; ++a)
    for (int64_t b = 0; b < 100; ++b) held += IsHeldOut(a, b, options);
  EXPECT_GT(held, 850);
  EXPECT_LT(held, 1150);
  SplitMix64 rng(7);
  for (int i = 0; i < 500; ++i) {
    const Example train = GenerateAddition(rng, options, AdditionSplit::kTrain);
    const Example test = GenerateAddition(rng, options, AdditionSplit::kHeldOut);
    EXPECT_FALSE(IsHeldOut(train.meta["a"], train.meta["b"], options));
    EXPECT_TRUE(IsHeldOut(test.meta["a"], test.meta["b"], options));
    EXPECT_EQ(std::stoll(train.answer), train.meta["a"].get<int64_t>() + train.meta["b"].get<int64_t>());
    EXPECT_EQ(train.question, std::to_string(train.meta["a"].get<int64_t>()) + "+" +
                                  std::to_string(train.meta["b"].get<int64_t>()));
  }
}

TEST(Addition, TeacherStylesFollowTheMix) {
  AdditionOptions options;
  TeacherMix mix{0.5, 0.3, 0.2};
  SplitMix64 rng(11);
  std::map<std::string, int> styles;
  int careful_correct = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const Example e = GenerateAddition(rng, options, AdditionSplit::kTrain);
    const std::string c = TeacherCompletion(rng, e, options, mix);
    if (c.rfind("<think>guess</think><answer>", 0) == 0) {
      ++styles["guess"];
    } else if (c.rfind("the answer is ", 0) == 0) {
      ++styles["plain"];
    } else {
      ++styles["careful"];
      careful_correct += c == "<think>" + e.solution + "</think><answer>" + e.answer + "</answer>";
    }
  }
  EXPECT_NEAR(styles["careful"] / double(n), 0.5, 0.02);
  EXPECT_NEAR(styles["guess"] / double(n), 0.3, 0.02);
  EXPECT_NEAR(styles["plain"] / double(n), 0.2, 0.02);
  EXPECT_EQ(careful_correct, styles["careful"]);
}

TEST(Addition, ToolStyleCallsTheCalculatorWithTheGivenMarkers) {
  AdditionOptions options;
  TeacherMix mix{0, 0.5, 0, 0.5, {"<c>", "</c>", "<r>", "</r>"}};
  SplitMix64 rng(3);
  int tool = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const Example e = GenerateAddition(rng, options, AdditionSplit::kTrain);
    const std::string c = TeacherCompletion(rng, e, options, mix);
    if (c.rfind("<think>guess</think>", 0) == 0) continue;
    ++tool;
    EXPECT_EQ(c, "<think><c>" + e.question + "</c><r>" + e.answer + "</r></think><answer>" + e.answer + "</answer>");
  }
  EXPECT_NEAR(tool / double(n), 0.5, 0.03);
}

TEST(Addition, BadOptionsAreNamed) {
  EXPECT_FALSE(Validate(AdditionOptions{0, 0.1}).ok());
  EXPECT_FALSE(Validate(AdditionOptions{2, 1.0}).ok());
  EXPECT_FALSE(Validate(TeacherMix{0, 0, 0}).ok());
  EXPECT_FALSE(Validate(TeacherMix{-1, 1, 1}).ok());
  EXPECT_FALSE(Validate(TeacherMix{1, 1, 1, -0.5}).ok());
  EXPECT_TRUE(Validate(TeacherMix{0, 0, 0, 1}).ok());
  EXPECT_TRUE(Validate(AdditionOptions{}).ok());
}

}  // namespace
}  // namespace grpo::data
