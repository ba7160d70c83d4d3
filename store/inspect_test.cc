#include "store/inspect.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "store/test_fixture.h"

namespace grpo::store {
namespace {

class InspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string dir = (std::filesystem::path(tmp ? tmp : "/tmp") / "inspect_test_store").string();
    std::filesystem::remove_all(dir);
    auto writer = TrajectoryStore::Open(dir);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(testing::WriteDemoRun(**writer).ok());
    store_ = std::move(*writer);
  }
  nlohmann::ordered_json Run(const InspectRequest& r) {
    auto v = Inspect(*store_, r);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    if (!v.ok()) return {};
    EXPECT_FALSE(RenderInspectText(*v).empty());
    return *v;
  }
  std::unique_ptr<TrajectoryStore> store_;
};

TEST_F(InspectTest, Runs) {
  auto v = Run({});
  EXPECT_EQ(v["view"], "runs");
  ASSERT_EQ(v["runs"].size(), 1u);
  EXPECT_EQ(v["runs"][0]["run_name"], "demo");
  EXPECT_EQ(v["runs"][0]["num_samples"], 12);
  EXPECT_NE(RenderInspectText(v).find("demo"), std::string::npos);
}

TEST_F(InspectTest, RunStepsAndRewardStats) {
  auto v = Run({.run = "demo"});
  EXPECT_EQ(v["view"], "run");
  ASSERT_EQ(v["steps"].size(), 2u);
  EXPECT_DOUBLE_EQ(v["steps"][1]["reward_mean"].get<double>(), (1.5 + 1.0 + 1.5 + 0.5 + 0.25 + 0) / 6);
  EXPECT_EQ(v["run"]["model_type"], "qwen2");
}

TEST_F(InspectTest, StepGroupsWithPassAtK) {
  auto v = Run({.step = 0, .k = 2});
  EXPECT_EQ(v["view"], "step");
  ASSERT_EQ(v["groups"].size(), 2u);
  const auto& g = v["groups"][0];
  EXPECT_EQ(g["num_correct"], 2);
  EXPECT_DOUBLE_EQ(g["pass_at_1"].get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(g["pass_at_k"].get<double>(), 1.0);
  EXPECT_EQ(g["best_sample_index"], 0);
  EXPECT_EQ(v["groups"][1]["num_scored"], 2);  // one reward error
}

TEST_F(InspectTest, SampleFullText) {
  auto v = Run({.step = 1, .prompt = 1, .sample = 0});
  EXPECT_EQ(v["view"], "samples");
  ASSERT_EQ(v["samples"].size(), 1u);
  EXPECT_EQ(v["samples"][0]["text"], "<think>Café \"prices\": 7?</think><answer>7</answer>");
  EXPECT_EQ(v["prompt"]["answer"], "9.5");
  std::string text = RenderInspectText(v);
  EXPECT_NE(text.find("Café"), std::string::npos);
  EXPECT_EQ(Run({.step = 1, .prompt = 0})["samples"].size(), 3u);
  EXPECT_EQ(Inspect(*store_, {.step = 9}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Inspect(*store_, {.sample = 1}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(InspectTest, QueryByRewardRuleAndVersion) {
  InspectRequest r;
  r.filter.min_reward = 1.5;
  auto v = Run(r);
  EXPECT_EQ(v["view"], "query");
  EXPECT_EQ(v["samples"].size(), 4u);  // 0/0/0, 0/0/1, 1/0/0, 1/0/2
  r.step = 1;
  EXPECT_EQ(Run(r)["samples"].size(), 2u);
  r = {};
  r.filter.rule = RuleOutcome{"format", 0.0, 0.0};
  r.limit = 2;
  v = Run(r);
  EXPECT_EQ(v["samples"].size(), 2u);
  EXPECT_TRUE(v["truncated"].get<bool>());
  r = {};
  r.filter.weight_version = 1;
  EXPECT_EQ(Run(r)["samples"].size(), 6u);
}

}  // namespace
}  // namespace grpo::store
