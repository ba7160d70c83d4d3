// Rotary position embedding tables: inverse frequencies per family and scaling (default,
// "llama3", "yarn" as HF transformers computes them), and cos/sin tables [positions, half]
// (YaRN's attention factor is folded into cos and sin, as HF does).
#ifndef GRPO_MODEL_ROPE_H_
#define GRPO_MODEL_ROPE_H_

#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace grpo {

// rope_dim/2 inverse frequencies.
std::vector<double> RopeInverseFrequencies(const ModelConfig& config);

// The factor cos and sin are multiplied by (1 unless YaRN).
double RopeAttentionFactor(const ModelConfig& config);

struct RopeTables {
  int64_t half = 0;
  int64_t positions = 0;
  std::vector<float> cos;  // [positions, half]
  std::vector<float> sin;
};

// Tables covering positions [0, positions).
RopeTables BuildRopeTables(const ModelConfig& config, int64_t positions);

}  // namespace grpo

#endif  // GRPO_MODEL_ROPE_H_
