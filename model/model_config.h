// ModelConfig: the architecture of a causal language model, read from a HuggingFace
// `config.json` (the fields named exactly as HF names them) and written back unchanged in form.
//
// Families, by `model_type`:
//   llama       Llama 2/3: GQA, rotate-half RoPE (optionally "llama3" frequency scaling), SwiGLU
//   qwen2       as llama with q/k/v biases (Qwen2, Qwen2.5)
//   qwen3       as llama with per-head RMSNorm of q and k before RoPE, explicit head_dim
//   qwen3_moe   qwen3 attention + softmax top-k routed experts (no shared expert)
//   deepseek_v3 MLA attention (low-rank q/kv, decoupled RoPE on a shared key part, YaRN) +
//               DeepSeekMoE (sigmoid scores, group-limited top-k with a correction bias, shared
//               experts, first_k_dense_replace dense layers); FP8 block checkpoints
// Anything else is an error naming the model_type. Inconsistent shapes (heads not dividing,
// top-k above the expert count, ...) are errors naming the field. Sizes are bounded before any
// of them sizes an allocation: every dimension (vocab_size, hidden_size, intermediate_size,
// head counts and widths, max_position_embeddings, ...) at most kMaxModelDimension (token ids
// and positions are 32-bit), num_hidden_layers and the expert count at most kMaxModelLayers /
// kMaxModelExperts, and every tensor and the whole parameter count small enough that their
// sizes in bytes (f32 weights, gradients and AdamW moments) fit in 64 bits; an error names the
// keys and their values. Whether the model fits in memory is a separate question
// (model/model_memory.h).
#ifndef GRPO_MODEL_MODEL_CONFIG_H_
#define GRPO_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/checked_math.h"
#include "core/config.h"
#include "core/status.h"

namespace grpo {

inline constexpr int64_t kMaxModelDimension = 2147483647;  // INT32_MAX
inline constexpr int64_t kMaxModelLayers = 65536;
inline constexpr int64_t kMaxModelExperts = 65536;

enum class ModelFamily { kLlama, kQwen2, kQwen3, kQwen3Moe, kDeepseekV3 };

enum class RopeType { kDefault, kLlama3, kYarn };

struct RopeScaling {
  RopeType type = RopeType::kDefault;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 and yarn
  int64_t original_max_position_embeddings = 0;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

enum class RouterScoring { kSoftmax, kSigmoid };

struct ModelConfig {
  ModelFamily family = ModelFamily::kLlama;
  std::string model_type;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // biases on q/k/v (qwen2 always; llama/qwen3 by flag)
  bool attention_out_bias = false;  // bias on o_proj (llama's attention_bias covers it too)
  bool mlp_bias = false;
  bool qk_norm = false;  // qwen3, qwen3_moe
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  // Mixture of experts (qwen3_moe, deepseek_v3). num_experts == 0 means dense everywhere.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t n_shared_experts = 0;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  RouterScoring scoring = RouterScoring::kSoftmax;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  int64_t first_k_dense_replace = 0;  // deepseek_v3
  int64_t moe_layer_freq = 1;         // deepseek_v3
  int64_t decoder_sparse_step = 1;    // qwen3_moe
  std::vector<int64_t> mlp_only_layers;  // qwen3_moe

  // Multi-head latent attention (deepseek_v3).
  bool mla = false;
  int64_t q_lora_rank = 0;  // 0: q_proj directly (config null)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t num_nextn_predict_layers = 0;  // MTP layers: loaded and ignored

  // FP8 block checkpoint (quantization_config.quant_method == "fp8").
  bool fp8_checkpoint = false;

  // Reads and validates `<dir>/config.json`.
  static absl::StatusOr<ModelConfig> Load(const std::string& dir);
  // Validates and fills the family defaults from a parsed config.json.
  static absl::StatusOr<ModelConfig> FromConfig(const Config& config);
  // The HF config.json of this architecture.
  nlohmann::json ToJson() const;

  bool IsMoeLayer(int64_t layer) const;
  int64_t NumMoeLayers() const;
  // Width of one head's query/key: qk_nope + qk_rope for MLA, else head_dim.
  int64_t qk_head_dim() const { return mla ? qk_nope_head_dim + qk_rope_head_dim : head_dim; }
  // Width of one head's value.
  int64_t value_head_dim() const { return mla ? v_head_dim : head_dim; }
  // Dimensions that RoPE rotates in each query/key head.
  int64_t rope_dim() const { return mla ? qk_rope_head_dim : head_dim; }
  // The softmax scale of attention: 1/sqrt(qk_head_dim), times mscale^2 under DeepSeek's YaRN.
  double AttentionScale() const;
  // Total number of parameters (for memory planning), counting each expert; overflow-checked
  // (never overflowed for a config FromConfig accepted).
  CheckedInt64 ParameterCount() const;
  // ParameterCount().value() (INT64_MAX if it overflowed).
  int64_t NumParameters() const { return ParameterCount().value(); }
};

}  // namespace grpo

#endif  // GRPO_MODEL_MODEL_CONFIG_H_
