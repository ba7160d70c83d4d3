#include "learner/objective.h"

#include <gtest/gtest.h>

#include <string>

namespace grpo {
namespace {

TEST(ObjectiveTest, NamesRoundTrip) {
  for (Objective o : kAllObjectives) {
    auto parsed = ParseObjective(ObjectiveName(o));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, o);
  }
  EXPECT_EQ(*ParseObjective("dr_grpo"), Objective::kDrGrpo);
  EXPECT_EQ(*ParseObjective("gspo"), Objective::kGspo);
  EXPECT_EQ(*ParseObjective("cispo"), Objective::kCispo);
  EXPECT_EQ(*ParseObjective("sapo"), Objective::kSapo);
  EXPECT_EQ(*ParseObjective("gmpo"), Objective::kGmpo);
}

TEST(ObjectiveTest, UnknownNameListsTheValidOnes) {
  for (const char* bad : {"ppo", "GRPO", "dr-grpo", ""}) {
    auto r = ParseObjective(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("(expected grpo, dr_grpo, dapo, gspo, cispo, sapo or gmpo)"), std::string::npos)
        << r.status();
    EXPECT_NE(r.status().message().find(std::string("\"") + bad + "\""), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace grpo
