#include "model/model_memory.h"

#include "model/kv_cache.h"

namespace grpo {
namespace {

constexpr int64_t kFloat = sizeof(float);
// A tensor's bookkeeping: its ParameterSpec (name, shape) and Tensor handle, at the least.
constexpr int64_t kBytesPerTensor = 128;

// Tensors of the model, at the least (embeddings, final norm, head; per layer two norms, four
// attention projections and a dense MLP's three, or a router and three per expert).
CheckedInt64 NumTensors(const ModelConfig& c) {
  const int64_t moe_layers = c.NumMoeLayers();
  return CheckedInt64(3) + CheckedInt64(c.num_hidden_layers) * 9 +
         CheckedInt64(moe_layers) * (CheckedInt64(c.num_experts) * 3 + 1);
}

}  // namespace

std::string ModelSizeKeys(const ModelConfig& c) {
  std::string s = "hidden_size " + std::to_string(c.hidden_size) + ", intermediate_size " +
                  std::to_string(c.intermediate_size) + ", num_hidden_layers " +
                  std::to_string(c.num_hidden_layers) + ", vocab_size " + std::to_string(c.vocab_size);
  if (c.num_experts > 0) {
    s += ", experts " + std::to_string(c.num_experts) + ", moe_intermediate_size " +
         std::to_string(c.moe_intermediate_size);
  }
  return s;
}

CheckedInt64 ModelWeightBytes(const ModelConfig& c, WeightFormat format) {
  int64_t per_value = kFloat;
  switch (format) {
    case WeightFormat::kF32: per_value = kFloat; break;
    case WeightFormat::kBF16: per_value = 2; break;
    case WeightFormat::kFp8Block:
    case WeightFormat::kStored: per_value = 1; break;
  }
  return c.ParameterCount() * per_value + NumTensors(c) * kBytesPerTensor;
}

CheckedInt64 KvBytesPerPosition(const ModelConfig& c, bool batch_invariant) {
  return CheckedInt64(c.num_hidden_layers) * KvCacheRowWidth(c, batch_invariant) * kFloat;
}

CheckedInt64 ActivationBytes(const ModelConfig& c, CheckedInt64 num_tokens, bool keep_activations, bool recompute) {
  const int64_t h = c.hidden_size, nh = c.num_attention_heads;
  const int64_t nkv = c.mla ? nh : c.num_key_value_heads;
  // Per token in one layer: its input and the normed input; q, k, v and the attention output;
  // the attention's log-sum-exp per head; the MLP's gate and up projections (of the chosen
  // experts, and the shared ones).
  const CheckedInt64 attention = CheckedInt64(nh) * c.qk_head_dim() + CheckedInt64(nkv) * c.qk_head_dim() +
                                 CheckedInt64(nkv) * c.value_head_dim() + CheckedInt64(nh) * c.value_head_dim() + nh;
  const CheckedInt64 dense_layer = CheckedInt64(h) * 2 + attention + CheckedInt64(c.intermediate_size) * 2;
  const CheckedInt64 moe_layer = CheckedInt64(h) * 2 + attention +
                                 (CheckedInt64(c.num_experts_per_tok) + c.n_shared_experts) * c.moe_intermediate_size * 2;
  const int64_t moe_layers = c.NumMoeLayers(), dense_layers = c.num_hidden_layers - moe_layers;
  // One layer at a time: the smaller kind where the model has both.
  const CheckedInt64 smaller = moe_layers == 0     ? dense_layer
                               : dense_layers == 0 ? moe_layer
                               : dense_layer.value() < moe_layer.value() ? dense_layer
                                                                         : moe_layer;
  const CheckedInt64 one_layer = num_tokens * smaller;
  // The residual stream between layers, and one row of logits.
  CheckedInt64 floats = num_tokens * h * 2 + (num_tokens.value() > 0 ? c.vocab_size : 0);
  if (!keep_activations) {
    floats += one_layer;
  } else if (recompute) {
    floats += num_tokens * h * c.num_hidden_layers + one_layer;
  } else {
    floats += num_tokens * (dense_layer * dense_layers + moe_layer * moe_layers);
  }
  return floats * kFloat;
}

void AddModelWeights(const ModelConfig& c, WeightFormat format, bool training, const std::string& what,
                     MemoryPlan* plan) {
  plan->Add(what + " weights, " + WeightFormatName(format) + " (" + ModelSizeKeys(c) + ")", ModelWeightBytes(c, format));
  if (training) {
    const CheckedInt64 f32 = c.ParameterCount() * kFloat;
    plan->Add(what + " f32 gradients", f32);
    plan->Add(what + " AdamW moments (two f32 per parameter)", f32 * 2);
  }
}

}  // namespace grpo
