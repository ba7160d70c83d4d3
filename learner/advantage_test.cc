// learner/advantage against a PyTorch reference written as TRL computes GRPO advantages, with
// RLOO and REINFORCE++ (learner/testdata/advantage_reference.py), plus the exact-zero and error
// contracts.
#include "learner/advantage.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "testing/python_reference.h"

namespace grpo {
namespace {

using nlohmann::json;

struct Case {
  std::vector<double> rewards;
  std::vector<int64_t> offsets;
  AdvantageOptions options;
};

const char* EstimatorName(AdvantageEstimator e) {
  switch (e) {
    case AdvantageEstimator::kGroupNorm: return "group_norm";
    case AdvantageEstimator::kRloo: return "rloo";
    case AdvantageEstimator::kReinforcePP: return "reinforce_pp";
    case AdvantageEstimator::kReinforcePPBaseline: return "reinforce_pp_baseline";
  }
  return "";
}

TEST(AdvantageTest, MatchesPyTorchReference) {
  GRPO_REQUIRE_TORCH();
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> unif(-2.0, 3.0);
  std::bernoulli_distribution coin(0.5);
  // Groups of sizes 8, 1, 5, 4 (all equal), 2, 16 with continuous and 0/1 rewards.
  std::vector<double> rewards;
  std::vector<int64_t> offsets = {0};
  for (int size : {8, 1, 5, 4, 2, 16}) {
    for (int j = 0; j < size; ++j) {
      if (size == 4) rewards.push_back(1.0);
      else if (size == 16) rewards.push_back(coin(rng) ? 1.0 : 0.0);
      else rewards.push_back(unif(rng));
    }
    offsets.push_back(static_cast<int64_t>(rewards.size()));
  }
  std::vector<Case> cases;
  for (AdvantageScale scale : {AdvantageScale::kStd, AdvantageScale::kNone}) {
    for (StdEstimator est : {StdEstimator::kUnbiased, StdEstimator::kPopulation}) {
      for (double eps : {1e-6, 1e-4}) cases.push_back({rewards, offsets, {scale, eps, est}});
    }
  }
  for (AdvantageEstimator estimator :
       {AdvantageEstimator::kRloo, AdvantageEstimator::kReinforcePP, AdvantageEstimator::kReinforcePPBaseline}) {
    for (StdEstimator est : {StdEstimator::kUnbiased, StdEstimator::kPopulation}) {
      cases.push_back({rewards, offsets, {AdvantageScale::kStd, 1e-4, est, estimator}});
    }
  }
  json input = {{"cases", json::array()}};
  for (const Case& c : cases) {
    input["cases"].push_back({{"rewards", c.rewards},
                              {"offsets", c.offsets},
                              {"scale", c.options.scale == AdvantageScale::kStd ? "std" : "none"},
                              {"unbiased", c.options.std == StdEstimator::kUnbiased},
                              {"epsilon", c.options.epsilon},
                              {"estimator", EstimatorName(c.options.estimator)}});
  }
  auto run = testing::RunJsonReference("learner/testdata/advantage_reference.py", input);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  const json results = run->at("results");
  ASSERT_EQ(results.size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    SCOPED_TRACE("case " + std::to_string(k));
    auto got = ComputeGroupAdvantages(cases[k].rewards, cases[k].offsets, cases[k].options);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const auto ref = results[k].at("advantages").get<std::vector<double>>();
    const auto ref_std = results[k].at("std").get<std::vector<double>>();
    ASSERT_EQ(got->advantages.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_NEAR(got->advantages[i], ref[i], 1e-12 + 1e-12 * std::abs(ref[i])) << "sample " << i;
    }
    ASSERT_EQ(got->group_std.size(), ref_std.size());
    for (size_t g = 0; g < ref_std.size(); ++g) EXPECT_NEAR(got->group_std[g], ref_std[g], 1e-12);
    EXPECT_EQ(got->zero_std_groups, std::vector<int64_t>({1, 3}));
  }
}

TEST(AdvantageTest, GrpoAndDrGrpoFormulas) {
  // Group {0, 1, 1, 0}: mean 0.5, unbiased std sqrt(1/3), population std 0.5.
  const std::vector<double> r = {0, 1, 1, 0, 0.3, 0.3};
  auto grpo = ComputeGroupAdvantages(r, 4 /*wrong*/);
  EXPECT_FALSE(grpo.ok());
  const std::vector<int64_t> off = {0, 4, 6};
  grpo = ComputeGroupAdvantages(r, off, {AdvantageScale::kStd, 0.0, StdEstimator::kUnbiased});
  ASSERT_TRUE(grpo.ok()) << grpo.status().ToString();
  EXPECT_NEAR(grpo->advantages[0], -0.5 / std::sqrt(1.0 / 3), 1e-15);
  EXPECT_NEAR(grpo->advantages[1], 0.5 / std::sqrt(1.0 / 3), 1e-15);
  EXPECT_EQ(grpo->advantages[4], 0.0);  // all-equal group: exactly 0
  EXPECT_EQ(grpo->advantages[5], 0.0);
  EXPECT_EQ(grpo->zero_std_groups, std::vector<int64_t>({1}));
  EXPECT_EQ(grpo->group_mean[1], 0.3);
  auto pop = ComputeGroupAdvantages(r, off, {AdvantageScale::kStd, 1e-6, StdEstimator::kPopulation});
  ASSERT_TRUE(pop.ok());
  EXPECT_NEAR(pop->advantages[1], 0.5 / (0.5 + 1e-6), 1e-15);
  auto dr = ComputeGroupAdvantages(r, off, AdvantagePreset(Objective::kDrGrpo));
  ASSERT_TRUE(dr.ok());
  EXPECT_EQ(dr->advantages, std::vector<double>({-0.5, 0.5, 0.5, -0.5, 0.0, 0.0}));
  auto by_size = ComputeGroupAdvantages(std::vector<double>{1, 2, 5, 5}, 2);
  ASSERT_TRUE(by_size.ok());
  EXPECT_NEAR(by_size->advantages[0], -0.5 / (std::sqrt(0.5) + 1e-6), 1e-15);
  EXPECT_EQ(by_size->zero_std_groups, std::vector<int64_t>({1}));
}

TEST(AdvantageTest, RlooAndReinforcePlusPlusFormulas) {
  // Groups {0, 1, 1, 0} and {2, 2}.
  const std::vector<double> r = {0, 1, 1, 0, 2, 2};
  const std::vector<int64_t> off = {0, 4, 6};
  AdvantageOptions o;
  o.estimator = AdvantageEstimator::kRloo;
  auto rloo = ComputeGroupAdvantages(r, off, o);
  ASSERT_TRUE(rloo.ok()) << rloo.status().ToString();
  // 0 - (1 + 1 + 0) / 3 = -2/3; 1 - (0 + 1 + 0) / 3 = 2/3; the equal group gets exactly 0.
  EXPECT_NEAR(rloo->advantages[0], -2.0 / 3, 1e-15);
  EXPECT_NEAR(rloo->advantages[1], 2.0 / 3, 1e-15);
  EXPECT_EQ(rloo->advantages[4], 0.0);
  EXPECT_EQ(rloo->zero_std_groups, std::vector<int64_t>({1}));
  o.estimator = AdvantageEstimator::kReinforcePP;
  o.epsilon = 0;
  auto rpp = ComputeGroupAdvantages(r, off, o);
  ASSERT_TRUE(rpp.ok());
  // Batch mean 1, squared deviations 1+0+0+1+1+1, unbiased std sqrt(4/5): the equal group is not
  // zeroed (no group baseline).
  const double sd = std::sqrt(4.0 / 5);
  EXPECT_NEAR(rpp->advantages[0], -1 / sd, 1e-15);
  EXPECT_NEAR(rpp->advantages[4], 1 / sd, 1e-15);
  EXPECT_NEAR(rpp->batch_mean, 1.0, 1e-15);
  EXPECT_NEAR(rpp->batch_std, sd, 1e-15);
  o.estimator = AdvantageEstimator::kReinforcePPBaseline;
  auto base = ComputeGroupAdvantages(r, off, o);
  ASSERT_TRUE(base.ok());
  // x = {-.5, .5, .5, -.5, 0, 0}: mean 0, unbiased std sqrt(1/5).
  EXPECT_NEAR(base->advantages[1], 0.5 / std::sqrt(0.2), 1e-15);
  EXPECT_EQ(base->advantages[5], 0.0);
  auto flat = ComputeGroupAdvantages(std::vector<double>{3, 3, 3}, 3, o);
  ASSERT_TRUE(flat.ok());
  EXPECT_EQ(flat->advantages, std::vector<double>({0.0, 0.0, 0.0}));
  EXPECT_EQ(*ParseAdvantageEstimator("rloo"), AdvantageEstimator::kRloo);
  EXPECT_EQ(*ParseAdvantageEstimator("reinforce_pp_baseline"), AdvantageEstimator::kReinforcePPBaseline);
  auto bad = ParseAdvantageEstimator("reinforce++");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expected group_norm, rloo, reinforce_pp or reinforce_pp_baseline"),
            std::string::npos);
}

TEST(AdvantageTest, Errors) {
  const std::vector<double> r = {1, 2, 3};
  EXPECT_FALSE(ComputeGroupAdvantages(r, 2).ok());
  EXPECT_FALSE(ComputeGroupAdvantages(r, 0).ok());
  EXPECT_FALSE(ComputeGroupAdvantages(r, std::vector<int64_t>{0, 2}).ok());
  EXPECT_FALSE(ComputeGroupAdvantages(r, std::vector<int64_t>{0, 0, 3}).ok());
  auto nan = ComputeGroupAdvantages(std::vector<double>{1, std::nan("")}, 2);
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("rewards[1]"), std::string::npos);
  auto eps = ComputeGroupAdvantages(r, 3, {AdvantageScale::kStd, -1.0, StdEstimator::kUnbiased});
  ASSERT_FALSE(eps.ok());
  EXPECT_NE(eps.status().message().find("epsilon"), std::string::npos);
  EXPECT_FALSE(ParseObjective("ppo").ok());
  EXPECT_EQ(AdvantagePreset(Objective::kDapo).scale, AdvantageScale::kStd);
  EXPECT_EQ(AdvantagePreset(Objective::kGrpo).scale, AdvantageScale::kStd);
  EXPECT_EQ(AdvantagePreset(Objective::kGspo).scale, AdvantageScale::kStd);
}

}  // namespace
}  // namespace grpo
