#include "learner/recipe.h"

#include <gtest/gtest.h>

namespace grpo {
namespace {

constexpr const char* kMinimal = R"(
run: {name: t, seed: 3}
tokenizer: {builtin: bytes-r1}
model: {init: {preset: deepseek_v3-nano}}
reward:
  rules:
    - {type: format}
)";

Result<TrainRecipe> Parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  GRPO_ASSIGN_OR_RETURN(Config c, Config::Parse(text, "recipe.yaml"));
  GRPO_RETURN_IF_ERROR(c.ApplyOverrides(overrides));
  return ParseRecipe(c);
}

TEST(Recipe, DefaultsAndPresets) {
  auto r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "t");
  EXPECT_EQ(r->seed, 3u);
  EXPECT_EQ(r->objective, "grpo");
  EXPECT_DOUBLE_EQ(r->loss.kl_beta, 0.04);  // the GRPO preset
  EXPECT_EQ(r->loss.aggregation, LossAggregation::kSeqMeanTokenMean);
  EXPECT_EQ(r->advantage.scale, AdvantageScale::kStd);
  EXPECT_FALSE(r->dynamic_sampling);

  auto dapo = Parse(kMinimal, {"algorithm.objective=dapo", "rollout.max_new_tokens=64"});
  ASSERT_TRUE(dapo.ok()) << dapo.status().ToString();
  EXPECT_TRUE(dapo->dynamic_sampling);
  EXPECT_DOUBLE_EQ(dapo->loss.clip_eps_high, 0.28);
  EXPECT_EQ(dapo->loss.aggregation, LossAggregation::kTokenMean);

  auto dr = Parse(kMinimal, {"algorithm.objective=dr_grpo", "rollout.max_new_tokens=64"});
  ASSERT_TRUE(dr.ok()) << dr.status().ToString();
  EXPECT_DOUBLE_EQ(dr->loss.norm_length, 64);  // defaults to max_new_tokens
  EXPECT_EQ(dr->advantage.scale, AdvantageScale::kNone);

  auto over = Parse(kMinimal, {"algorithm.kl_beta=0", "algorithm.aggregation=token-mean",
                               "algorithm.is_correction=seq_tis", "optimizer.betas=[0.9, 0.95]"});
  ASSERT_TRUE(over.ok()) << over.status().ToString();
  EXPECT_EQ(over->loss.kl_beta, 0);
  EXPECT_EQ(over->loss.is_correction, IsCorrection::kSeqTis);
  EXPECT_DOUBLE_EQ(over->adamw.beta2, 0.95);
}

void ExpectError(const std::vector<std::string>& overrides, const std::string& needle) {
  auto r = Parse(kMinimal, overrides);
  ASSERT_FALSE(r.ok()) << "accepted " << overrides[0];
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
}

TEST(Recipe, ErrorsNameTheKey) {
  ExpectError({"optimizer.lrr=1"}, "optimizer.lr");
  ExpectError({"algorithm.objective=ppo"}, "algorithm.objective");
  ExpectError({"rollout.group_size=0"}, "rollout.group_size");
  ExpectError({"rollout.serve_format=int4"}, "rollout.serve_format");
  ExpectError({"rollout.temperature=-1"}, "rollout");
  ExpectError({"run.name=a/b"}, "run.name");
  ExpectError({"model.path=/x"}, "model");                 // both path and init
  ExpectError({"tokenizer.path=/x"}, "tokenizer");         // both builtin and path
  ExpectError({"data.source=csv"}, "data.source");
  ExpectError({"data.source=jsonl"}, "data.jsonl.train");
  ExpectError({"optimizer.mini_batches=3"}, "optimizer.mini_batches");  // must divide 8 prompts
  ExpectError({"optimizer.betas=[0.9]"}, "optimizer.betas");
  ExpectError({"algorithm.aggregation=mean"}, "algorithm");
  ExpectError({"pretrain.teacher_mix.careful=-1"}, "pretrain.teacher_mix");
  ExpectError({"data.addition.digits=0"}, "data.addition");
}

TEST(Recipe, ModelInitNullWithAPath) {
  auto r = Parse(kMinimal, {"model.init=null", "model.path=/some/dir"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model_path, "/some/dir");
  EXPECT_TRUE(r->model_preset.empty());
}

}  // namespace
}  // namespace grpo
