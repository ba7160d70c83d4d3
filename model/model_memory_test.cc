#include "model/model_memory.h"

#include <cstdlib>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/causal_lm.h"
#include "model/presets.h"

namespace grpo {
namespace {

using ::testing::HasSubstr;

// Sets GRPO_MEMORY_LIMIT_MB for the scope.
class MemoryLimit {
 public:
  explicit MemoryLimit(const char* mb) { ::setenv("GRPO_MEMORY_LIMIT_MB", mb, 1); }
  ~MemoryLimit() { ::unsetenv("GRPO_MEMORY_LIMIT_MB"); }
};

TEST(ModelMemory, WeightBytesByFormat) {
  const ModelConfig c = *PresetConfig("llama-nano");
  const int64_t n = c.NumParameters();
  const int64_t f32 = ModelWeightBytes(c, WeightFormat::kF32).value();
  EXPECT_GE(f32, 4 * n);
  EXPECT_LT(f32, 4 * n + 64 * 1024);  // bookkeeping only on top
  EXPECT_GE(ModelWeightBytes(c, WeightFormat::kBF16).value(), 2 * n);
  EXPECT_LT(ModelWeightBytes(c, WeightFormat::kBF16).value(), f32);
  EXPECT_LT(ModelWeightBytes(c, WeightFormat::kFp8Block).value(),
            ModelWeightBytes(c, WeightFormat::kBF16).value());
  // One cached position: per layer k and v of the kv heads.
  EXPECT_EQ(KvBytesPerPosition(c).value(), c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * 4);
}

TEST(ModelMemory, TrainingPlanOfARealModelNamesItsParts) {
  const ModelConfig c = *PresetConfig("qwen2.5-7b");
  MemoryPlan plan;
  AddModelWeights(c, WeightFormat::kF32, /*training=*/true, "policy", &plan);
  ASSERT_EQ(plan.parts().size(), 3u);
  EXPECT_EQ(plan.total().value(), 16 * c.NumParameters() + (ModelWeightBytes(c, WeightFormat::kF32).value() -
                                                              4 * c.NumParameters()));
  const absl::Status s = plan.Check("train", {int64_t{8} << 30, "test"});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("largest part: policy AdamW moments (two f32 per parameter)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("policy weights, f32 (hidden_size 3584, intermediate_size 18944"));
}

TEST(ModelMemory, ActivationsGrowLinearlyWithTheTokens) {
  const ModelConfig c = *PresetConfig("llama-nano");
  // Attention keeps a log-sum-exp per token and head, not length^2 probabilities: doubling the
  // tokens adds what the first half took (but for the one row of logits).
  const int64_t half = ActivationBytes(c, 16384, false).value();
  const int64_t whole = ActivationBytes(c, 32768, false).value();
  EXPECT_EQ(whole - half, half - int64_t{4} * c.vocab_size);
  const int64_t per_token_layer = c.hidden_size * 2 + c.num_attention_heads * c.head_dim * 2 +
                                  c.num_key_value_heads * c.head_dim * 2 + c.num_attention_heads +
                                  c.intermediate_size * 2;
  EXPECT_GE(half, int64_t{4} * 16384 * per_token_layer);
  // Training keeps every layer's; recomputation only the inputs and one layer.
  const int64_t keep = ActivationBytes(c, 1024, true).value();
  const int64_t recompute = ActivationBytes(c, 1024, true, true).value();
  const int64_t infer = ActivationBytes(c, 1024, false).value();
  EXPECT_GT(keep, recompute);
  EXPECT_GT(recompute, infer);
  EXPECT_TRUE(ActivationBytes(c, int64_t{1} << 62, true).overflowed());
}

std::unique_ptr<CausalLM> Nano(int64_t max_positions) {
  ModelConfig c = *PresetConfig("llama-nano");
  c.max_position_embeddings = max_positions;
  return std::move(CausalLM::Create(c, InitParameters(c, 1), CpuBackend()).value());
}

// Issue 19: `logprobs` ignored max_position_embeddings; the model refuses longer sequences.
TEST(ModelMemory, ForwardRefusesSequencesBeyondMaxPositions) {
  auto model = Nano(64);
  const TokenBatch ok = TokenBatch::FromSequences({std::vector<int32_t>(64, 3)});
  EXPECT_TRUE(model->Forward(ok, {}).ok());
  const TokenBatch bad = TokenBatch::FromSequences({{1, 2}, std::vector<int32_t>(65, 3)});
  auto out = model->Forward(bad, {});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("sequence 1 has 65 tokens, more than the model's max_position_embeddings (64)"));
}

// Issue 19: one 33k-token logprobs line aborted on out-of-memory; a forward pass whose
// activations exceed the budget is an error before it allocates them.
TEST(ModelMemory, ForwardRefusesActivationsBeyondTheBudget) {
  auto model = Nano(32768);
  const TokenBatch line = TokenBatch::FromSequences({std::vector<int32_t>(8192, 3)});  // ~23 MiB
  {
    MemoryLimit limit("16");
    auto out = model->Forward(line, {});
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(std::string(out.status().message()), HasSubstr("a forward pass needs at least"));
    EXPECT_THAT(std::string(out.status().message()), HasSubstr("the longest 8192 tokens"));
    EXPECT_THAT(std::string(out.status().message()), HasSubstr("(GRPO_MEMORY_LIMIT_MB=16)"));
    // Training keeps more: refused as well.
    ForwardOptions train;
    train.keep_activations = true;
    EXPECT_EQ(model->Forward(line, train).status().code(), absl::StatusCode::kResourceExhausted);
  }
  const TokenBatch small = TokenBatch::FromSequences({std::vector<int32_t>(16, 3)});
  MemoryLimit limit("16");
  EXPECT_TRUE(model->Forward(small, {}).ok());
}

// A fresh variant: loading a model checks its weights against the budget before reading them.
TEST(ModelMemory, LoadRefusesWeightsBeyondTheBudget) {
  const ModelConfig c = *PresetConfig("qwen3-nano");
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/model_memory_load";
  ASSERT_TRUE(SaveModel(c, InitParameters(c, 1), dir).ok());
  {
    MemoryLimit limit("0");
    auto m = CausalLM::Load(dir, CpuBackend());
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(std::string(m.status().message()), HasSubstr("loading the model " + dir + " needs at least"));
    EXPECT_THAT(std::string(m.status().message()), HasSubstr("model weights, f32 (hidden_size 64"));
  }
  EXPECT_TRUE(CausalLM::Load(dir, CpuBackend()).ok());
}

}  // namespace
}  // namespace grpo
