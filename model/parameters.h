// The parameters of a model: which tensors a config implies (HF names and shapes), loading them
// from a checkpoint directory, and saving them in the HF layout.
#ifndef GRPO_MODEL_PARAMETERS_H_
#define GRPO_MODEL_PARAMETERS_H_

#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/model_config.h"

namespace grpo {

struct ParameterSpec {
  std::string name;  // HF checkpoint name, e.g. "model.layers.0.self_attn.q_proj.weight"
  Shape shape;
  bool trainable = true;      // false for buffers such as e_score_correction_bias
  bool is_matrix = false;     // a 2-D projection weight (FP8-quantizable in checkpoints)
};

// Every tensor of the model in a fixed order (embeddings, layers in order, final norm, head).
std::vector<ParameterSpec> ExpectedParameters(const ModelConfig& config);

struct Parameter {
  ParameterSpec spec;
  Tensor value;  // F32, spec.shape
};

// Loads every expected tensor from `dir` (model.safetensors or a sharded index), widening
// bf16/f16 and dequantizing FP8 block weights (`<name>_scale_inv`) to f32. Errors name the
// tensor: a missing one, a wrong shape, an FP8 weight without its scale. Tensors of MTP layers
// (index >= num_hidden_layers), rotary `inv_freq` buffers and a redundant `lm_head.weight` of a
// tied model are ignored; any other unexpected tensor is an error naming it.
Result<std::vector<Parameter>> LoadParameters(const ModelConfig& config, const std::string& dir);

// Writes config.json and model.safetensors (sharded above `max_shard_bytes`, 0 = never) in the
// HF layout, tensors stored as `storage` (F32 or BF16; config.json's torch_dtype says which).
// With config.fp8_checkpoint, 2-D projection weights (not embeddings, lm_head, norms or
// routers) are stored as F8_E4M3 with `<name>_scale_inv` 128x128 block scales.
Status SaveModel(const ModelConfig& config, const std::vector<Parameter>& params,
                 const std::string& dir, uint64_t max_shard_bytes = 0, DType storage = DType::kF32);

}  // namespace grpo

#endif  // GRPO_MODEL_PARAMETERS_H_
