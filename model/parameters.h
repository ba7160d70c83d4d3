// The parameters of a model: which tensors a config implies (HF names and shapes), loading them
// from a checkpoint directory, and saving them in the HF layout.
#ifndef GRPO_MODEL_PARAMETERS_H_
#define GRPO_MODEL_PARAMETERS_H_

#include <span>
#include <string>
#include <string_view>
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
  // F32 of spec.shape. Only for serving (WeightFormat other than kF32) may a projection matrix
  // (spec.is_matrix) be BF16, or F8E4M3 with `scale_inv`; such a value may be a read-only view
  // into the mmap'd checkpoint. Training needs F32 everywhere.
  Tensor value;
  // F32 [ceil(rows/128), ceil(cols/128)] block scales (`weight_scale_inv`) when value is
  // F8E4M3; empty otherwise.
  Tensor scale_inv;
};

// How the matrices a serving model reads per token are held (ServedNarrow: the projection
// matrices, ParameterSpec::is_matrix, plus the token embedding and the output head). Everything
// else (norms, routers, biases) is always F32.
// The same type says how a rollout engine serves its weights and how a weight update is sent
// (learner/weight_push.h; every format but kStored).
enum class WeightFormat {
  kF32,       // f32 (bf16 widened, FP8 dequantized): the training format
  kStored,    // as the checkpoint stores them: BF16 and FP8 block kept, anything else f32
  kBF16,      // bf16 (FP8 dequantized first, f32 rounded to nearest even)
  kFp8Block,  // FP8 E4M3 with 128x128 block scales (FP8 kept, others quantized)
};
inline constexpr WeightFormat kAllWeightFormats[] = {WeightFormat::kF32, WeightFormat::kStored,
                                                     WeightFormat::kBF16, WeightFormat::kFp8Block};
// The name used in recipes (`rollout.serve_format`) and flags: "f32", "stored", "bf16", "fp8".
const char* WeightFormatName(WeightFormat format);
// The format named `name` among `allowed`; InvalidArgument listing the names of `allowed`
// otherwise, e.g. `weight format: unknown name "int4" (expected f32, bf16 or fp8)`.
absl::StatusOr<WeightFormat> ParseWeightFormat(std::string_view name,
                                               std::span<const WeightFormat> allowed = kAllWeightFormats);

// Loads every expected tensor from `dir` (model.safetensors or a sharded index), widening
// bf16/f16 and dequantizing FP8 block weights (`<name>_scale_inv`) to f32. Errors name the
// tensor: a missing one, a wrong shape, an FP8 weight without its scale. Tensors of MTP layers
// (index >= num_hidden_layers), rotary `inv_freq` buffers and a redundant `lm_head.weight` of a
// tied model are ignored; any other unexpected tensor is an error naming it.
absl::StatusOr<std::vector<Parameter>> LoadParameters(const ModelConfig& config, const std::string& dir);
// The same, with the ServedNarrow tensors in `matrices` format (kStored keeps BF16 and FP8
// tensors as zero-copy views of the file, FP8 scales copied to F32).
absl::StatusOr<std::vector<Parameter>> LoadParameters(const ModelConfig& config, const std::string& dir,
                                              WeightFormat matrices);

// Whether a serving model holds `spec` in its WeightFormat: projection matrices (is_matrix),
// model.embed_tokens.weight and lm_head.weight. Training holds everything in f32.
bool ServedNarrow(const ParameterSpec& spec);

// Converts the ServedNarrow parameters of `params` to `format` in place (kStored: no change);
// the others are left as they are. Quantizing to FP8 needs finite values.
absl::Status ConvertMatrices(WeightFormat format, std::vector<Parameter>* params);

// A parameter's value as a new f32 tensor (FP8 dequantized with its scales, bf16 widened).
absl::StatusOr<Tensor> ParameterToF32(const Parameter& param);

// Bytes held by the parameters' storage: values plus FP8 scales.
int64_t ParameterBytes(const std::vector<Parameter>& params);

// Writes config.json and model.safetensors (sharded above `max_shard_bytes`, 0 = never) in the
// HF layout, tensors stored as `storage` (F32 or BF16; config.json's torch_dtype says which).
// Parameters held as BF16/FP8 (a serving model's) are widened to f32 first. A checksum manifest
// already in `dir` (core/checksum_manifest.h) is removed first: it would describe the old files.
// With config.fp8_checkpoint, 2-D projection weights (not embeddings, lm_head, norms or
// routers) are stored as F8_E4M3 with `<name>_scale_inv` 128x128 block scales.
absl::Status SaveModel(const ModelConfig& config, const std::vector<Parameter>& params,
                 const std::string& dir, uint64_t max_shard_bytes = 0, DType storage = DType::kF32);

}  // namespace grpo

#endif  // GRPO_MODEL_PARAMETERS_H_
