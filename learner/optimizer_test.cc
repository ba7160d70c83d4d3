// learner/optimizer and learner/schedule: AdamW + clip_grad_norm_ against torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_ (learner/testdata/optimizer_reference.py), the LR schedule
// against its formula and torch's LambdaLR, state save/load bit-exactness and rejection of
// mismatched state files.
#include "learner/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "learner/schedule.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

using nlohmann::json;

std::vector<Parameter> MakeParams(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<Parameter> params;
  auto add = [&](std::string name, Shape shape, bool trainable) {
    Parameter p;
    p.spec.name = std::move(name);
    p.spec.shape = shape;
    p.spec.trainable = trainable;
    p.spec.is_matrix = shape.size() == 2;
    p.value = Tensor::Zeros(DType::kF32, shape);
    float* v = p.value.mutable_data<float>();
    for (int64_t i = 0; i < p.value.numel(); ++i) v[i] = normal(rng);
    params.push_back(std::move(p));
  };
  add("model.embed_tokens.weight", {11, 8}, true);
  add("model.layers.0.input_layernorm.weight", {8}, true);
  add("model.layers.0.mlp.gate.e_score_correction_bias", {4}, false);
  add("model.layers.0.self_attn.q_proj.weight", {6, 8}, true);
  add("model.layers.0.self_attn.q_proj.bias", {6}, true);
  add("lm_head.weight", {11, 8}, true);
  return params;
}

std::vector<Tensor> MakeGrads(const std::vector<Parameter>& params, std::mt19937* rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<Tensor> grads;
  for (const Parameter& p : params) {
    Tensor g = Tensor::Zeros(DType::kF32, p.spec.shape);
    float* v = g.mutable_data<float>();
    for (int64_t i = 0; i < g.numel(); ++i) v[i] = normal(*rng);
    grads.push_back(g);
  }
  return grads;
}

std::vector<float> Values(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// The optimizer works on device buffers of the test backend: uploads and downloads.
Backend& Be() { return BackendForTests(); }
std::vector<ParameterSpec> Specs(const std::vector<Parameter>& params) {
  std::vector<ParameterSpec> specs;
  for (const Parameter& p : params) specs.push_back(p.spec);
  return specs;
}
Buffer Up(const Tensor& t) {
  return Upload(Be(), std::span<const float>(t.data<float>(), static_cast<size_t>(t.numel())));
}
std::vector<Buffer> Up(const std::vector<Tensor>& ts) {
  std::vector<Buffer> out;
  for (const Tensor& t : ts) out.push_back(Up(t));
  return out;
}
std::vector<Buffer> Up(const std::vector<Parameter>& params) {
  std::vector<Buffer> out;
  for (const Parameter& p : params) out.push_back(Up(p.value));
  return out;
}
std::vector<float> Values(const Buffer& b) { return DownloadF32(Be(), b); }

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double max_abs = 0;
  for (double w : want) max_abs = std::max(max_abs, std::abs(w));
  int64_t exact = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    // 1e-6 relative, or 1e-7 of the tensor's scale for values that are results of cancellation.
    EXPECT_NEAR(got[i], want[i], 1e-6 * std::abs(want[i]) + 1e-7 * max_abs) << what << " [" << i << "]";
    exact += got[i] == static_cast<float>(want[i]);
  }
  // How many agree bit for bit depends on how torch's kernels were compiled (FMA or not); the
  // tolerance above is the contract.
  ::testing::Test::RecordProperty(what + ".bit_exact", std::to_string(exact) + "/" + std::to_string(want.size()));
  std::printf("%s: %lld/%zu bit-exact\n", what.c_str(), static_cast<long long>(exact), want.size());
}

class AdamWParityTest : public ::testing::TestWithParam<bool> {};  // decay_1d

