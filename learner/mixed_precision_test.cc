// Mixed precision (learner.precision bf16, CausalLM::SetComputeDType) against PyTorch: one
// next-token training step (LmTrainStep: forward, backward, AdamW) on tiny models where the
// forward and backward compute with the weights rounded to bf16 and the update is applied to the
// f32 masters. The reference is model/testdata/torch_reference.py --bf16-weights (autograd in
// float64 over the rounded weights) for the logprobs, the loss and the gradients, then
// learner/testdata/optimizer_reference.py (torch.optim.AdamW on the f32 masters) for the update.
// Two families keep it short: qwen2 with tied embeddings (one bf16 table is the embedding and the
// output head) and biases, and deepseek_v3 (MLA's row-sliced kv_a_proj, MoE experts).
//
// Tolerances: our forward and backward multiply exactly the reference's bf16 values in f32 (the
// CPU backend widens them exactly), so they differ from the float64 reference only by f32
// rounding, as in the f32 parity tests: logprobs and the loss 1e-5, gradients 1e-4 relative. The
// updated masters: AdamW's first step moves an element by lr * g / (|g| + eps) (bias-corrected),
// which changes by at most lr / eps times the gradient's error; with eps = 1e-3 and lr = 1e-3 the
// gradient's f32 error (below 1e-6 here) moves a master by far less than the 1e-6 allowed, while
// the step itself moves every master with a gradient by up to lr. The test also checks that it
// can fail: the f32-mode logprobs differ from the bf16 reference by more than 10x the tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "learner/lm_training.h"
#include "learner/optimizer.h"
#include "model/causal_lm.h"
#include "model/ops/cpu/amx_gemm.h"
#include "model/ops/cpu/cpu_backend.h"
#include "model/presets.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

using nlohmann::json;

absl::StatusOr<json> ReadJson(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(std::string text, testing::ReadBinaryFile(path));
  return json::parse(text);
}

absl::Status WriteJson(const std::string& path, const json& value) {
  const std::string text = value.dump();
  return testing::WriteBinaryFile(path, text.data(), text.size());
}

// torch_reference.py --bf16-weights: result.json and grads.safetensors in the returned dir.
absl::StatusOr<std::string> RunModelReference(const std::string& model_dir, const json& input) {
  const std::string dir = testing::MakeTempDir("ref");
  GRPO_RETURN_IF_ERROR(WriteJson(dir + "/input.json", input));
  auto run = testing::RunReferenceScript("model/testdata/torch_reference.py",
                                        {model_dir, dir + "/input.json", dir, "--bf16-weights"});
  if (!run.ok()) return run.status();
  return dir;
}

