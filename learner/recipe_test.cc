#include "learner/recipe.h"

#include <gtest/gtest.h>

#include <cstdlib>

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

absl::StatusOr<TrainRecipe> Parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  GRPO_ASSIGN_OR_RETURN(Config c, Config::Parse(text, "recipe.yaml"));
  GRPO_RETURN_IF_ERROR(c.ApplyOverrides(overrides));
  return ParseRecipe(c);
}

TEST(Recipe, DefaultsAndPresets) {
  auto r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "t");
  EXPECT_EQ(r->seed, 3u);
  EXPECT_EQ(r->objective, Objective::kGrpo);
  EXPECT_EQ(r->data_source, DataSource::kAddition);
  EXPECT_EQ(r->serve_format, WeightFormat::kF32);
  EXPECT_DOUBLE_EQ(r->loss.kl_beta, 0.04);  // the GRPO preset
  EXPECT_EQ(r->loss.aggregation, LossAggregation::kSeqMeanTokenMean);
  EXPECT_EQ(r->advantage.scale, AdvantageScale::kStd);
  EXPECT_FALSE(r->dynamic_sampling);
  EXPECT_FALSE(r->batch_invariant);
  auto invariant = Parse(kMinimal, {"rollout.batch_invariant=true"});
  ASSERT_TRUE(invariant.ok()) << invariant.status().ToString();
  EXPECT_TRUE(invariant->batch_invariant);
  EXPECT_TRUE(r->distill_teacher.empty());
  auto distill = Parse(kMinimal, {"distill.teacher=/models/teacher", "distill.coef=0.5", "distill.rule_rewards=false"});
  ASSERT_TRUE(distill.ok()) << distill.status().ToString();
  EXPECT_EQ(distill->distill_teacher, "/models/teacher");
  EXPECT_EQ(distill->distill_coef, 0.5);
  EXPECT_FALSE(distill->distill_rule_rewards);
  EXPECT_FALSE(distill->distill_divergence.has_value());  // sampled
  auto full = Parse(kMinimal, {"distill.teacher=/models/teacher", "distill.divergence=forward_kl",
                               "algorithm.objective=gmpo"});  // no per-token advantages needed
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(full->distill_divergence, Divergence::kForwardKl);
  auto reverse = Parse(kMinimal, {"distill.teacher=/models/teacher", "distill.divergence=reverse_kl"});
  ASSERT_TRUE(reverse.ok()) << reverse.status().ToString();
  EXPECT_EQ(reverse->distill_divergence, Divergence::kReverseKl);
  // Like distill.coef, the key is read without a teacher too (distill.teacher= turns distillation
  // off in a recipe that sets it, as recipes/distill-nano.yaml's pretraining-only run does).
  auto no_teacher = Parse(kMinimal, {"distill.divergence=reverse_kl"});
  ASSERT_TRUE(no_teacher.ok()) << no_teacher.status().ToString();
  EXPECT_TRUE(no_teacher->distill_teacher.empty() && no_teacher->distill_teacher_servers.empty());
  for (const auto& [sets, words] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"distill.teacher=/t", "distill.divergence=js"}, "unknown \"js\""},
           {{"distill.teacher_server=t.local:1", "distill.divergence=reverse_kl"}, "only an embedded teacher"}}) {
    auto bad = Parse(kMinimal, sets);
    ASSERT_FALSE(bad.ok()) << words;
    EXPECT_NE(bad.status().message().find("distill.divergence"), std::string::npos) << bad.status();
    EXPECT_NE(bad.status().message().find(words), std::string::npos) << bad.status();
  }
  auto served = Parse(kMinimal, {"distill.teacher_server=teacher.local:50070"});
  ASSERT_TRUE(served.ok()) << served.status().ToString();
  EXPECT_EQ(served->distill_teacher_servers, std::vector<std::string>{"teacher.local:50070"});
  EXPECT_TRUE(served->distill_teacher.empty());
  auto failover = Parse(kMinimal, {"distill.teacher_server=[a.local:1, b.local:2]"});
  ASSERT_TRUE(failover.ok()) << failover.status().ToString();
  EXPECT_EQ(failover->distill_teacher_servers, (std::vector<std::string>{"a.local:1", "b.local:2"}));

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