TEST_P(AdamWParityTest, MatchesTorchAdamWWithClipGradNorm) {
  GRPO_REQUIRE_TORCH();
  const bool decay_1d = GetParam();
  std::vector<Parameter> params = MakeParams(3);
  AdamWOptions opts;
  opts.beta1 = 0.9;
  opts.beta2 = 0.95;
  opts.eps = 1e-8;
  opts.weight_decay = 0.1;
  opts.decay_1d = decay_1d;
  const double max_norm = 1.0;
  LrScheduleOptions sched{1e-2, 2, LrDecay::kCosine, 6, 0.1};

  json input = {{"options", {{"beta1", opts.beta1}, {"beta2", opts.beta2}, {"eps", opts.eps},
                             {"weight_decay", opts.weight_decay}, {"decay_1d", decay_1d},
                             {"max_norm", max_norm}}},
                {"params", json::array()}, {"steps", json::array()}, {"schedules", json::array()}};
  for (const Parameter& p : params) {
    input["params"].push_back({{"name", p.spec.name}, {"shape", p.spec.shape},
                               {"value", Values(p.value)}, {"trainable", p.spec.trainable}});
  }
  auto opt = AdamW::Create(Be(), Specs(params), opts);
  ASSERT_TRUE(opt.ok()) << opt.status().ToString();
  std::vector<Buffer> values = Up(params);
  std::mt19937 rng(11);
  std::vector<double> norms;
  std::vector<Buffer> last_grads;
  // Gradient scales alternate below and above max_norm, so some steps are clipped and some not.
  const std::vector<float> scales = {0.01f, 0.5f, 0.02f, 1.0f, 0.005f, 0.3f, 0.01f};
  for (size_t k = 0; k < scales.size(); ++k) {
    std::vector<Tensor> grads = MakeGrads(params, &rng, scales[k]);
    json step = {{"grads", json::array()}, {"lr", LearningRate(sched, static_cast<int64_t>(k))}};
    for (const Tensor& g : grads) step["grads"].push_back(Values(g));
    input["steps"].push_back(step);
    std::vector<Buffer> dgrads = Up(grads);
    auto norm = ClipGradNorm(Specs(params), &dgrads, max_norm);
    ASSERT_TRUE(norm.ok()) << norm.status().ToString();
    norms.push_back(*norm);
    ASSERT_TRUE(opt->Step(&values, dgrads, LearningRate(sched, static_cast<int64_t>(k))).ok());
    last_grads = std::move(dgrads);
  }
  EXPECT_EQ(opt->step(), static_cast<int64_t>(scales.size()));
  int clipped = 0;
  for (double n : norms) clipped += n > max_norm;
  EXPECT_GE(clipped, 2);
  EXPECT_LE(clipped, 5);

  for (const LrScheduleOptions& s : {sched, LrScheduleOptions{3e-4, 3, LrDecay::kConstant, 0, 0.0},
                                     LrScheduleOptions{1e-3, 0, LrDecay::kCosine, 10, 0.0}}) {
    input["schedules"].push_back({{"lr", s.lr}, {"warmup_steps", s.warmup_steps},
                                  {"decay", s.decay == LrDecay::kCosine ? "cosine" : "constant"},
                                  {"total_steps", s.total_steps}, {"min_lr_ratio", s.min_lr_ratio},
                                  {"steps", 14}});
  }

  auto run = testing::RunJsonReference("learner/testdata/optimizer_reference.py", input);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  const json& ref = *run;

  const auto ref_norms = ref.at("norms").get<std::vector<double>>();
  ASSERT_EQ(ref_norms.size(), norms.size());
  for (size_t k = 0; k < norms.size(); ++k) EXPECT_NEAR(norms[k], ref_norms[k], 1e-6 * ref_norms[k]);
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].spec.name;
    ExpectClose(Values(values[i]), ref.at("params")[i].get<std::vector<double>>(), name);
    if (!params[i].spec.trainable) continue;
    ExpectClose(Values(opt->exp_avg(i)), ref.at("exp_avg")[i].get<std::vector<double>>(), name + ".exp_avg");
    ExpectClose(Values(opt->exp_avg_sq(i)), ref.at("exp_avg_sq")[i].get<std::vector<double>>(),
                name + ".exp_avg_sq");
    ExpectClose(Values(last_grads[i]), ref.at("clipped_grads")[i].get<std::vector<double>>(), name + ".grad");
  }
  // The non-trainable buffer is untouched.
  EXPECT_EQ(Values(values[2]), Values(MakeParams(3)[2].value));

  const auto ref_sched = ref.at("schedules");
  size_t idx = 0;
  for (const LrScheduleOptions& s : {sched, LrScheduleOptions{3e-4, 3, LrDecay::kConstant, 0, 0.0},
                                     LrScheduleOptions{1e-3, 0, LrDecay::kCosine, 10, 0.0}}) {
    const auto lrs = ref_sched[idx++].get<std::vector<double>>();
    for (size_t k = 0; k < lrs.size(); ++k) {
      EXPECT_NEAR(LearningRate(s, static_cast<int64_t>(k)), lrs[k], 1e-15 + 1e-12 * lrs[k]) << "step " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DecayOneD, AdamWParityTest, ::testing::Bool());

TEST(AdamWTest, FirstStepByHand) {
  // One scalar-like 2-D parameter: p = 1, g = 0.5, lr 0.1, wd 0.1, betas (0.9, 0.999), eps 1e-8:
  // p <- 1 * (1 - 0.01) = 0.99; m = 0.05; v = 0.00025; m_hat = 0.5, sqrt(v_hat) = 0.5
  // p <- 0.99 - 0.1 * 0.5 / (0.5 + 1e-8)
  const std::vector<ParameterSpec> specs = {{"w", {1, 1}, true, true}};
  AdamWOptions o;
  o.weight_decay = 0.1;
  auto opt = AdamW::Create(Be(), specs, o);
  ASSERT_TRUE(opt.ok());
  std::vector<Buffer> values, g;
  values.push_back(Upload(Be(), std::vector<float>{1.0f}));
  g.push_back(Upload(Be(), std::vector<float>{0.5f}));
  ASSERT_TRUE(opt->Step(&values, g, 0.1).ok());
  EXPECT_NEAR(Values(values[0])[0], 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-7);
  EXPECT_NEAR(opt->exp_avg(0).data<float>()[0], 0.05, 1e-8);
  EXPECT_NEAR(opt->exp_avg_sq(0).data<float>()[0], 0.00025, 1e-10);
}

TEST(AdamWTest, ZeroGradsClearsEveryGradientAndSkipsEmptyOnes) {
  std::vector<Buffer> grads;
  for (int64_t n : {6, 0, 5}) {  // an empty gradient is left alone
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = -1.5f + i;
    grads.push_back(Upload(Be(), v));
  }
  ZeroGrads(&grads);
  for (const Buffer& g : grads) {
    for (float v : Values(g)) EXPECT_EQ(v, 0.0f);
  }
  EXPECT_EQ(grads[1].numel(), 0);
}

TEST(AdamWTest, ClipGradNormSemantics) {
  std::vector<Parameter> params = MakeParams(5);
  const std::vector<ParameterSpec> specs = Specs(params);
  std::vector<Tensor> host;
  for (const Parameter& p : params) {
    Tensor g = Tensor::Zeros(DType::kF32, p.spec.shape);
    for (int64_t i = 0; i < g.numel(); ++i) g.mutable_data<float>()[i] = 0.1f;
    host.push_back(g);
  }
  // The non-trainable parameter's gradient does not count.
  host[2].mutable_data<float>()[0] = 1e6f;
  std::vector<Buffer> grads = Up(host);
  int64_t trainable_numel = 0;
  for (const Parameter& p : params) trainable_numel += p.spec.trainable ? p.value.numel() : 0;
  const double expected = 0.1f * std::sqrt(static_cast<double>(trainable_numel));
  auto norm = GlobalGradNorm(specs, grads);
  ASSERT_TRUE(norm.ok());
  EXPECT_NEAR(*norm, expected, 1e-6 * expected);
  // Above the norm: unchanged.
  auto unclipped = ClipGradNorm(specs, &grads, 100.0);
  ASSERT_TRUE(unclipped.ok());
  EXPECT_EQ(Values(grads[0])[0], 0.1f);
  // Below: scaled by max_norm / (norm + 1e-6).
  auto clipped = ClipGradNorm(specs, &grads, 0.5);
  ASSERT_TRUE(clipped.ok());
  EXPECT_NEAR(*clipped, expected, 1e-6 * expected);
  EXPECT_FLOAT_EQ(Values(grads[0])[0], static_cast<float>(0.1 * (0.5 / (expected + 1e-6))));
  EXPECT_EQ(Values(grads[2])[0], 1e6f);
  auto after = GlobalGradNorm(specs, grads);
  EXPECT_NEAR(*after, 0.5, 1e-5);
  // Non-finite: an error, grads unchanged.
  std::vector<float> g1 = Values(grads[1]);
  g1[3] = std::numeric_limits<float>::infinity();
  grads[1] = Upload(Be(), g1);
  const float before = Values(grads[0])[0];
  auto bad = ClipGradNorm(specs, &grads, 0.5);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not finite"), std::string::npos);
  EXPECT_EQ(Values(grads[0])[0], before);
  EXPECT_FALSE(ClipGradNorm(specs, &grads, 0.0).ok());
  // A gradient of the wrong size names the parameter.
  grads[3] = Up(Tensor::Zeros(DType::kF32, {8, 7}));
  auto mismatch = GlobalGradNorm(specs, grads);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("q_proj.weight"), std::string::npos);
}