// optimizer_reference.py: one AdamW step of the f32 masters with the reference's gradients.
absl::StatusOr<json> RunAdamWReference(const std::vector<Parameter>& masters, const SafetensorsFile& grads,
                                       const AdamWOptions& o, double lr) {
  json params = json::array(), step_grads = json::array();
  for (const Parameter& p : masters) {
    const Tensor v = p.value.ToF32();
    params.push_back({{"name", p.spec.name},
                      {"shape", p.spec.shape},
                      {"value", std::vector<float>(v.data<float>(), v.data<float>() + v.numel())},
                      {"trainable", p.spec.trainable}});
    std::vector<float> g;
    if (p.spec.trainable) {
      GRPO_ASSIGN_OR_RETURN(Tensor t, grads.Get(p.spec.name));
      const Tensor f = t.ToF32();
      g.assign(f.data<float>(), f.data<float>() + f.numel());
    }
    step_grads.push_back(g);
  }
  const json input = {{"params", params},
                      {"steps", json::array({{{"grads", step_grads}, {"lr", lr}}})},
                      {"options", {{"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps},
                                   {"weight_decay", o.weight_decay}, {"decay_1d", o.decay_1d},
                                   {"max_norm", 1e30}}},
                      {"schedules", json::array()}};
  return testing::RunJsonReference("learner/testdata/optimizer_reference.py", input);
}

std::vector<LmSequence> TestBatch(int64_t vocab) {
  std::mt19937 rng(41);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
  std::vector<LmSequence> batch;
  for (int len : {9, 5, 12}) {
    LmSequence s;
    s.tokens.resize(len);
    for (int32_t& t : s.tokens) t = tok(rng);
    batch.push_back(s);
  }
  return batch;
}

TokenBatch ToTokenBatch(const std::vector<LmSequence>& batch) {
  std::vector<std::vector<int32_t>> seqs;
  for (const LmSequence& s : batch) seqs.push_back(s.tokens);
  return TokenBatch::FromSequences(seqs);
}

std::vector<float> Logprobs(CausalLM& model, const TokenBatch& batch) {
  auto out = model.Forward(batch, {});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? out->logprobs : std::vector<float>();
}

class MixedPrecisionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(MixedPrecisionTest, Bf16StepMatchesPyTorchOnRoundedWeightsWithF32Masters) {
  GRPO_REQUIRE_TORCH();
  Backend& backend = BackendForTests();
  const std::string model_dir = testing::TinyModelsDir() + "/" + GetParam();
  auto loaded = CausalLM::Load(model_dir, backend);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  CausalLM& model = **loaded;
  const std::vector<LmSequence> batch = TestBatch(model.config().vocab_size);
  const TokenBatch tokens = ToTokenBatch(batch);
  const std::vector<float> f32_logprobs = Logprobs(model, tokens);
  ASSERT_TRUE(model.SetComputeDType(DType::kBF16).ok());
  EXPECT_GT(model.compute_copy_bytes(), 0);
  const std::vector<Parameter> masters = model.ReadParameters();

  // The reference's weights: LmTrainStep's per-target weights, sequence by sequence.
  int64_t n = 0;
  const std::vector<float> flat = LmLossWeights(batch, &n);
  json seqs = json::array(), weights = json::array();
  for (size_t s = 0, i = 0; s < batch.size(); ++s) {
    seqs.push_back(batch[s].tokens);
    const size_t count = batch[s].tokens.size() - 1;
    weights.push_back(std::vector<float>(flat.begin() + i, flat.begin() + i + count));
    i += count;
  }
  auto ref_dir = RunModelReference(model_dir, {{"sequences", seqs}, {"weights", weights}});
  ASSERT_TRUE(ref_dir.ok()) << ref_dir.status().ToString();
  auto ref = ReadJson(*ref_dir + "/result.json");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  auto ref_grads = SafetensorsFile::Open(*ref_dir + "/grads.safetensors");
  ASSERT_TRUE(ref_grads.ok()) << ref_grads.status().ToString();
  std::vector<float> ref_logprobs;
  for (const auto& s : ref->at("logprobs")) {
    for (const auto& v : s) ref_logprobs.push_back(v.get<float>());
  }

  // Logprobs with the bf16 copies; the f32 ones are far from them (the test can fail).
  const std::vector<float> bf16_logprobs = Logprobs(model, tokens);
  ASSERT_EQ(bf16_logprobs.size(), ref_logprobs.size());
  double f32_gap = 0;
  for (size_t i = 0; i < ref_logprobs.size(); ++i) {
    EXPECT_NEAR(bf16_logprobs[i], ref_logprobs[i], 1e-5) << "token " << i;
    f32_gap = std::max(f32_gap, std::fabs(static_cast<double>(f32_logprobs[i]) - ref_logprobs[i]));
  }
  EXPECT_GT(f32_gap, 1e-4) << "f32 compute is as close to the bf16 reference as bf16 compute";

  // One step: the loss before it, the gradients it applied, the masters after it.
  AdamWOptions ao;
  ao.eps = 1e-3;
  ao.weight_decay = 0.1;
  const double lr = 1e-3;
  auto opt = AdamW::Create(backend, model.parameter_specs(), ao);
  ASSERT_TRUE(opt.ok()) << opt.status().ToString();
  LmStepOptions so;
  so.lr = lr;
  so.max_grad_norm = 0;  // no clipping: the gradients stay comparable
  std::vector<Buffer> grads;
  auto step = LmTrainStep(model, *opt, batch, so, &grads);
  ASSERT_TRUE(step.ok()) << step.status().ToString();
  EXPECT_NEAR(step->loss, ref->at("loss").get<double>(), 1e-5);
  const std::vector<Tensor> ours = model.ReadGradients(grads);
  const auto& specs = model.parameter_specs();
  int compared = 0, trainable = 0;
  for (size_t p = 0; p < specs.size(); ++p) {
    if (!specs[p].trainable) continue;
    ++trainable;
    auto want = ref_grads->Get(specs[p].name);
    ASSERT_TRUE(want.ok()) << specs[p].name;
    const Tensor r = want->ToF32();
    double diff = 0, norm = 0;
    for (int64_t e = 0; e < r.numel(); ++e) {
      const double a = ours[p].data<float>()[e], b = r.data<float>()[e];
      diff += (a - b) * (a - b);
      norm += b * b;
    }
    if (norm == 0) {  // an expert no token chose
      EXPECT_EQ(diff, 0.0) << "gradient of " << specs[p].name;
      continue;
    }
    EXPECT_LE(std::sqrt(diff / norm), 1e-4) << "gradient of " << specs[p].name;
    ++compared;
  }

  EXPECT_GT(compared, trainable / 2) << "most gradients must be nonzero for the test to mean something";

  auto ref_step = RunAdamWReference(masters, *ref_grads, ao, lr);
  ASSERT_TRUE(ref_step.ok()) << ref_step.status().ToString();
  const std::vector<Parameter> updated = model.ReadParameters();
  double moved = 0;
  for (size_t p = 0; p < updated.size(); ++p) {
    ASSERT_EQ(updated[p].value.dtype(), DType::kF32) << specs[p].name << ": masters stay f32";
    const auto want = ref_step->at("params")[p].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(want.size()), updated[p].value.numel());
    const float* got = updated[p].value.data<float>();
    const float* before = masters[p].value.data<float>();
    for (size_t e = 0; e < want.size(); ++e) {
      ASSERT_NEAR(got[e], want[e], 1e-6) << specs[p].name << " element " << e;
      moved = std::max(moved, std::fabs(static_cast<double>(got[e]) - before[e]));
    }
  }
  EXPECT_GT(moved, 0.5 * lr) << "the step moved no master";

  // The next forward computes with copies remade from the updated masters: bit for bit those of
  // a fresh model over the same masters.
  auto fresh = CausalLM::Create(model.config(), model.ReadParameters(), backend);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  ASSERT_TRUE((*fresh)->SetComputeDType(DType::kBF16).ok());
  EXPECT_EQ(Logprobs(model, tokens), Logprobs(**fresh, tokens));
  // Back to f32: the copies are dropped and the results are the f32 model's.
  ASSERT_TRUE(model.SetComputeDType(DType::kF32).ok());
  EXPECT_EQ(model.compute_copy_bytes(), 0);
  ASSERT_TRUE((*fresh)->SetComputeDType(DType::kF32).ok());
  EXPECT_EQ(Logprobs(model, tokens), Logprobs(**fresh, tokens));
}