TEST(Recipe, NewObjectivesEstimatorsAndCorrections) {
  auto cispo = Parse(kMinimal, {"algorithm.objective=cispo"});
  ASSERT_TRUE(cispo.ok()) << cispo.status().ToString();
  EXPECT_EQ(cispo->loss.surrogate, Surrogate::kCispo);
  EXPECT_EQ(cispo->loss.aggregation, LossAggregation::kTokenMean);
  auto sapo = Parse(kMinimal, {"algorithm.objective=sapo", "algorithm.sapo_tau_pos=2", "algorithm.sapo_tau_neg=3"});
  ASSERT_TRUE(sapo.ok()) << sapo.status().ToString();
  EXPECT_EQ(sapo->loss.surrogate, Surrogate::kSapo);
  EXPECT_EQ(sapo->loss.sapo_tau_pos, 2);
  EXPECT_EQ(sapo->loss.sapo_tau_neg, 3);
  auto gmpo = Parse(kMinimal, {"algorithm.objective=gmpo", "algorithm.aggregation=seq-mean-token-sum",
                               "algorithm.advantage_estimator=rloo", "algorithm.is_correction=icepop",
                               "algorithm.icepop_low=0.4", "algorithm.icepop_high=3"});
  ASSERT_TRUE(gmpo.ok()) << gmpo.status().ToString();
  EXPECT_EQ(gmpo->loss.surrogate, Surrogate::kGmpo);
  EXPECT_EQ(gmpo->loss.aggregation, LossAggregation::kSeqMeanTokenSum);
  EXPECT_EQ(gmpo->advantage.estimator, AdvantageEstimator::kRloo);
  EXPECT_EQ(gmpo->loss.is_correction, IsCorrection::kIcePop);
  EXPECT_EQ(gmpo->loss.icepop_low, 0.4);
  EXPECT_EQ(gmpo->loss.icepop_high, 3);
  auto rpp = Parse(kMinimal, {"algorithm.advantage_estimator=reinforce_pp_baseline",
                              "algorithm.is_correction=seq_mask_geo"});
  ASSERT_TRUE(rpp.ok()) << rpp.status().ToString();
  EXPECT_EQ(rpp->advantage.estimator, AdvantageEstimator::kReinforcePPBaseline);
  EXPECT_EQ(rpp->loss.is_correction, IsCorrection::kSeqMaskGeo);
  EXPECT_EQ(Parse(kMinimal)->advantage.estimator, AdvantageEstimator::kGroupNorm);
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
  ExpectError({"algorithm.advantage_estimator=ppo"}, "algorithm.advantage_estimator");
  ExpectError({"algorithm.objective=sapo", "algorithm.sapo_tau_pos=0"}, "sapo_tau_pos");
  ExpectError({"algorithm.objective=gmpo", "algorithm.ratio_level=sequence"}, "ratio_level");
  ExpectError({"algorithm.is_correction=icepop", "algorithm.icepop_high=0.9"}, "icepop");
  ExpectError({"algorithm.is_correction=geo"}, "algorithm.is_correction");
  ExpectError({"rollout.batch_invariant=true", "rollout.serve_format=fp8"}, "rollout.batch_invariant");
  ExpectError({"rollout.batch_invariant=maybe"}, "rollout.batch_invariant");
  ExpectError({"distill.coef=0"}, "distill.coef");
  ExpectError({"distill.teacher=/t", "algorithm.objective=gmpo"}, "distill.teacher");
  ExpectError({"distill.teachr=/t"}, "distill.teacher");  // unknown key, the known one suggested
  ExpectError({"distill.teacher_server=localhost"}, "distill.teacher_server");        // no port
  ExpectError({"distill.teacher_server=localhost:0"}, "distill.teacher_server");      // port 0
  ExpectError({"distill.teacher_server=localhost:99999"}, "distill.teacher_server");  // out of range
  ExpectError({"distill.teacher_server=h:1", "distill.teacher=/t"}, "distill.teacher_server");
  ExpectError({"distill.teacher_server=h:1", "algorithm.objective=gmpo"}, "distill.teacher_server");
  ExpectError({"distill.teacher_server=[h:1, localhost]"}, "distill.teacher_server.1");  // the entry named
  ExpectError({"distill.teacher_server=[h:1, h:1]"}, "distill.teacher_server");          // twice
  ExpectError({"distill.teacher_server=[]"}, "distill.teacher_server");
  ExpectError({"distill.teacher_server=[1, 2]"}, "distill.teacher_server");
}

