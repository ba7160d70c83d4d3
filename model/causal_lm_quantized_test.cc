// Serving from bf16 / FP8 block weights (ServeOptions, WeightFormat): a model that keeps its
// checkpoint's narrow projections (and embedding/head) and widens them in Backend::LinearWeights
// gives the logprobs of the same weights computed in f32, within 1e-5, in Forward and over a KV
// cache; its parameter storage is about a quarter of the f32 model's; training is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/kv_cache.h"
#include "model/presets.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

std::vector<std::vector<int32_t>> Sequences(int64_t vocab) {
  std::vector<std::vector<int32_t>> seqs;
  uint32_t state = 12345;
  for (int len : {11, 6, 19}) {
    std::vector<int32_t> s(len);
    for (int32_t& t : s) {
      state = state * 1664525u + 1013904223u;
      t = static_cast<int32_t>((state >> 8) % vocab);
    }
    seqs.push_back(s);
  }
  return seqs;
}

std::unique_ptr<CausalLM> Loaded(const std::string& dir, WeightFormat format) {
  auto m = CausalLM::Load(dir, BackendForTests(), {.serve_format = format});
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

// Forward logprobs, and next-token logprobs decoded over a KV cache (prefill of 3, then one
// token per step), of `model` against `ref`, within 1e-5.
void ExpectSameLogprobs(CausalLM& model, CausalLM& ref, const std::string& what) {
  const ModelConfig& c = ref.config();
  const auto seqs = Sequences(c.vocab_size);
  auto want = ref.Forward(TokenBatch::FromSequences(seqs), {});
  auto got = model.Forward(TokenBatch::FromSequences(seqs), {});
  ASSERT_TRUE(want.ok() && got.ok()) << got.status().ToString();
  ASSERT_EQ(want->logprobs.size(), got->logprobs.size());
  double max_diff = 0;
  for (size_t i = 0; i < want->logprobs.size(); ++i) {
    EXPECT_NEAR(got->logprobs[i], want->logprobs[i], 1e-5) << what << " forward target " << i;
    max_diff = std::max(max_diff, std::fabs(double{got->logprobs[i]} - want->logprobs[i]));
  }
  DenseKvCache cache_a(c, 1, 32, model.backend()), cache_b(c, 1, 32, ref.backend());
  const std::vector<int32_t>& s = seqs[2];
  int64_t done = 0;
  while (done + 1 < static_cast<int64_t>(s.size())) {
    const int64_t n = done == 0 ? 3 : 1;
    StepInput in;
    in.tokens.assign(s.begin() + done, s.begin() + done + n);
    in.offsets = {0, n};
    in.past = {done};
    in.cache_seq = {0};
    auto a = model.ForwardStep(in, cache_a);
    auto b = ref.ForwardStep(in, cache_b);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status().ToString();
    done += n;
    // log-softmax at the next token, from each model's logits.
    auto logprob = [&](const std::vector<float>& logits) {
      double mx = logits[0], sum = 0;
      for (float v : logits) mx = std::max<double>(mx, v);
      for (float v : logits) sum += std::exp(v - mx);
      return logits[s[done]] - mx - std::log(sum);
    };
    const double la = logprob(DownloadF32(model.backend(), a->logits));
    const double lb = logprob(DownloadF32(ref.backend(), b->logits));
    EXPECT_NEAR(la, lb, 1e-5) << what << " decode position " << done;
    max_diff = std::max(max_diff, std::fabs(la - lb));
    EXPECT_NEAR(la, want->logprobs[(11 - 1) + (6 - 1) + done - 1], 2e-5) << what << " decode vs forward";
  }
  std::printf("%s: max |logprob difference| %.3g\n", what.c_str(), max_diff);
}

class ServeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ServeTest, Fp8CheckpointServedAsStoredEqualsF32Dequantized) {
  auto config = PresetConfig(GetParam() + "-nano");
  ASSERT_TRUE(config.ok());
  ModelConfig fp8 = *config;
  fp8.fp8_checkpoint = true;
  const std::string dir = testing::MakeTempDir("serve_fp8");
  ASSERT_TRUE(SaveModel(fp8, InitParameters(fp8, 7, 0.1), dir).ok());
  auto ref = Loaded(dir, WeightFormat::kF32);
  auto served = Loaded(dir, WeightFormat::kStored);
  ASSERT_TRUE(ref && served);
  EXPECT_FALSE(ref->serves_quantized());
  EXPECT_TRUE(served->serves_quantized());
  int fp8_matrices = 0;
  for (size_t i = 0; i < served->num_parameters(); ++i) {
    const ParameterSpec& spec = served->parameter_specs()[i];
    if (spec.is_matrix) {
      EXPECT_EQ(served->parameter_dtype(i), DType::kF8E4M3) << spec.name;
      // On the CPU backend the device memory is the mapped file itself (no copy).
      if (&served->backend() == &CpuBackend()) {
        EXPECT_TRUE(served->parameter_buffer(i).aliases_host()) << spec.name << " should be a view of the mapped file";
      }
      ++fp8_matrices;
    } else {
      EXPECT_EQ(served->parameter_dtype(i), DType::kF32) << spec.name;
    }
  }
  EXPECT_GT(fp8_matrices, 5);
  ExpectSameLogprobs(*served, *ref, GetParam() + " fp8 stored");