INSTANTIATE_TEST_SUITE_P(Families, MixedPrecisionTest,
                         ::testing::Values("qwen2_tied", "deepseek_v3"),
                         [](const auto& info) { return info.param; });

TEST(MixedPrecision, OnlyF32AndBf16AreComputeDTypes) {
  GRPO_REQUIRE_TORCH();  // for the tiny models
  auto loaded = CausalLM::Load(testing::TinyModelsDir() + "/llama", BackendForTests());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const absl::Status s = (*loaded)->SetComputeDType(DType::kF8E4M3);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("F32 or BF16"), std::string::npos) << s.ToString();
}

TEST(MixedPrecision, ForwardWithoutActivationsGivesTheTrainingForwardsBits) {
  // A forward that keeps no activations (old-policy and reference logprobs, rollouts) computes
  // each MLP's down projection over its SwiGLU activation without storing it
  // (Backend::SwiGluLinearWeights: on AMX, made a row at a time as x is split); the training
  // forward stores it for the backward. Both must give the same bits, or the importance ratio of
  // an on-policy token would not be exactly 1. 105 tokens: more rows than the decode kernels
  // take, so the bf16 copies multiply on AMX tiles where this CPU has them. An intermediate size
  // of 100 leaves SwiGlu's 8-lane loop a tail at the end of every row.
  auto config = PresetConfig("qwen2-nano");
  ASSERT_TRUE(config.ok());
  config->intermediate_size = 100;
  auto model = CausalLM::Create(*config, InitParameters(*config, 3, 0.1), BackendForTests());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_TRUE((*model)->SetComputeDType(DType::kBF16).ok());
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(config->vocab_size - 1));
  std::vector<std::vector<int32_t>> seqs(2);
  seqs[0].resize(60);
  seqs[1].resize(45);
  for (auto& seq : seqs)
    for (int32_t& t : seq) t = tok(rng);
  const TokenBatch batch = TokenBatch::FromSequences(seqs);
  const int64_t fused_calls = cpu::AmxSwiGluCalls();
  auto inference = (*model)->Forward(batch, {});
  ASSERT_TRUE(inference.ok()) << inference.status().ToString();
  if (&(*model)->backend() == &CpuBackend() && cpu::AmxInUse()) {
    EXPECT_EQ(cpu::AmxSwiGluCalls(), fused_calls + config->num_hidden_layers)
        << "not every down projection took the fused path";
  }
  auto training = (*model)->Forward(batch, {.keep_activations = true});
  ASSERT_TRUE(training.ok()) << training.status().ToString();
  EXPECT_EQ(inference->logprobs, training->logprobs);
  auto recomputing = (*model)->Forward(batch, {.keep_activations = true, .recompute = true});
  ASSERT_TRUE(recomputing.ok()) << recomputing.status().ToString();
  EXPECT_EQ(inference->logprobs, recomputing->logprobs);
}

}  // namespace
}  // namespace grpo
