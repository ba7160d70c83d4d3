#include "model/parameters.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <set>

#include "core/checksum_manifest.h"
#include "core/file.h"
#include "core/fp8_block.h"
#include "core/safetensors.h"

namespace grpo {
namespace {

class SpecList {
 public:
  void Matrix(const std::string& name, int64_t rows, int64_t cols) {
    specs_.push_back({name, {rows, cols}, true, true});
  }
  void Vector(const std::string& name, int64_t n, bool trainable = true) {
    specs_.push_back({name, {n}, trainable, false});
  }
  void Mlp(const std::string& prefix, int64_t hidden, int64_t inter, bool bias) {
    Matrix(prefix + "gate_proj.weight", inter, hidden);
    if (bias) Vector(prefix + "gate_proj.bias", inter);
    Matrix(prefix + "up_proj.weight", inter, hidden);
    if (bias) Vector(prefix + "up_proj.bias", inter);
    Matrix(prefix + "down_proj.weight", hidden, inter);
    if (bias) Vector(prefix + "down_proj.bias", hidden);
  }
  std::vector<ParameterSpec> Take() { return std::move(specs_); }

 private:
  std::vector<ParameterSpec> specs_;
};

bool IsIgnorable(const ModelConfig& c, const std::string& name) {
  if (name.ends_with("rotary_emb.inv_freq")) return true;
  if (c.tie_word_embeddings && name == "lm_head.weight") return true;
  const std::string layers = "model.layers.";
  if (name.starts_with(layers)) {
    const size_t dot = name.find('.', layers.size());
    const std::string idx = name.substr(layers.size(), dot - layers.size());
    char* end = nullptr;
    const long long l = std::strtoll(idx.c_str(), &end, 10);
    if (end != idx.c_str() && *end == '\0' && l >= c.num_hidden_layers) return true;  // MTP
  }
  return false;
}

}  // namespace

std::vector<ParameterSpec> ExpectedParameters(const ModelConfig& c) {
  SpecList s;
  const int64_t h = c.hidden_size;
  s.Matrix("model.embed_tokens.weight", c.vocab_size, h);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s.Vector(p + "input_layernorm.weight", h);
    if (c.mla) {
      const int64_t qk = c.qk_head_dim();
      if (c.q_lora_rank > 0) {
        s.Matrix(p + "self_attn.q_a_proj.weight", c.q_lora_rank, h);
        s.Vector(p + "self_attn.q_a_layernorm.weight", c.q_lora_rank);
        s.Matrix(p + "self_attn.q_b_proj.weight", c.num_attention_heads * qk, c.q_lora_rank);
      } else {
        s.Matrix(p + "self_attn.q_proj.weight", c.num_attention_heads * qk, h);
      }
      s.Matrix(p + "self_attn.kv_a_proj_with_mqa.weight", c.kv_lora_rank + c.qk_rope_head_dim, h);
      s.Vector(p + "self_attn.kv_a_layernorm.weight", c.kv_lora_rank);
      s.Matrix(p + "self_attn.kv_b_proj.weight",
               c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
      s.Matrix(p + "self_attn.o_proj.weight", h, c.num_attention_heads * c.v_head_dim);
    } else {
      const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
      s.Matrix(p + "self_attn.q_proj.weight", q, h);
      if (c.attention_bias) s.Vector(p + "self_attn.q_proj.bias", q);
      s.Matrix(p + "self_attn.k_proj.weight", kv, h);
      if (c.attention_bias) s.Vector(p + "self_attn.k_proj.bias", kv);
      s.Matrix(p + "self_attn.v_proj.weight", kv, h);
      if (c.attention_bias) s.Vector(p + "self_attn.v_proj.bias", kv);
      s.Matrix(p + "self_attn.o_proj.weight", h, q);
      if (c.attention_out_bias) s.Vector(p + "self_attn.o_proj.bias", h);
      if (c.qk_norm) {
        s.Vector(p + "self_attn.q_norm.weight", c.head_dim);
        s.Vector(p + "self_attn.k_norm.weight", c.head_dim);
      }
    }
    s.Vector(p + "post_attention_layernorm.weight", h);
    if (c.IsMoeLayer(l)) {
      s.Matrix(p + "mlp.gate.weight", c.num_experts, h);
      if (c.scoring == RouterScoring::kSigmoid) {
        s.Vector(p + "mlp.gate.e_score_correction_bias", c.num_experts, /*trainable=*/false);
      }
      for (int64_t e = 0; e < c.num_experts; ++e) {
        s.Mlp(p + "mlp.experts." + std::to_string(e) + ".", h, c.moe_intermediate_size, false);
      }
      if (c.n_shared_experts > 0) {
        s.Mlp(p + "mlp.shared_experts.", h, c.moe_intermediate_size * c.n_shared_experts, false);
      }
    } else {
      s.Mlp(p + "mlp.", h, c.intermediate_size, c.mlp_bias);
    }
  }
  s.Vector("model.norm.weight", h);
  if (!c.tie_word_embeddings) s.Matrix("lm_head.weight", c.vocab_size, h);
  std::vector<ParameterSpec> specs = s.Take();
  // Embeddings, the output head and routers are never FP8 in checkpoints.
  for (ParameterSpec& spec : specs) {
    if (spec.name == "model.embed_tokens.weight" || spec.name == "lm_head.weight" ||
        spec.name.ends_with("mlp.gate.weight")) {
      spec.is_matrix = false;
    }
  }
  return specs;
}

const char* WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32: return "f32";
    case WeightFormat::kStored: return "stored";
    case WeightFormat::kBF16: return "bf16";
    case WeightFormat::kFp8Block: return "fp8";
  }
  return "?";
}