TEST(Recipe, MaxStalenessIsCheckedAndOverlapIsItsOneStepCase) {
  auto sync = Parse(kMinimal);
  ASSERT_TRUE(sync.ok()) << sync.status().ToString();
  EXPECT_EQ(sync->max_staleness, 0);
  EXPECT_FALSE(sync->overlap);
  auto overlap = Parse(kMinimal, {"rollout.overlap=true", "algorithm.is_correction=token_tis"});
  ASSERT_TRUE(overlap.ok()) << overlap.status().ToString();
  EXPECT_EQ(overlap->max_staleness, 1);
  auto async = Parse(kMinimal, {"rollout.max_staleness=2", "algorithm.is_correction=token_tis"});
  ASSERT_TRUE(async.ok()) << async.status().ToString();
  EXPECT_EQ(async->max_staleness, 2);
  EXPECT_TRUE(async->overlap);
  ExpectError({"rollout.max_staleness=-1", "algorithm.is_correction=token_tis"}, "rollout.max_staleness");
  ExpectError({"rollout.max_staleness=9", "algorithm.is_correction=token_tis"}, "rollout.max_staleness");
  ExpectError({"rollout.max_staleness=2"}, "rollout.max_staleness");  // no is_correction
  ExpectError({"rollout.overlap=true"}, "rollout.overlap");
  ExpectError({"rollout.overlap=true", "rollout.max_staleness=2", "algorithm.is_correction=token_tis"},
              "rollout.max_staleness");
  auto remote = Parse(kMinimal, {"rollout.max_staleness=2", "algorithm.is_correction=token_tis",
                                 "rollout.endpoints=[\"h:1\", \"h:2\"]"});  // asynchronous with rollout servers
  ASSERT_TRUE(remote.ok()) << remote.status().ToString();
  EXPECT_EQ(remote->max_staleness, 2);
  EXPECT_EQ(remote->rollout_endpoints.size(), 2u);
}

