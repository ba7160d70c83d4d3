#include "model/model_config.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

namespace grpo {
namespace {

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError("config.json: '" + field + "' " + why);
}

absl::Status RequirePositive(const std::string& field, int64_t v) {
  if (v <= 0) return Invalid(field, "must be positive, got " + std::to_string(v));
  return absl::OkStatus();
}

// Bounds every size key and checks that every tensor, and the whole model, has a size that
// 64-bit arithmetic can count in bytes (f32 weights + gradients + two AdamW moments).
absl::Status CheckSizes(const ModelConfig& m) {
  const std::string experts_key = m.family == ModelFamily::kDeepseekV3 ? "n_routed_experts" : "num_experts";
  const std::pair<std::string, int64_t> dims[] = {
      {"vocab_size", m.vocab_size},
      {"hidden_size", m.hidden_size},
      {"intermediate_size", m.intermediate_size},
      {"num_attention_heads", m.num_attention_heads},
      {"num_key_value_heads", m.num_key_value_heads},
      {"head_dim", m.head_dim},
      {"max_position_embeddings", m.max_position_embeddings},
      {"q_lora_rank", m.q_lora_rank},
      {"kv_lora_rank", m.kv_lora_rank},
      {"qk_nope_head_dim", m.qk_nope_head_dim},
      {"qk_rope_head_dim", m.qk_rope_head_dim},
      {"v_head_dim", m.v_head_dim},
      {"moe_intermediate_size", m.moe_intermediate_size},
      {"n_shared_experts", m.n_shared_experts},
      {"num_experts_per_tok", m.num_experts_per_tok}};
  for (const auto& [key, v] : dims) {
    if (v < 0) return Invalid(key, "must not be negative, got " + std::to_string(v));
    if (v > kMaxModelDimension) {
      return Invalid(key, "must be at most " + std::to_string(kMaxModelDimension) +
                              " (token ids, positions and rows are 32-bit), got " + std::to_string(v));
    }
  }
  if (m.num_hidden_layers > kMaxModelLayers) {
    return Invalid("num_hidden_layers", "must be at most " + std::to_string(kMaxModelLayers) + ", got " +
                                            std::to_string(m.num_hidden_layers));
  }
  if (m.num_experts < 0 || m.num_experts > kMaxModelExperts) {
    return Invalid(experts_key, "must be in [0, " + std::to_string(kMaxModelExperts) + "], got " +
                                    std::to_string(m.num_experts));
  }
  // The largest tensors, each named by the keys that size it.
  const auto key = [](const std::string& k, int64_t v) { return k + " " + std::to_string(v); };
  const int64_t h = m.hidden_size, nh = m.num_attention_heads;
  const struct {
    std::string keys;
    CheckedInt64 n;
  } tensors[] = {
      {key("vocab_size", m.vocab_size) + " x " + key("hidden_size", h), CheckedInt64(m.vocab_size) * h},
      {key("num_attention_heads", nh) + " x " + key(m.mla ? "qk head width" : "head_dim", m.qk_head_dim()) + " x " +
           key("hidden_size", h),
       CheckedInt64(nh) * m.qk_head_dim() * h},
      {key("num_attention_heads", nh) + " x " + key("value head width", m.value_head_dim()) + " x " +
           key(m.mla ? "kv_lora_rank" : "hidden_size", m.mla ? m.kv_lora_rank : h),
       CheckedInt64(nh) * m.value_head_dim() * (m.mla ? m.kv_lora_rank : h)},
      {key("intermediate_size", m.intermediate_size) + " x " + key("hidden_size", h),
       CheckedInt64(m.intermediate_size) * h},
      {key("moe_intermediate_size", m.moe_intermediate_size) + " x " + key("n_shared_experts", m.n_shared_experts) +
           " x " + key("hidden_size", h),
       CheckedInt64(m.moe_intermediate_size) * m.n_shared_experts * h},
      {key(experts_key, m.num_experts) + " x " + key("moe_intermediate_size", m.moe_intermediate_size) + " x " +
           key("hidden_size", h),
       CheckedInt64(m.num_experts) * m.moe_intermediate_size * h},
  };
  constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 16;  // bytes of f32 + grad + 2 moments
  for (const auto& t : tensors) {
    if (t.n.overflowed() || t.n.value() > kMaxElements) {
      return absl::InvalidArgumentError("config.json: " + t.keys + " is too large: " +
                                        (t.n.overflowed() ? std::string("the product overflows 64 bits")
                                                          : std::to_string(t.n.value()) + " elements") +
                                        ", more than 64-bit sizes can count in bytes");
    }
  }
  const CheckedInt64 total = m.ParameterCount();
  if (total.overflowed() || total.value() > kMaxElements) {
    return absl::InvalidArgumentError(
        "config.json: " + key("num_hidden_layers", m.num_hidden_layers) + " layers of " + key("hidden_size", h) +
        ", " + key("intermediate_size", m.intermediate_size) + ", " + key("vocab_size", m.vocab_size) +
        (m.num_experts > 0 ? ", " + key(experts_key, m.num_experts) : std::string()) +
        " make more parameters than 64-bit sizes can count in bytes");
  }
  return absl::OkStatus();
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const Config& c) {
  RopeScaling rs;
  if (!c.Has("rope_scaling") || c.json().at("rope_scaling").is_null()) return rs;
  GRPO_ASSIGN_OR_RETURN(Config sub, c.Sub("rope_scaling"));
  GRPO_ASSIGN_OR_RETURN(std::string type, sub.GetStringOr("rope_type", ""));
  if (type.empty()) {
    GRPO_ASSIGN_OR_RETURN(type, sub.GetStringOr("type", "default"));
  }
  GRPO_ASSIGN_OR_RETURN(rs.factor, sub.GetDoubleOr("factor", 1.0));
  GRPO_ASSIGN_OR_RETURN(rs.original_max_position_embeddings,
                        sub.GetIntOr("original_max_position_embeddings", 0));
  if (type == "default") {
    rs.type = RopeType::kDefault;
  } else if (type == "llama3") {
    rs.type = RopeType::kLlama3;
    GRPO_ASSIGN_OR_RETURN(rs.low_freq_factor, sub.GetDoubleOr("low_freq_factor", 1.0));
    GRPO_ASSIGN_OR_RETURN(rs.high_freq_factor, sub.GetDoubleOr("high_freq_factor", 4.0));
    if (rs.original_max_position_embeddings <= 0) {
      return Invalid("rope_scaling.original_max_position_embeddings", "is required for llama3");
    }
  } else if (type == "yarn") {
    rs.type = RopeType::kYarn;
    GRPO_ASSIGN_OR_RETURN(rs.beta_fast, sub.GetDoubleOr("beta_fast", 32.0));
    GRPO_ASSIGN_OR_RETURN(rs.beta_slow, sub.GetDoubleOr("beta_slow", 1.0));
    GRPO_ASSIGN_OR_RETURN(rs.mscale, sub.GetDoubleOr("mscale", 1.0));
    GRPO_ASSIGN_OR_RETURN(rs.mscale_all_dim, sub.GetDoubleOr("mscale_all_dim", 0.0));
  } else {
    return Invalid("rope_scaling.type", "'" + type + "' is not supported (default, llama3, yarn)");
  }
  if (!(rs.factor > 0)) return Invalid("rope_scaling.factor", "must be positive");
  return rs;
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::Load(const std::string& dir) {
  GRPO_ASSIGN_OR_RETURN(Config c, Config::LoadFile(dir + "/config.json"));
  return FromConfig(c);
}

absl::StatusOr<ModelConfig> ModelConfig::FromConfig(const Config& c) {
  ModelConfig m;
  GRPO_ASSIGN_OR_RETURN(m.model_type, c.GetString("model_type"));
  if (m.model_type == "llama") {
    m.family = ModelFamily::kLlama;
  } else if (m.model_type == "qwen2") {
    m.family = ModelFamily::kQwen2;
  } else if (m.model_type == "qwen3") {
    m.family = ModelFamily::kQwen3;
  } else if (m.model_type == "qwen3_moe") {
    m.family = ModelFamily::kQwen3Moe;
  } else if (m.model_type == "deepseek_v3") {
    m.family = ModelFamily::kDeepseekV3;
  } else {
    return Invalid("model_type", "'" + m.model_type +
                                     "' is not supported (llama, qwen2, qwen3, qwen3_moe, deepseek_v3)");
  }
  GRPO_ASSIGN_OR_RETURN(m.vocab_size, c.GetInt("vocab_size"));
  GRPO_ASSIGN_OR_RETURN(m.hidden_size, c.GetInt("hidden_size"));
  GRPO_ASSIGN_OR_RETURN(m.intermediate_size, c.GetInt("intermediate_size"));
  GRPO_ASSIGN_OR_RETURN(m.num_hidden_layers, c.GetInt("num_hidden_layers"));
  GRPO_ASSIGN_OR_RETURN(m.num_attention_heads, c.GetInt("num_attention_heads"));
  GRPO_ASSIGN_OR_RETURN(m.num_key_value_heads, c.GetIntOr("num_key_value_heads", m.num_attention_heads));
  GRPO_ASSIGN_OR_RETURN(m.max_position_embeddings, c.GetIntOr("max_position_embeddings", 4096));
  GRPO_ASSIGN_OR_RETURN(m.rms_norm_eps, c.GetDoubleOr("rms_norm_eps", 1e-6));
  GRPO_ASSIGN_OR_RETURN(m.rope_theta, c.GetDoubleOr("rope_theta", 10000.0));
  GRPO_ASSIGN_OR_RETURN(m.rope_scaling, ParseRopeScaling(c));
  GRPO_ASSIGN_OR_RETURN(m.tie_word_embeddings, c.GetBoolOr("tie_word_embeddings", false));
  GRPO_ASSIGN_OR_RETURN(m.bos_token_id, c.GetIntOr("bos_token_id", -1));
  if (c.Has("eos_token_id") && c.json().at("eos_token_id").is_array()) {
    for (const auto& v : c.json().at("eos_token_id")) {
      if (!v.is_number_integer()) return Invalid("eos_token_id", "must hold integers");
      m.eos_token_ids.push_back(v.get<int64_t>());
    }
  } else {
    GRPO_ASSIGN_OR_RETURN(int64_t eos, c.GetIntOr("eos_token_id", -1));
    if (eos >= 0) m.eos_token_ids.push_back(eos);
  }
  for (const auto& [field, v] : {std::pair<std::string, int64_t>{"vocab_size", m.vocab_size},
                                 {"hidden_size", m.hidden_size},
                                 {"intermediate_size", m.intermediate_size},
                                 {"num_hidden_layers", m.num_hidden_layers},
                                 {"num_attention_heads", m.num_attention_heads},
                                 {"num_key_value_heads", m.num_key_value_heads}}) {
    GRPO_RETURN_IF_ERROR(RequirePositive(field, v));
  }
  if (m.num_attention_heads % m.num_key_value_heads != 0) {
    return Invalid("num_key_value_heads", "must divide num_attention_heads (" +
                                              std::to_string(m.num_attention_heads) + "), got " +
                                              std::to_string(m.num_key_value_heads));
  }

  switch (m.family) {
    case ModelFamily::kLlama: {
      GRPO_ASSIGN_OR_RETURN(m.attention_bias, c.GetBoolOr("attention_bias", false));
      m.attention_out_bias = m.attention_bias;
      GRPO_ASSIGN_OR_RETURN(m.mlp_bias, c.GetBoolOr("mlp_bias", false));
      break;
    }
    case ModelFamily::kQwen2:
      m.attention_bias = true;
      break;
    case ModelFamily::kQwen3:
    case ModelFamily::kQwen3Moe: {
      m.qk_norm = true;
      GRPO_ASSIGN_OR_RETURN(m.attention_bias, c.GetBoolOr("attention_bias", false));
      m.attention_out_bias = m.attention_bias;
      break;
    }
    case ModelFamily::kDeepseekV3:
      m.mla = true;
      break;
  }
  if (m.mla) {
    GRPO_ASSIGN_OR_RETURN(m.q_lora_rank, c.GetIntOr("q_lora_rank", 0));
    GRPO_ASSIGN_OR_RETURN(m.kv_lora_rank, c.GetInt("kv_lora_rank"));
    GRPO_ASSIGN_OR_RETURN(m.qk_nope_head_dim, c.GetInt("qk_nope_head_dim"));
    GRPO_ASSIGN_OR_RETURN(m.qk_rope_head_dim, c.GetInt("qk_rope_head_dim"));
    GRPO_ASSIGN_OR_RETURN(m.v_head_dim, c.GetInt("v_head_dim"));
    GRPO_ASSIGN_OR_RETURN(m.num_nextn_predict_layers, c.GetIntOr("num_nextn_predict_layers", 0));
    GRPO_ASSIGN_OR_RETURN(bool bias, c.GetBoolOr("attention_bias", false));
    if (bias) return Invalid("attention_bias", "true is not supported for deepseek_v3");
    for (const auto& [field, v] : {std::pair<std::string, int64_t>{"kv_lora_rank", m.kv_lora_rank},
                                   {"qk_nope_head_dim", m.qk_nope_head_dim},
                                   {"qk_rope_head_dim", m.qk_rope_head_dim},
                                   {"v_head_dim", m.v_head_dim}}) {
      GRPO_RETURN_IF_ERROR(RequirePositive(field, v));
    }
    if (m.qk_rope_head_dim % 2) return Invalid("qk_rope_head_dim", "must be even");
    m.head_dim = m.qk_rope_head_dim;
  } else {
    GRPO_ASSIGN_OR_RETURN(m.head_dim, c.GetIntOr("head_dim", 0));
    if (m.head_dim == 0) {
      if (m.hidden_size % m.num_attention_heads != 0) {
        return Invalid("num_attention_heads", "must divide hidden_size when head_dim is absent");
      }
      m.head_dim = m.hidden_size / m.num_attention_heads;
    }
    if (m.head_dim % 2) return Invalid("head_dim", "must be even for RoPE");
  }

  if (m.family == ModelFamily::kQwen3Moe) {
    GRPO_ASSIGN_OR_RETURN(m.num_experts, c.GetIntOr("num_experts", 0));
    GRPO_ASSIGN_OR_RETURN(m.num_experts_per_tok, c.GetIntOr("num_experts_per_tok", 0));
    GRPO_ASSIGN_OR_RETURN(m.moe_intermediate_size, c.GetIntOr("moe_intermediate_size", 0));
    GRPO_ASSIGN_OR_RETURN(m.norm_topk_prob, c.GetBoolOr("norm_topk_prob", false));
    GRPO_ASSIGN_OR_RETURN(m.decoder_sparse_step, c.GetIntOr("decoder_sparse_step", 1));
    if (c.Has("mlp_only_layers") && c.json().at("mlp_only_layers").is_array()) {
      for (const auto& v : c.json().at("mlp_only_layers")) {
        if (!v.is_number_integer()) return Invalid("mlp_only_layers", "must hold integers");
        m.mlp_only_layers.push_back(v.get<int64_t>());
      }
    }
    m.scoring = RouterScoring::kSoftmax;
    GRPO_RETURN_IF_ERROR(RequirePositive("decoder_sparse_step", m.decoder_sparse_step));
  } else if (m.family == ModelFamily::kDeepseekV3) {
    GRPO_ASSIGN_OR_RETURN(m.num_experts, c.GetIntOr("n_routed_experts", 0));
    GRPO_ASSIGN_OR_RETURN(m.num_experts_per_tok, c.GetIntOr("num_experts_per_tok", 0));
    GRPO_ASSIGN_OR_RETURN(m.moe_intermediate_size, c.GetIntOr("moe_intermediate_size", 0));
    GRPO_ASSIGN_OR_RETURN(m.n_shared_experts, c.GetIntOr("n_shared_experts", 0));
    GRPO_ASSIGN_OR_RETURN(m.norm_topk_prob, c.GetBoolOr("norm_topk_prob", true));
    GRPO_ASSIGN_OR_RETURN(m.routed_scaling_factor, c.GetDoubleOr("routed_scaling_factor", 1.0));
    GRPO_ASSIGN_OR_RETURN(m.n_group, c.GetIntOr("n_group", 1));
    GRPO_ASSIGN_OR_RETURN(m.topk_group, c.GetIntOr("topk_group", 1));
    GRPO_ASSIGN_OR_RETURN(m.first_k_dense_replace, c.GetIntOr("first_k_dense_replace", 0));
    GRPO_ASSIGN_OR_RETURN(m.moe_layer_freq, c.GetIntOr("moe_layer_freq", 1));
    GRPO_ASSIGN_OR_RETURN(std::string scoring, c.GetStringOr("scoring_func", "sigmoid"));
    if (scoring != "sigmoid") return Invalid("scoring_func", "'" + scoring + "' is not supported (sigmoid)");
    GRPO_ASSIGN_OR_RETURN(std::string topk_method, c.GetStringOr("topk_method", "noaux_tc"));
    if (topk_method != "noaux_tc") {
      return Invalid("topk_method", "'" + topk_method + "' is not supported (noaux_tc)");
    }
    m.scoring = RouterScoring::kSigmoid;
    GRPO_RETURN_IF_ERROR(RequirePositive("n_group", m.n_group));
    GRPO_RETURN_IF_ERROR(RequirePositive("moe_layer_freq", m.moe_layer_freq));
    if (m.num_experts > 0) {
      if (m.num_experts % m.n_group) return Invalid("n_group", "must divide n_routed_experts");
      if (m.topk_group > m.n_group || m.topk_group <= 0) {
        return Invalid("topk_group", "must be in [1, n_group]");
      }
      if (m.num_experts / m.n_group < 2) {
        return Invalid("n_group", "needs at least 2 experts per group (group score = top-2 sum)");
      }
      if (m.num_experts_per_tok > m.topk_group * (m.num_experts / m.n_group)) {
        return Invalid("num_experts_per_tok", "exceeds the experts in topk_group groups");
      }
    }
  }
  if (m.num_experts > 0) {
    GRPO_RETURN_IF_ERROR(RequirePositive("num_experts_per_tok", m.num_experts_per_tok));
    GRPO_RETURN_IF_ERROR(RequirePositive("moe_intermediate_size", m.moe_intermediate_size));
    if (m.num_experts_per_tok > m.num_experts) {
      return Invalid("num_experts_per_tok", "exceeds the number of experts");
    }
  }
  if (c.Has("quantization_config") && c.json().at("quantization_config").is_object()) {
    GRPO_ASSIGN_OR_RETURN(Config q, c.Sub("quantization_config"));
    GRPO_ASSIGN_OR_RETURN(std::string method, q.GetStringOr("quant_method", ""));
    if (method != "fp8") {
      return Invalid("quantization_config.quant_method", "'" + method + "' is not supported (fp8)");
    }
    if (q.Has("weight_block_size")) {
      const auto& b = q.json().at("weight_block_size");
      if (!b.is_array() || b.size() != 2 || b[0] != 128 || b[1] != 128) {
        return Invalid("quantization_config.weight_block_size", "must be [128, 128]");
      }
    }
    m.fp8_checkpoint = true;
  }
  GRPO_RETURN_IF_ERROR(RequirePositive("max_position_embeddings", m.max_position_embeddings));
  GRPO_RETURN_IF_ERROR(CheckSizes(m));
  return m;
}

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  if (num_experts <= 0) return false;
  if (family == ModelFamily::kDeepseekV3) {
    return layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  for (int64_t l : mlp_only_layers) {
    if (l == layer) return false;
  }
  return (layer + 1) % decoder_sparse_step == 0;
}

int64_t ModelConfig::NumMoeLayers() const {
  int64_t n = 0;
  for (int64_t l = 0; l < num_hidden_layers; ++l) n += IsMoeLayer(l);
  return n;
}

namespace {
double YarnMscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}
}  // namespace

double ModelConfig::AttentionScale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (mla && rope_scaling.type == RopeType::kYarn && rope_scaling.mscale_all_dim != 0.0) {
    const double m = YarnMscale(rope_scaling.factor, rope_scaling.mscale_all_dim);
    scale *= m * m;
  }
  return scale;
}