absl::StatusOr<WeightFormat> ParseWeightFormat(std::string_view name, std::span<const WeightFormat> allowed) {
  std::string expected;
  for (size_t i = 0; i < allowed.size(); ++i) {
    if (name == WeightFormatName(allowed[i])) return allowed[i];
    expected += i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ";
    expected += WeightFormatName(allowed[i]);
  }
  return absl::InvalidArgumentError("weight format: unknown name \"" + std::string(name) + "\" (expected " +
                                    expected + ")");
}

absl::StatusOr<Tensor> ParameterToF32(const Parameter& p) {
  if (p.value.dtype() == DType::kF8E4M3) {
    if (!p.scale_inv.defined()) {
      return absl::InvalidArgumentError("FP8 parameter '" + p.spec.name + "' has no scale_inv");
    }
    auto deq = DequantizeFp8Block(p.value, p.scale_inv);
    if (!deq.ok()) return grpo::WithContext(deq.status(), "parameter '" + p.spec.name + "'");
    return deq;
  }
  if (!IsFloatingPoint(p.value.dtype())) {
    return absl::InvalidArgumentError("parameter '" + p.spec.name + "' has non-float dtype " +
                                   std::string(DTypeName(p.value.dtype())));
  }
  return p.value.ToF32();
}

bool ServedNarrow(const ParameterSpec& spec) {
  return spec.is_matrix || spec.name == "model.embed_tokens.weight" ||
         spec.name == "lm_head.weight";
}

absl::Status ConvertMatrices(WeightFormat format, std::vector<Parameter>* params) {
  if (format == WeightFormat::kStored) return absl::OkStatus();
  for (Parameter& p : *params) {
    if (!ServedNarrow(p.spec)) continue;
    const DType dtype = p.value.dtype();
    switch (format) {
      case WeightFormat::kF32:
        if (dtype == DType::kF32 && p.value.writable()) continue;
        break;
      case WeightFormat::kBF16:
        if (dtype == DType::kBF16) continue;
        break;
      case WeightFormat::kFp8Block:
        if (dtype == DType::kF8E4M3 && p.scale_inv.defined()) continue;
        break;
      case WeightFormat::kStored:
        break;
    }
    GRPO_ASSIGN_OR_RETURN(Tensor f32, ParameterToF32(p));
    p.scale_inv = Tensor();
    if (format == WeightFormat::kF32) {
      p.value = std::move(f32);
    } else if (format == WeightFormat::kBF16) {
      GRPO_ASSIGN_OR_RETURN(p.value, f32.CastTo(DType::kBF16));
    } else {
      auto q = QuantizeFp8Block(f32);
      if (!q.ok()) return grpo::WithContext(q.status(), "parameter '" + p.spec.name + "'");
      p.value = std::move(q->weight);
      p.scale_inv = std::move(q->scale_inv);
    }
  }
  return absl::OkStatus();
}

int64_t ParameterBytes(const std::vector<Parameter>& params) {
  int64_t bytes = 0;
  for (const Parameter& p : params) {
    bytes += static_cast<int64_t>(p.value.nbytes());
    if (p.scale_inv.defined()) bytes += static_cast<int64_t>(p.scale_inv.nbytes());
  }
  return bytes;
}

absl::StatusOr<std::vector<Parameter>> LoadParameters(const ModelConfig& config, const std::string& dir) {
  return LoadParameters(config, dir, WeightFormat::kF32);
}

