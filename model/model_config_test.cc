#include "model/model_config.h"

#include <cstdint>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/config.h"
#include "model/presets.h"

namespace grpo {
namespace {

using ::testing::HasSubstr;

// The config.json of a preset with `key` set to `value`.
absl::StatusOr<ModelConfig> PresetWith(const std::string& preset, const std::string& key, nlohmann::json value) {
  auto base = PresetConfig(preset);
  if (!base.ok()) return base.status();
  nlohmann::json j = base->ToJson();
  j[key] = std::move(value);
  auto c = Config::FromJson(j, "config.json");
  if (!c.ok()) return c.status();
  return ModelConfig::FromConfig(*c);
}

std::string ErrorOf(const absl::StatusOr<ModelConfig>& c) {
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

TEST(ModelConfigSizes, PresetsRoundTrip) {
  for (const std::string& name : PresetNames()) {
    auto preset = PresetConfig(name);
    ASSERT_TRUE(preset.ok()) << name;
    auto c = Config::FromJson(preset->ToJson(), name);
    ASSERT_TRUE(c.ok());
    auto m = ModelConfig::FromConfig(*c);
    ASSERT_TRUE(m.ok()) << name << ": " << m.status();
    EXPECT_FALSE(m->ParameterCount().overflowed()) << name;
    EXPECT_EQ(m->NumParameters(), preset->NumParameters()) << name;
  }
}

// Issue 19: init-model wrote a model with overflowing shapes for intermediate_size 2^62.
TEST(ModelConfigSizes, IntermediateSizeOf2To62IsRefused) {
  const std::string e = ErrorOf(PresetWith("llama-nano", "intermediate_size", int64_t{1} << 62));
  EXPECT_THAT(e, HasSubstr("'intermediate_size' must be at most 2147483647"));
  EXPECT_THAT(e, HasSubstr("got 4611686018427387904"));
}

// Issue 19: init-model aborted for vocab_size 2^63-1.
TEST(ModelConfigSizes, VocabSizeOfInt64MaxIsRefused) {
  const std::string e = ErrorOf(PresetWith("qwen3-nano", "vocab_size", std::numeric_limits<int64_t>::max()));
  EXPECT_THAT(e, HasSubstr("'vocab_size' must be at most 2147483647"));
}

// Issue 19: train aborted allocating 1 TB for hidden_size=1e9; the shapes alone are refused.
TEST(ModelConfigSizes, HiddenSizeOf1e9MakesTensorsTooLargeToCount) {
  auto base = PresetConfig("llama-nano");
  ASSERT_TRUE(base.ok());
  nlohmann::json j = base->ToJson();
  j["hidden_size"] = 1000000000;
  j["num_attention_heads"] = 8;
  j["num_key_value_heads"] = 8;
  j["head_dim"] = 125000000;
  auto c = Config::FromJson(j, "config.json");
  ASSERT_TRUE(c.ok());
  const std::string e = ErrorOf(ModelConfig::FromConfig(*c));
  EXPECT_THAT(e, HasSubstr("hidden_size 1000000000"));
  EXPECT_THAT(e, HasSubstr("more than 64-bit sizes can count"));
}

// Fresh variants: other keys that size allocations.
TEST(ModelConfigSizes, OtherSizeKeysAreBounded) {
  EXPECT_THAT(ErrorOf(PresetWith("llama-nano", "num_hidden_layers", int64_t{1} << 40)),
              HasSubstr("'num_hidden_layers' must be at most 65536"));
  EXPECT_THAT(ErrorOf(PresetWith("qwen3-nano", "head_dim", int64_t{1} << 40)),
              HasSubstr("'head_dim' must be at most 2147483647"));
  EXPECT_THAT(ErrorOf(PresetWith("qwen3_moe-nano", "num_experts", int64_t{1} << 20)),
              HasSubstr("'num_experts' must be in [0, 65536]"));
  EXPECT_THAT(ErrorOf(PresetWith("deepseek_v3-nano", "n_shared_experts", -1)),
              HasSubstr("'n_shared_experts' must not be negative"));
  EXPECT_THAT(ErrorOf(PresetWith("llama-nano", "max_position_embeddings", 0)),
              HasSubstr("'max_position_embeddings' must be positive"));
  EXPECT_THAT(ErrorOf(PresetWith("llama-nano", "max_position_embeddings", int64_t{1} << 33)),
              HasSubstr("'max_position_embeddings' must be at most 2147483647"));
}

TEST(ModelConfigSizes, ProductOfBoundedKeysThatOverflows) {
  // Every key within its bound, the expert tensors together beyond 64 bits.
  auto base = PresetConfig("qwen3_moe-nano");
  ASSERT_TRUE(base.ok());
  nlohmann::json j = base->ToJson();
  j["hidden_size"] = 2000000000;
  j["moe_intermediate_size"] = 2000000000;
  j["num_experts"] = 60000;
  auto c = Config::FromJson(j, "config.json");
  ASSERT_TRUE(c.ok());
  const std::string e = ErrorOf(ModelConfig::FromConfig(*c));
  EXPECT_THAT(e, HasSubstr("is too large"));
  EXPECT_THAT(e, HasSubstr("hidden_size 2000000000"));
}

TEST(ModelConfigSizes, ParameterCountIsChecked) {
  ModelConfig m = *PresetConfig("llama-nano");
  EXPECT_FALSE(m.ParameterCount().overflowed());
  m.hidden_size = int64_t{1} << 40;  // not through FromConfig: the count says it overflowed
  m.vocab_size = int64_t{1} << 30;
  EXPECT_TRUE(m.ParameterCount().overflowed());
  EXPECT_EQ(m.NumParameters(), std::numeric_limits<int64_t>::max());
}

}  // namespace
}  // namespace grpo