CheckedInt64 ModelConfig::ParameterCount() const {
  const CheckedInt64 h = hidden_size;
  CheckedInt64 attn;
  if (mla) {
    const CheckedInt64 q = q_lora_rank > 0
                               ? h * q_lora_rank + q_lora_rank + CheckedInt64(q_lora_rank) * num_attention_heads * qk_head_dim()
                               : h * num_attention_heads * qk_head_dim();
    attn = q + h * (CheckedInt64(kv_lora_rank) + qk_rope_head_dim) + kv_lora_rank +
           CheckedInt64(kv_lora_rank) * num_attention_heads * (CheckedInt64(qk_nope_head_dim) + v_head_dim) +
           CheckedInt64(num_attention_heads) * v_head_dim * h;
  } else {
    attn = h * head_dim * (CheckedInt64(num_attention_heads) + CheckedInt64(num_key_value_heads) * 2) +
           CheckedInt64(num_attention_heads) * head_dim * h;
  }
  const int64_t moe_layers = NumMoeLayers();
  const CheckedInt64 dense_mlp = h * intermediate_size * 3;
  const CheckedInt64 moe_mlp =
      CheckedInt64(num_experts) * h + (CheckedInt64(num_experts) + n_shared_experts) * 3 * h * moe_intermediate_size;
  CheckedInt64 total = CheckedInt64(vocab_size) * h * (tie_word_embeddings ? 1 : 2) + h;
  total += (attn + h * 2) * num_hidden_layers;
  total += dense_mlp * (num_hidden_layers - moe_layers) + moe_mlp * moe_layers;
  return total;
}