TEST(Recipe, ToolKeysAreParsedAndCheckedByName) {
  auto r = Parse(kMinimal, {"tools.environment=calculator", "tools.max_calls=3", "tools.max_output_tokens=8",
                            "tools.call_start=<c>", "tools.call_end=</c>", "pretrain.teacher_mix.tool=0.5"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool_environment, "calculator");
  EXPECT_EQ(r->max_tool_calls, 3);
  EXPECT_EQ(r->max_tool_output_tokens, 8);
  EXPECT_EQ(r->tool_tags.call_start, "<c>");
  EXPECT_EQ(r->tool_tags.call_end, "</c>");
  EXPECT_EQ(r->tool_tags.result_start, "<tool_result>");
  EXPECT_EQ(r->pretrain.teacher_mix.tool, 0.5);
  EXPECT_EQ(r->pretrain.teacher_mix.markers.call_end, "</c>");  // the corpus uses the tool's markers
  EXPECT_EQ(r->tool_call_threads, 4);
  EXPECT_EQ(Parse(kMinimal, {"tools.environment=calculator", "tools.call_threads=0"})->tool_call_threads, 0);
  ExpectError({"tools.call_threads=-1"}, "tools.call_threads");
  ExpectError({"tools.call_threads=257"}, "tools.call_threads");
  EXPECT_EQ(Parse(kMinimal)->tool_environment, "none");
  ExpectError({"tools.environment=shell"}, "tools.environment");
  auto python = Parse(kMinimal, {"tools.environment=python"});
  ASSERT_TRUE(python.ok()) << python.status();
  EXPECT_EQ(python->tool_tags.call_start, "```python\n");  // the python tool's fenced blocks
  EXPECT_EQ(python->tool_tags.call_end, "\n```");
  ExpectError({"tools.max_calls=-1"}, "tools.max_calls");
  ExpectError({"tools.max_output_tokens=0"}, "tools.max_output_tokens");
  ExpectError({"tools.call_end=\"\""}, "tools.call_end");
  ExpectError({"tools.budget=3"}, "tools.budget");
  // Remote rollout servers run the environment (GenerateRequest.tools).
  EXPECT_TRUE(Parse(kMinimal, {"tools.environment=calculator", "rollout.endpoints=[\"h:1\"]"}).ok());
  ExpectError({"pretrain.teacher_mix.tool=0.5"}, "pretrain.teacher_mix.tool");
}

TEST(Recipe, ToolPluginKeys) {
  auto r = Parse(kMinimal, {"tools.environment=plugin", "tools.plugin=plugins/libsort.so",
                            "tools.plugin_config={descending: true}", "tools.timeout_ms=250"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool_plugin, "plugins/libsort.so");
  EXPECT_EQ(r->tool_plugin_config, R"({"descending":true})");
  EXPECT_EQ(r->tool_timeout_ms, 250);
  EXPECT_EQ(r->tool_tags.call_start, "<tool_call>");
  EXPECT_EQ(Parse(kMinimal)->tool_plugin_config, "{}");
  ExpectError({"tools.environment=plugin"}, "tools.plugin");
  ExpectError({"tools.environment=calculator", "tools.plugin=x.so"}, "tools.plugin");
  ExpectError({"tools.environment=python", "tools.plugin_config={a: 1}"}, "tools.plugin_config");
  ExpectError({"tools.environment=plugin", "tools.plugin=x.so", "tools.plugin_config=[1]"}, "tools.plugin_config");
  ExpectError({"tools.environment=python", "tools.timeout_ms=0"}, "tools.timeout_ms");
}

TEST(Recipe, NamedChoicesAreParsedOnce) {
  auto r = Parse(kMinimal, {"rollout.serve_format=fp8", "algorithm.objective=gspo", "data.source=jsonl",
                            "data.jsonl.train=/data/train.jsonl"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->serve_format, WeightFormat::kFp8Block);
  EXPECT_EQ(r->objective, Objective::kGspo);
  EXPECT_EQ(r->loss.ratio_level, RatioLevel::kSequence);  // the GSPO preset
  EXPECT_EQ(r->data_source, DataSource::kJsonl);
  auto bf16 = Parse(kMinimal, {"rollout.serve_format=bf16"});
  ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
  EXPECT_EQ(bf16->serve_format, WeightFormat::kBF16);
  // Errors list the valid names; "stored" is a WeightFormat but not one an update is sent in.
  ExpectError({"rollout.serve_format=stored"}, "(expected f32, bf16 or fp8)");
  ExpectError({"algorithm.objective=ppo"}, "(expected grpo, dr_grpo, dapo, gspo, cispo, sapo or gmpo)");
  ExpectError({"data.source=csv"}, "must be 'addition' or 'jsonl'");
}

TEST(Recipe, LearnerPrecisionIsF32OrBf16) {
  auto r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->learner_precision, DType::kF32);
  auto bf16 = Parse(kMinimal, {"learner.precision=bf16"});
  ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
  EXPECT_EQ(bf16->learner_precision, DType::kBF16);
  ExpectError({"learner.precision=fp8"}, "learner.precision");
  ExpectError({"learner.precision=fp8"}, "(expected f32 or bf16)");
  ExpectError({"learner.precison=bf16"}, "learner.precision");  // misspelt: the known key suggested
  // The bf16 copies are planned beside the f32 masters.
  auto model = RecipeModelConfig(*bf16);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto f32_plan = PlanTrainingMemory(*r, *model, false);
  auto bf16_plan = PlanTrainingMemory(*bf16, *model, false);
  ASSERT_TRUE(f32_plan.ok() && bf16_plan.ok());
  EXPECT_GT(bf16_plan->total().value(), f32_plan->total().value());
}

TEST(Recipe, GradientBucketsHaveASizeAndMayOverlap) {
  auto r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->bucket_mb, 25);
  EXPECT_TRUE(r->overlap_grad_reduce);
  auto buckets = Parse(kMinimal, {"learner.bucket_mb=0.5", "learner.overlap_grad_reduce=false"});
  ASSERT_TRUE(buckets.ok()) << buckets.status();
  EXPECT_EQ(buckets->bucket_mb, 0.5);
  EXPECT_FALSE(buckets->overlap_grad_reduce);
  for (const char* bad : {"learner.bucket_mb=0", "learner.bucket_mb=-1", "learner.bucket_mb=8192"}) {
    ExpectError({bad}, "learner.bucket_mb");
  }
}

TEST(Recipe, ModelInitNullWithAPath) {
  auto r = Parse(kMinimal, {"model.init=null", "model.path=/some/dir"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model_path, "/some/dir");
  EXPECT_TRUE(r->model_preset.empty());
}

// The memory plan of a recipe against a budget of `mb` MiB (GRPO_MEMORY_LIMIT_MB).
absl::Status CheckMemory(const std::vector<std::string>& overrides, const char* mb, bool sft = false) {
  auto r = Parse(kMinimal, overrides);
  if (!r.ok()) return r.status();
  ::setenv("GRPO_MEMORY_LIMIT_MB", mb, 1);
  absl::Status s = CheckTrainingMemory(*r, sft);
  ::unsetenv("GRPO_MEMORY_LIMIT_MB");
  return s;
}

void ExpectMemoryError(const std::vector<std::string>& overrides, const std::string& needle, bool sft = false) {
  const absl::Status s = CheckMemory(overrides, "4096", sft);
  ASSERT_FALSE(s.ok()) << "accepted " << overrides[0];
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
}

TEST(RecipeMemory, TheNanoRecipeFits) {
  EXPECT_TRUE(CheckMemory({}, "1024").ok());
  auto r = Parse(kMinimal);
  ASSERT_TRUE(r.ok());
  auto model = RecipeModelConfig(*r);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->model_type, "deepseek_v3");
  auto plan = PlanTrainingMemory(*r, *model, false);
  ASSERT_TRUE(plan.ok());
  EXPECT_NE(plan->ToString().find("policy AdamW moments"), std::string::npos);
  EXPECT_NE(plan->ToString().find("rollout KV cache (rollout.kv_memory_mb 256) 256.00 MiB"), std::string::npos);
  EXPECT_NE(plan->ToString().find("reference model (algorithm.kl_beta > 0)"), std::string::npos);
  // Remote rollout: no engine in this process.
  auto remote = Parse(kMinimal, {"rollout.endpoints=[\"h:1\"]", "algorithm.kl_beta=0"});
  ASSERT_TRUE(remote.ok()) << remote.status().ToString();
  auto remote_plan = PlanTrainingMemory(*remote, *model, false);
  ASSERT_TRUE(remote_plan.ok());
  EXPECT_EQ(remote_plan->ToString().find("KV cache"), std::string::npos);
  EXPECT_EQ(remote_plan->ToString().find("reference model"), std::string::npos);
}

// Issue 19: train --check passed, then training aborted (1 TB for hidden_size=1e9, bad_alloc
// for group_size 1e8 and prompts_per_step 1e9). The same plan runs in --check and in Train.
TEST(RecipeMemory, InstancesOfIssue19AreCaughtBeforeAllocating) {
  ExpectMemoryError({"model.init.config.hidden_size=1000000000"}, "hidden_size 1000000000");
  ExpectMemoryError({"rollout.group_size=100000000"}, "rollout.group_size 100000000");
  ExpectMemoryError({"rollout.prompts_per_step=1000000000"}, "rollout.prompts_per_step 1000000000");
  ExpectMemoryError({"rollout.kv_memory_mb=100000000"}, "largest part: rollout KV cache (rollout.kv_memory_mb 100000000)");
}

// Fresh variants: other keys that size what training allocates.
TEST(RecipeMemory, OtherSizesAreCaughtToo) {
  ExpectMemoryError({"pretrain.steps=10", "pretrain.batch_size=1000000000"}, "pretrain.batch_size 1000000000");
  ExpectMemoryError({"train.eval_size=1000000000", "train.eval_samples=1000"}, "train.eval_size 1000000000");
  ExpectMemoryError({"sft.batch_size=2000000000"}, "sft.batch_size 2000000000", /*sft=*/true);
  ExpectMemoryError({"rollout.prompts_per_step=2000000000", "rollout.group_size=2000000000"}, "(overflows 64 bits)");
  ExpectError({"rollout.kv_memory_mb=9000000000000000"}, "'rollout.kv_memory_mb': must be at most 2147483647");
  ExpectError({"rollout.group_size=3000000000"}, "'rollout.group_size': must be at most 2147483647");
  ExpectError({"train.eval_size=-1"}, "train.eval_size");
  // No room for a prompt within the model's positions (deepseek_v3-nano: 4096).
  const absl::Status s = CheckMemory({"rollout.max_new_tokens=4096"}, "4096");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("rollout.max_new_tokens"), std::string::npos) << s.ToString();
  // A model config that overflows is refused naming the key, before any plan.
  const absl::Status shape = CheckMemory({"model.init.config.intermediate_size=4611686018427387904"}, "4096");
  EXPECT_EQ(shape.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(shape.message().find("model.init: config.json: 'intermediate_size' must be at most"), std::string::npos)
      << shape.ToString();
}

}  // namespace
}  // namespace grpo