absl::StatusOr<std::vector<Parameter>> LoadParameters(const ModelConfig& config, const std::string& dir,
                                              WeightFormat matrices) {
  const bool keep = matrices != WeightFormat::kF32;
  GRPO_ASSIGN_OR_RETURN(SafetensorsDir files, SafetensorsDir::Open(dir));
  std::vector<Parameter> params;
  std::set<std::string> used;
  for (const ParameterSpec& spec : ExpectedParameters(config)) {
    if (!files.Contains(spec.name)) {
      return absl::InvalidArgumentError(dir + ": missing tensor '" + spec.name + "' (shape " +
                                     ShapeToString(spec.shape) + ")");
    }
    GRPO_ASSIGN_OR_RETURN(Tensor t, files.Get(spec.name));
    used.insert(spec.name);
    if (t.shape() != spec.shape) {
      return absl::InvalidArgumentError(dir + ": tensor '" + spec.name + "' has shape " +
                                     ShapeToString(t.shape()) + ", expected " +
                                     ShapeToString(spec.shape));
    }
    Tensor value, scale_inv;
    if (keep && ServedNarrow(spec) && t.dtype() == DType::kBF16) {
      value = t;  // zero-copy view of the mapping
    } else if (t.dtype() == DType::kF8E4M3) {
      const std::string scale_name = spec.name + "_scale_inv";
      if (!files.Contains(scale_name)) {
        return absl::InvalidArgumentError(dir + ": FP8 tensor '" + spec.name + "' has no '" +
                                       scale_name + "'");
      }
      GRPO_ASSIGN_OR_RETURN(Tensor scale, files.Get(scale_name));
      used.insert(scale_name);
      if (keep && ServedNarrow(spec)) {
        value = t;  // zero-copy view; the scales become an aligned f32 copy
        scale_inv = scale.ToF32();
        const Shape want{(spec.shape[0] + kFp8BlockSize - 1) / kFp8BlockSize,
                         (spec.shape[1] + kFp8BlockSize - 1) / kFp8BlockSize};
        if (scale_inv.shape() != want) {
          return absl::InvalidArgumentError(dir + ": tensor '" + scale_name + "' has shape " +
                                         ShapeToString(scale_inv.shape()) + ", expected " +
                                         ShapeToString(want));
        }
      } else {
        auto deq = DequantizeFp8Block(t, scale);
        if (!deq.ok()) return grpo::WithContext(deq.status(), dir + ": tensor '" + spec.name + "'");
        value = std::move(deq).value();
      }
    } else if (IsFloatingPoint(t.dtype())) {
      value = t.ToF32();
    } else {
      return absl::InvalidArgumentError(dir + ": tensor '" + spec.name + "' has non-float dtype " +
                                     std::string(DTypeName(t.dtype())));
    }
    params.push_back({spec, std::move(value), std::move(scale_inv)});
  }
  for (const std::string& name : files.names()) {
    if (used.count(name) || IsIgnorable(config, name)) continue;
    return absl::InvalidArgumentError(dir + ": unexpected tensor '" + name + "' for a " +
                                   config.model_type + " model with this config");
  }
  GRPO_RETURN_IF_ERROR(grpo::WithContext(ConvertMatrices(matrices, &params), dir));
  return params;
}

absl::Status SaveModel(const ModelConfig& config, const std::vector<Parameter>& params,
                 const std::string& dir, uint64_t max_shard_bytes, DType storage) {
  if (storage != DType::kF32 && storage != DType::kBF16) {
    return absl::InvalidArgumentError("checkpoints are stored as F32 or BF16, not " +
                                   std::string(DTypeName(storage)));
  }
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return grpo::ErrnoError("mkdir " + dir, errno);
  const std::string manifest = dir + "/" + kChecksumManifestName;
  if (std::remove(manifest.c_str()) != 0 && errno != ENOENT) {
    return grpo::ErrnoError("cannot remove the stale " + manifest, errno);
  }
  NamedTensors tensors;
  for (const Parameter& param : params) {
    Parameter widened;
    if (param.value.dtype() != DType::kF32) {
      widened.spec = param.spec;
      GRPO_ASSIGN_OR_RETURN(widened.value, ParameterToF32(param));
    }
    const Parameter& p = param.value.dtype() != DType::kF32 ? widened : param;
    if (config.fp8_checkpoint && p.spec.is_matrix) {
      GRPO_ASSIGN_OR_RETURN(Fp8BlockWeight q, QuantizeFp8Block(p.value));
      tensors.emplace_back(p.spec.name, std::move(q.weight));
      tensors.emplace_back(p.spec.name + "_scale_inv", std::move(q.scale_inv));
    } else if (storage == DType::kF32) {
      tensors.emplace_back(p.spec.name, p.value);
    } else {
      GRPO_ASSIGN_OR_RETURN(Tensor narrow, p.value.CastTo(storage));
      tensors.emplace_back(p.spec.name, std::move(narrow));
    }
  }
  GRPO_RETURN_IF_ERROR(WriteShardedSafetensors(dir, tensors, max_shard_bytes == 0 ? UINT64_MAX : max_shard_bytes,
                                               {{"format", "pt"}}));
  nlohmann::json json = config.ToJson();
  json["torch_dtype"] = storage == DType::kF32 ? "float32" : "bfloat16";
  return WriteFileAtomic(dir + "/config.json", json.dump(2) + "\n");
}

}  // namespace grpo