TEST(AdamWTest, SaveLoadRoundTripIsBitExact) {
  std::vector<Parameter> params = MakeParams(7);
  auto opt = AdamW::Create(Be(), Specs(params), AdamWOptions{});
  ASSERT_TRUE(opt.ok());
  std::vector<Buffer> values = Up(params);
  std::mt19937 rng(1);
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(opt->Step(&values, Up(MakeGrads(params, &rng, 0.1f)), 1e-3).ok());
  const std::string dir = testing::MakeTempDir("adamw_state");
  const std::string path = dir + "/optimizer.safetensors";
  ASSERT_TRUE(opt->SaveState(path).ok());

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->metadata().at("step"), "3");
  EXPECT_EQ(file->num_tensors(), 10u);  // 5 trainable parameters x 2
  EXPECT_TRUE(file->Contains("lm_head.weight.exp_avg_sq"));
  EXPECT_FALSE(file->Contains("model.layers.0.mlp.gate.e_score_correction_bias.exp_avg"));

  std::vector<Buffer> copy;
  for (const Buffer& v : values) copy.push_back(Upload(Be(), Values(v)));
  auto restored = AdamW::Create(Be(), Specs(params), AdamWOptions{});
  ASSERT_TRUE(restored.ok());
  ASSERT_TRUE(restored->LoadState(path).ok());
  EXPECT_EQ(restored->step(), 3);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].spec.trainable) continue;
    EXPECT_EQ(Values(opt->exp_avg(i)), Values(restored->exp_avg(i)));
    EXPECT_EQ(Values(opt->exp_avg_sq(i)), Values(restored->exp_avg_sq(i)));
  }
  // The next step is identical bit for bit.
  std::mt19937 rng2(9);
  const std::vector<Tensor> g = MakeGrads(params, &rng2, 0.1f);
  ASSERT_TRUE(opt->Step(&values, Up(g), 1e-3).ok());
  ASSERT_TRUE(restored->Step(&copy, Up(g), 1e-3).ok());
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<float> a = Values(values[i]), b = Values(copy[i]);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << params[i].spec.name;
  }
}

