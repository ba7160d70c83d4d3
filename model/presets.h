// Model presets: `nano` and `tiny` random models of each family for tests and demos, and the
// exact architectures of real models (for memory planning and for recipes that start from them).
#ifndef GRPO_MODEL_PRESETS_H_
#define GRPO_MODEL_PRESETS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/model_config.h"
#include "model/parameters.h"

namespace grpo {

// Names: "<family>-nano" and "<family>-tiny" for family in llama, qwen2, qwen3, qwen3_moe,
// deepseek_v3; and real architectures: qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b, qwen3-0.6b,
// qwen3-30b-a3b, llama3.1-8b, moonlight-16b-a3b, deepseek-v3.
absl::StatusOr<ModelConfig> PresetConfig(std::string_view name);
std::vector<std::string> PresetNames();

// Random parameters in ExpectedParameters order, deterministic in `seed`: projection and
// embedding weights ~ N(0, std^2) (HF's initializer_range, default 0.02), norm weights 1,
// biases and the router correction bias 0.
std::vector<Parameter> InitParameters(const ModelConfig& config, uint64_t seed, double std = 0.02);

}  // namespace grpo

#endif  // GRPO_MODEL_PRESETS_H_