  // Quantizing at creation from f32 masters also narrows the embedding and the output head; it
  // gives the logprobs of the f32 model holding the same (dequantized) weights.
  auto created = CausalLM::Create(*config, InitParameters(*config, 7, 0.1), BackendForTests(),
                                  {.serve_format = WeightFormat::kFp8Block});
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_TRUE((*created)->serves_quantized());
  std::vector<Parameter> widened;
  for (const Parameter& p : (*created)->ReadParameters()) {
    EXPECT_EQ(p.value.dtype(), ServedNarrow(p.spec) ? DType::kF8E4M3 : DType::kF32) << p.spec.name;
    widened.push_back({p.spec, *ParameterToF32(p), {}});
  }
  auto same_weights = CausalLM::Create(*config, std::move(widened), BackendForTests());
  ASSERT_TRUE(same_weights.ok()) << same_weights.status().ToString();
  // The file's FP8 views hold under 2/3 of f32's bytes here (a nano model's f32 embeddings
  // weigh as much as its projections); with the embedding in FP8 too, under 1/3.
  EXPECT_LT(served->parameter_bytes() * 3, ref->parameter_bytes() * 2);
  EXPECT_LT((*created)->parameter_bytes() * 3, ref->parameter_bytes());
  ExpectSameLogprobs(**created, **same_weights, GetParam() + " fp8 created");
}

TEST_P(ServeTest, Bf16CheckpointServedAsStoredEqualsF32Widened) {
  auto config = PresetConfig(GetParam() + "-nano");
  ASSERT_TRUE(config.ok());
  const std::string dir = testing::MakeTempDir("serve_bf16");
  ASSERT_TRUE(SaveModel(*config, InitParameters(*config, 9, 0.1), dir, 0, DType::kBF16).ok());
  auto ref = Loaded(dir, WeightFormat::kF32);
  auto served = Loaded(dir, WeightFormat::kStored);
  ASSERT_TRUE(ref && served);
  EXPECT_EQ(served->parameter_specs()[1].is_matrix, false);
  for (const Parameter& p : served->ReadParameters()) {
    EXPECT_EQ(p.value.dtype(), ServedNarrow(p.spec) ? DType::kBF16 : DType::kF32) << p.spec.name;
  }
  ExpectSameLogprobs(*served, *ref, GetParam() + " bf16 stored");
  // And an f32 model narrowed at creation.
  auto narrowed = CausalLM::Create(ref->config(), ref->ReadParameters(), BackendForTests(),
                                   {.serve_format = WeightFormat::kBF16});
  ASSERT_TRUE(narrowed.ok());
  ExpectSameLogprobs(**narrowed, *ref, GetParam() + " bf16 created");
}

INSTANTIATE_TEST_SUITE_P(Families, ServeTest, ::testing::Values("deepseek_v3", "llama", "qwen3_moe"),
                         [](const auto& info) { return info.param; });