TEST(AdamWTest, LoadRejectsMismatchedState) {
  std::vector<Parameter> params = MakeParams(7);
  auto opt = AdamW::Create(Be(), Specs(params), AdamWOptions{});
  ASSERT_TRUE(opt.ok());
  const std::string dir = testing::MakeTempDir("adamw_bad");
  ASSERT_TRUE(opt->SaveState(dir + "/ok.safetensors").ok());
  auto expect_reject = [&](std::vector<Parameter> other, const std::string& needle) {
    auto o = AdamW::Create(Be(), Specs(other), AdamWOptions{});
    ASSERT_TRUE(o.ok());
    absl::Status s = o->LoadState(dir + "/ok.safetensors");
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    EXPECT_EQ(o->step(), 0);
  };
  std::vector<Parameter> reshaped = MakeParams(7);
  reshaped[3].spec.shape = {8, 6};
  reshaped[3].value = Tensor::Zeros(DType::kF32, {8, 6});
  expect_reject(reshaped, "model.layers.0.self_attn.q_proj.weight.exp_avg");
  std::vector<Parameter> renamed = MakeParams(7);
  renamed[5].spec.name = "model.norm.weight";
  expect_reject(renamed, "model.norm.weight.exp_avg");
  std::vector<Parameter> fewer = MakeParams(7);
  fewer.pop_back();
  expect_reject(fewer, "lm_head.weight.exp_avg");  // unexpected tensor

  // A safetensors file that is not an optimizer state.
  auto o = AdamW::Create(Be(), Specs(params), AdamWOptions{});
  ASSERT_TRUE(WriteSafetensors(dir + "/other.safetensors",
                               {{"x", Tensor::Zeros(DType::kF32, {2})}}).ok());
  absl::Status s = o->LoadState(dir + "/other.safetensors");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("format"), std::string::npos) << s.message();
  EXPECT_FALSE(o->LoadState(dir + "/missing.safetensors").ok());
}

