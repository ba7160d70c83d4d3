#include "model/presets.h"

#include <functional>
#include <map>
#include <random>

namespace grpo {
namespace {

ModelConfig Base(ModelFamily family, std::string type) {
  ModelConfig c;
  c.family = family;
  c.model_type = std::move(type);
  c.rms_norm_eps = 1e-6;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

ModelConfig Dense(ModelFamily family, std::string type, int64_t vocab, int64_t hidden, int64_t inter,
                  int64_t layers, int64_t heads, int64_t kv_heads, int64_t head_dim, bool tied,
                  double theta) {
  ModelConfig c = Base(family, std::move(type));
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = head_dim;
  c.tie_word_embeddings = tied;
  c.rope_theta = theta;
  c.max_position_embeddings = 32768;
  c.attention_bias = family == ModelFamily::kQwen2;
  c.qk_norm = family == ModelFamily::kQwen3 || family == ModelFamily::kQwen3Moe;
  return c;
}

ModelConfig Qwen3Moe(int64_t vocab, int64_t hidden, int64_t inter, int64_t moe_inter, int64_t layers,
                     int64_t heads, int64_t kv, int64_t head_dim, int64_t experts, int64_t topk) {
  ModelConfig c = Dense(ModelFamily::kQwen3Moe, "qwen3_moe", vocab, hidden, inter, layers, heads, kv,
                        head_dim, false, 1e6);
  c.num_experts = experts;
  c.num_experts_per_tok = topk;
  c.moe_intermediate_size = moe_inter;
  c.norm_topk_prob = true;
  c.scoring = RouterScoring::kSoftmax;
  return c;
}

ModelConfig DeepseekV3(int64_t vocab, int64_t hidden, int64_t inter, int64_t moe_inter, int64_t layers,
                       int64_t heads, int64_t q_lora, int64_t kv_lora, int64_t nope, int64_t rope,
                       int64_t v, int64_t experts, int64_t shared, int64_t topk, int64_t n_group,
                       int64_t topk_group, int64_t dense_layers, double rsf) {
  ModelConfig c = Base(ModelFamily::kDeepseekV3, "deepseek_v3");
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.moe_intermediate_size = moe_inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = heads;
  c.mla = true;
  c.q_lora_rank = q_lora;
  c.kv_lora_rank = kv_lora;
  c.qk_nope_head_dim = nope;
  c.qk_rope_head_dim = rope;
  c.v_head_dim = v;
  c.head_dim = rope;
  c.num_experts = experts;
  c.n_shared_experts = shared;
  c.num_experts_per_tok = topk;
  c.n_group = n_group;
  c.topk_group = topk_group;
  c.first_k_dense_replace = dense_layers;
  c.routed_scaling_factor = rsf;
  c.norm_topk_prob = true;
  c.scoring = RouterScoring::kSigmoid;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 4096;
  return c;
}

const std::map<std::string, std::function<ModelConfig()>>& Registry() {
  static const auto* registry = new std::map<std::string, std::function<ModelConfig()>>{
      {"llama-nano", [] { return Dense(ModelFamily::kLlama, "llama", 256, 64, 128, 2, 4, 2, 16, false, 10000); }},
      {"llama-tiny", [] { return Dense(ModelFamily::kLlama, "llama", 4096, 256, 768, 6, 8, 4, 32, false, 10000); }},
      {"qwen2-nano", [] { return Dense(ModelFamily::kQwen2, "qwen2", 256, 64, 128, 2, 4, 2, 16, true, 10000); }},
      {"qwen2-tiny", [] { return Dense(ModelFamily::kQwen2, "qwen2", 4096, 256, 768, 6, 8, 4, 32, true, 10000); }},
      {"qwen3-nano", [] { return Dense(ModelFamily::kQwen3, "qwen3", 256, 64, 128, 2, 4, 2, 16, true, 1e6); }},
      {"qwen3-tiny", [] { return Dense(ModelFamily::kQwen3, "qwen3", 4096, 256, 768, 6, 8, 4, 32, true, 1e6); }},
      {"qwen3_moe-nano", [] { return Qwen3Moe(256, 64, 128, 32, 2, 4, 2, 16, 8, 2); }},
      {"qwen3_moe-tiny", [] { return Qwen3Moe(4096, 256, 768, 128, 6, 8, 4, 32, 32, 4); }},
      {"deepseek_v3-nano", [] { return DeepseekV3(256, 64, 128, 32, 2, 4, 32, 32, 16, 8, 16, 8, 1, 2, 4, 2, 1, 2.5); }},
      {"deepseek_v3-tiny", [] { return DeepseekV3(4096, 256, 768, 128, 6, 8, 128, 64, 32, 16, 32, 32, 1, 4, 4, 2, 1, 2.5); }},
      // Real architectures (HF config.json values).
      {"qwen2.5-0.5b", [] { return Dense(ModelFamily::kQwen2, "qwen2", 151936, 896, 4864, 24, 14, 2, 64, true, 1e6); }},
      {"qwen2.5-1.5b", [] { return Dense(ModelFamily::kQwen2, "qwen2", 151936, 1536, 8960, 28, 12, 2, 128, true, 1e6); }},
      {"qwen2.5-7b", [] { return Dense(ModelFamily::kQwen2, "qwen2", 152064, 3584, 18944, 28, 28, 4, 128, false, 1e6); }},
      {"qwen3-0.6b", [] { return Dense(ModelFamily::kQwen3, "qwen3", 151936, 1024, 3072, 28, 16, 8, 128, true, 1e6); }},
      {"qwen3-30b-a3b", [] { return Qwen3Moe(151936, 2048, 6144, 768, 48, 32, 4, 128, 128, 8); }},
      {"llama3.1-8b", [] {
         ModelConfig c = Dense(ModelFamily::kLlama, "llama", 128256, 4096, 14336, 32, 32, 8, 128, false, 500000);
         c.rope_scaling = {RopeType::kLlama3, 8.0, 1.0, 4.0, 8192};
         c.max_position_embeddings = 131072;
         c.rms_norm_eps = 1e-5;
         return c;
       }},
      {"moonlight-16b-a3b", [] {
         ModelConfig c = DeepseekV3(163840, 2048, 11264, 1408, 27, 16, 0, 512, 128, 64, 128, 64, 2, 6, 1, 1, 1, 2.446);
         c.rope_theta = 50000;
         c.max_position_embeddings = 8192;
         c.rms_norm_eps = 1e-5;
         return c;
       }},
      {"deepseek-v3", [] {
         ModelConfig c = DeepseekV3(129280, 7168, 18432, 2048, 61, 128, 1536, 512, 128, 64, 128, 256, 1, 8, 8, 4, 3, 2.5);
         c.rope_scaling.type = RopeType::kYarn;
         c.rope_scaling.factor = 40;
         c.rope_scaling.original_max_position_embeddings = 4096;
         c.rope_scaling.beta_fast = 32;
         c.rope_scaling.beta_slow = 1;
         c.rope_scaling.mscale = 1.0;
         c.rope_scaling.mscale_all_dim = 1.0;
         c.max_position_embeddings = 163840;
         c.num_nextn_predict_layers = 1;
         c.fp8_checkpoint = true;
         return c;
       }},
  };
  return *registry;
}

}  // namespace

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const auto& [name, _] : Registry()) names.push_back(name);
  return names;
}

absl::StatusOr<ModelConfig> PresetConfig(std::string_view name) {
  auto it = Registry().find(std::string(name));
  if (it == Registry().end()) {
    std::string known;
    for (const std::string& n : PresetNames()) known += (known.empty() ? "" : ", ") + n;
    return absl::NotFoundError("unknown model preset '" + std::string(name) + "' (known: " + known + ")");
  }
  return it->second();
}

std::vector<Parameter> InitParameters(const ModelConfig& config, uint64_t seed, double std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, static_cast<float>(std));
  std::vector<Parameter> params;
  for (const ParameterSpec& spec : ExpectedParameters(config)) {
    Tensor t = Tensor::Zeros(DType::kF32, spec.shape);
    float* p = t.mutable_data<float>();
    const bool is_norm = spec.name.ends_with("norm.weight") || spec.name.ends_with("layernorm.weight");
    const bool is_zero = spec.name.ends_with(".bias") || spec.name.ends_with("e_score_correction_bias");
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = is_norm ? 1.0f : is_zero ? 0.0f : normal(rng);
    params.push_back({spec, std::move(t)});
  }
  return params;
}

}  // namespace grpo