nlohmann::json ModelConfig::ToJson() const {
  static const char* const kArch[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                      "Qwen3MoeForCausalLM", "DeepseekV3ForCausalLM"};
  nlohmann::json j;
  j["architectures"] = {kArch[static_cast<int>(family)]};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "float32";
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  if (eos_token_ids.size() > 1) j["eos_token_id"] = eos_token_ids;
  if (rope_scaling.type == RopeType::kDefault) {
    j["rope_scaling"] = nullptr;
  } else {
    nlohmann::json rs;
    rs["factor"] = rope_scaling.factor;
    if (rope_scaling.original_max_position_embeddings > 0) {
      rs["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    }
    if (rope_scaling.type == RopeType::kLlama3) {
      rs["rope_type"] = "llama3";
      rs["low_freq_factor"] = rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = rope_scaling.high_freq_factor;
    } else {
      rs["type"] = "yarn";
      rs["beta_fast"] = rope_scaling.beta_fast;
      rs["beta_slow"] = rope_scaling.beta_slow;
      rs["mscale"] = rope_scaling.mscale;
      rs["mscale_all_dim"] = rope_scaling.mscale_all_dim;
    }
    j["rope_scaling"] = rs;
  }
  switch (family) {
    case ModelFamily::kLlama:
      j["attention_bias"] = attention_bias;
      j["mlp_bias"] = mlp_bias;
      break;
    case ModelFamily::kQwen2:
      break;
    case ModelFamily::kQwen3:
    case ModelFamily::kQwen3Moe:
      j["head_dim"] = head_dim;
      j["attention_bias"] = attention_bias;
      if (family == ModelFamily::kQwen3Moe) {
        j["num_experts"] = num_experts;
        j["num_experts_per_tok"] = num_experts_per_tok;
        j["moe_intermediate_size"] = moe_intermediate_size;
        j["norm_topk_prob"] = norm_topk_prob;
        j["decoder_sparse_step"] = decoder_sparse_step;
        j["mlp_only_layers"] = mlp_only_layers;
      }
      break;
    case ModelFamily::kDeepseekV3:
      j["q_lora_rank"] = q_lora_rank > 0 ? nlohmann::json(q_lora_rank) : nlohmann::json(nullptr);
      j["kv_lora_rank"] = kv_lora_rank;
      j["qk_nope_head_dim"] = qk_nope_head_dim;
      j["qk_rope_head_dim"] = qk_rope_head_dim;
      j["v_head_dim"] = v_head_dim;
      j["n_routed_experts"] = num_experts;
      j["num_experts_per_tok"] = num_experts_per_tok;
      j["moe_intermediate_size"] = moe_intermediate_size;
      j["n_shared_experts"] = n_shared_experts;
      j["norm_topk_prob"] = norm_topk_prob;
      j["routed_scaling_factor"] = routed_scaling_factor;
      j["scoring_func"] = "sigmoid";
      j["topk_method"] = "noaux_tc";
      j["n_group"] = n_group;
      j["topk_group"] = topk_group;
      j["first_k_dense_replace"] = first_k_dense_replace;
      j["moe_layer_freq"] = moe_layer_freq;
      j["num_nextn_predict_layers"] = num_nextn_predict_layers;
      j["attention_bias"] = false;
      break;
  }
  if (fp8_checkpoint) {
    j["quantization_config"] = {{"quant_method", "fp8"},
                                {"fmt", "e4m3"},
                                {"activation_scheme", "dynamic"},
                                {"weight_block_size", {128, 128}}};
  }
  return j;
}

}  // namespace grpo