TEST(Serve, TrainingIsRefusedOnAQuantizedModel) {
  auto config = PresetConfig("qwen2-nano");
  ASSERT_TRUE(config.ok());
  auto model = CausalLM::Create(*config, InitParameters(*config, 1, 0.1), BackendForTests(),
                                {.serve_format = WeightFormat::kFp8Block});
  ASSERT_TRUE(model.ok());
  const TokenBatch batch = TokenBatch::FromSequences({{1, 2, 3, 4}});
  EXPECT_TRUE((*model)->Forward(batch, {}).ok());
  auto train = (*model)->Forward(batch, {.keep_activations = true});
  ASSERT_FALSE(train.ok());
  EXPECT_EQ(train.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(train.status().message().find("needs f32 weights"), std::string::npos);
  std::vector<Buffer> grads;
  const absl::Status back = (*model)->Backward(std::vector<float>(3, 1.0f), &grads);
  EXPECT_EQ(back.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(back.message().find("WeightFormat::kF32"), std::string::npos) << back.message();
  // A served model saves as an f32 checkpoint that loads and trains again.
  const std::string dir = testing::MakeTempDir("serve_save");
  ASSERT_TRUE(SaveModel((*model)->config(), (*model)->ReadParameters(), dir).ok());
  auto reloaded = CausalLM::Load(dir, BackendForTests());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  EXPECT_TRUE((*reloaded)->Forward(batch, {.keep_activations = true}).ok());
  // An FP8 matrix with a NaN code or without its scales is rejected, naming the parameter.
  std::vector<Parameter> params = (*model)->ReadParameters();
  Parameter& q = params[2];
  ASSERT_EQ(q.value.dtype(), DType::kF8E4M3);
  q.value = q.value.Clone();
  q.value.mutable_data<uint8_t>()[5] = 0x7F;
  auto nan = CausalLM::Create(*config, params, BackendForTests(), {.serve_format = WeightFormat::kStored});
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("'" + q.spec.name + "' holds an FP8 NaN code at element 5"),
            std::string::npos)
      << nan.status().message();
  q.scale_inv = Tensor();
  auto unscaled = CausalLM::Create(*config, params, BackendForTests(), {.serve_format = WeightFormat::kStored});
  ASSERT_FALSE(unscaled.ok());
  EXPECT_NE(unscaled.status().message().find("needs F32 scale_inv"), std::string::npos);
}

TEST(Serve, Fp8WeightsHoldAQuarterOfTheF32Bytes) {
  // A llama whose projections dominate its size (a 256-token vocabulary, hidden 256).
  auto config = PresetConfig("llama-nano");
  ASSERT_TRUE(config.ok());
  ModelConfig c = *config;
  c.hidden_size = 256;
  c.intermediate_size = 1024;
  c.head_dim = 64;
  auto f32 = CausalLM::Create(c, InitParameters(c, 3, 0.05), BackendForTests());
  ASSERT_TRUE(f32.ok()) << f32.status().ToString();
  auto fp8 = CausalLM::Create(c, InitParameters(c, 3, 0.05), BackendForTests(),
                              {.serve_format = WeightFormat::kFp8Block});
  auto bf16 = CausalLM::Create(c, InitParameters(c, 3, 0.05), BackendForTests(),
                               {.serve_format = WeightFormat::kBF16});
  ASSERT_TRUE(fp8.ok() && bf16.ok());
  int64_t matrix_elems = 0, matrix_blocks = 0, other_bytes = 0;
  for (const Parameter& p : (*f32)->ReadParameters()) {
    if (ServedNarrow(p.spec)) {
      matrix_elems += p.value.numel();
      matrix_blocks += ((p.value.dim(0) + 127) / 128) * ((p.value.dim(1) + 127) / 128);
    } else {
      other_bytes += static_cast<int64_t>(p.value.nbytes());
    }
  }
  // Exactly: 4 bytes per matrix (projection, embedding, head) element in f32, 1 plus one f32
  // scale per 128x128 block in FP8.
  EXPECT_EQ((*f32)->parameter_bytes(), 4 * matrix_elems + other_bytes);
  EXPECT_EQ((*fp8)->parameter_bytes(), matrix_elems + 4 * matrix_blocks + other_bytes);
  EXPECT_EQ((*bf16)->parameter_bytes(), 2 * matrix_elems + other_bytes);
  const double ratio = static_cast<double>((*fp8)->parameter_bytes()) / (*f32)->parameter_bytes();
  std::printf("fp8/f32 parameter bytes: %lld / %lld = %.3f (projections alone: %.4f)\n",
              static_cast<long long>((*fp8)->parameter_bytes()),
              static_cast<long long>((*f32)->parameter_bytes()), ratio,
              static_cast<double>(matrix_elems + 4 * matrix_blocks) / (4.0 * matrix_elems));
  EXPECT_LT(ratio, 0.31);
  EXPECT_GT(ratio, 0.25);
}

// One name per format; a name is parsed only among the allowed formats, and the error lists them.
TEST(WeightFormat, NamesRoundTripAndErrorsListTheAllowedNames) {
  for (WeightFormat f : kAllWeightFormats) {
    auto parsed = ParseWeightFormat(WeightFormatName(f));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_EQ(*ParseWeightFormat("fp8"), WeightFormat::kFp8Block);
  EXPECT_EQ(*ParseWeightFormat("bf16"), WeightFormat::kBF16);
  const WeightFormat served[] = {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kFp8Block};
  auto stored = ParseWeightFormat("stored", served);
  ASSERT_FALSE(stored.ok());
  EXPECT_EQ(stored.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(stored.status().message().find("(expected f32, bf16 or fp8)"), std::string::npos) << stored.status();
  auto bad = ParseWeightFormat("int4");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"int4\" (expected f32, stored, bf16 or fp8)"), std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace grpo