TEST(AdamWTest, StepValidatesInputs) {
  std::vector<Parameter> params = MakeParams(1);
  auto opt = AdamW::Create(Be(), Specs(params), AdamWOptions{});
  ASSERT_TRUE(opt.ok());
  std::vector<Buffer> values = Up(params);
  std::mt19937 rng(2);
  const std::vector<Tensor> grads = MakeGrads(params, &rng, 0.1f);
  EXPECT_FALSE(opt->Step(&values, Up(grads), std::nan("")).ok());
  std::vector<Tensor> short_grads(grads.begin(), grads.end() - 1);
  EXPECT_FALSE(opt->Step(&values, Up(short_grads), 1e-3).ok());
  std::vector<Tensor> bad = grads;
  bad[0] = Tensor::Zeros(DType::kF32, {8, 12});
  absl::Status s = opt->Step(&values, Up(bad), 1e-3);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model.embed_tokens.weight"), std::string::npos);
  EXPECT_EQ(opt->step(), 0);
  std::vector<Buffer> fewer_values = Up(params);
  fewer_values.pop_back();
  EXPECT_FALSE(opt->Step(&fewer_values, Up(grads), 1e-3).ok());
  AdamWOptions o;
  o.beta2 = 1.0;
  EXPECT_FALSE(AdamW::Create(Be(), Specs(params), o).ok());
}

TEST(ScheduleTest, FormulaValues) {
  LrScheduleOptions s{2e-3, 4, LrDecay::kCosine, 12, 0.1};
  ASSERT_TRUE(ValidateLrSchedule(s).ok());
  EXPECT_DOUBLE_EQ(LearningRate(s, 0), 2e-3 * 0.25);
  EXPECT_DOUBLE_EQ(LearningRate(s, 3), 2e-3);
  EXPECT_DOUBLE_EQ(LearningRate(s, 4), 2e-3);
  // Halfway through the decay: m + (1 - m) * 0.5.
  EXPECT_DOUBLE_EQ(LearningRate(s, 8), 2e-3 * (0.1 + 0.9 * 0.5));
  EXPECT_NEAR(LearningRate(s, 6), 2e-3 * (0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25))), 1e-18);
  EXPECT_DOUBLE_EQ(LearningRate(s, 12), 2e-3 * 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(s, 100), 2e-3 * 0.1);
  LrScheduleOptions c{1e-5, 0, LrDecay::kConstant, 0, 0.0};
  ASSERT_TRUE(ValidateLrSchedule(c).ok());
  EXPECT_EQ(LearningRate(c, 0), 1e-5);
  EXPECT_EQ(LearningRate(c, 1000), 1e-5);
  EXPECT_FALSE(ValidateLrSchedule({1e-3, 5, LrDecay::kCosine, 3, 0.0}).ok());
  EXPECT_FALSE(ValidateLrSchedule({1e-3, 0, LrDecay::kCosine, 10, 1.5}).ok());
  EXPECT_FALSE(ValidateLrSchedule({-1.0, 0, LrDecay::kConstant, 0, 0.0}).ok());
  EXPECT_FALSE(ValidateLrSchedule({1e-3, -1, LrDecay::kConstant, 0, 0.0}).ok());
  EXPECT_EQ(*ParseLrDecay("cosine"), LrDecay::kCosine);
  EXPECT_FALSE(ParseLrDecay("linear").ok());
}

}  // namespace
}  // namespace grpo
