#include "model/causal_lm.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <numeric>
#include <optional>

#include "core/checksum_manifest.h"
#include "core/fp8_block.h"
#include "core/memory_plan.h"
#include "model/model_memory.h"
#include "model/rope.h"

namespace grpo {
namespace {

// RMSNorm epsilon of MLA's latent norms: HF builds them with the class default, not the config's.
constexpr float kMlaLatentNormEps = 1e-6f;

// Rows of logits computed at a time by the output head: about 4 MiB of logits per chunk.
int64_t LogitChunkRows(int64_t vocab) { return std::max<int64_t>(1, (int64_t{1} << 20) / vocab); }

// Per token row of a batch with next-token `targets` (-1: none), its row of `d`, or -1.
// InvalidArgument when d's rows are not strictly increasing indices of targets or its teacher
// logits do not hold rows x vocab values.
absl::StatusOr<std::vector<int64_t>> DivergenceRowOfToken(const DivergenceTargets& d,
                                                          const std::vector<int32_t>& targets,
                                                          int64_t vocab) {
  const int64_t n = static_cast<int64_t>(d.rows.size());
  if (static_cast<int64_t>(d.teacher_logits.size()) != n * vocab) {
    return absl::InvalidArgumentError("divergence: " + std::to_string(d.teacher_logits.size()) +
                                      " teacher logits for " + std::to_string(n) + " rows of vocab " +
                                      std::to_string(vocab));
  }
  const int64_t num_targets = std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
  for (int64_t j = 0; j < n; ++j) {
    if (j > 0 && d.rows[j] <= d.rows[j - 1]) {
      return absl::InvalidArgumentError("divergence: rows must be strictly increasing (row " +
                                        std::to_string(j) + ")");
    }
    if (d.rows[j] < 0 || d.rows[j] >= num_targets) {
      return absl::InvalidArgumentError("divergence: row " + std::to_string(j) + " (" + std::to_string(d.rows[j]) +
                                        ") is not a target of the batch (" + std::to_string(num_targets) + ")");
    }
  }
  std::vector<int64_t> row_of(targets.size(), -1);
  for (int64_t t = 0, target = 0, j = 0; t < static_cast<int64_t>(targets.size()) && j < n; ++t) {
    if (targets[t] < 0) continue;
    if (d.rows[j] == target++) row_of[t] = j++;
  }
  return row_of;
}

// The teacher logits of token rows [r0, r0 + n), uploaded; zeros where a row has no divergence
// row. Null when none of them has one.
Buffer ChunkTeacherLogits(Backend& be, const DivergenceTargets& d, const std::vector<int64_t>& row_of,
                          int64_t r0, int64_t n, int64_t vocab) {
  std::vector<float> host;
  for (int64_t t = r0; t < r0 + n; ++t) {
    if (row_of[t] < 0) continue;
    if (host.empty()) host.assign(n * vocab, 0.0f);
    std::copy_n(d.teacher_logits.begin() + row_of[t] * vocab, vocab, host.begin() + (t - r0) * vocab);
  }
  return host.empty() ? Buffer() : Upload(be, host);
}

}  // namespace

TokenBatch TokenBatch::FromSequences(const std::vector<std::vector<int32_t>>& sequences) {
  TokenBatch b;
  for (const auto& s : sequences) {
    b.tokens.insert(b.tokens.end(), s.begin(), s.end());
    b.offsets.push_back(static_cast<int64_t>(b.tokens.size()));
  }
  return b;
}

int64_t TokenBatch::num_targets() const {
  int64_t n = 0;
  for (int64_t s = 0; s < num_seqs(); ++s) n += std::max<int64_t>(0, offsets[s + 1] - offsets[s] - 1);
  return n;
}

// Parameter indices of one decoder layer (-1: absent).
struct CausalLM::Layer {
  int64_t index = 0;
  bool moe = false;
  int64_t moe_index = -1;
  int ln1 = -1, ln2 = -1;
  int q_w = -1, q_b = -1, k_w = -1, k_b = -1, v_w = -1, v_b = -1, o_w = -1, o_b = -1;
  int q_norm = -1, k_norm = -1;
  int qa_w = -1, qa_ln = -1, qb_w = -1, kva_w = -1, kva_ln = -1, kvb_w = -1;
  struct Mlp {
    int gate_w = -1, gate_b = -1, up_w = -1, up_b = -1, down_w = -1, down_b = -1;
    int64_t inter = 0;
  };
  Mlp mlp;                   // dense layers
  int router_w = -1, router_bias = -1;
  std::vector<Mlp> experts;  // MoE layers
  Mlp shared;                // shared experts (inter 0: none)
};

struct MlpActs {
  Buffer gate, up, act;
};

struct CausalLM::LayerActs {
  Buffer x_in;
  Buffer ln1, rstd1;
  Buffer q, k, v, q_pre, k_pre, q_rstd, k_rstd;
  Buffer qa, qa_n, qa_rstd, c, c_n, c_rstd, kvb;
  Buffer lse, attn;  // lse: [T, nh], the log-sum-exp of each attention row
  Buffer h1, ln2, rstd2;
  MlpActs mlp;
  // MoE
  Buffer logits, scores;
  Buffer experts;  // i32 [T, k]
  Buffer weights;  // f32 [T, k]
  // What Backend::MoeExperts saves for its backward (backend.h's MoeExpertActs): the token
  // permutation and the routed experts' activations, all on the device.
  Buffer moe_slots, moe_offsets;              // i32 [T*k], [E+1]
  Buffer moe_gate, moe_up, moe_act, moe_out;  // f32 [T*k, inter] x3, [T*k, hidden]
  MlpActs shared;

  // Drops everything but the layer input and the routing choice.
  void KeepInputOnly() {
    Buffer x = std::move(x_in);
    Buffer e = std::move(experts);
    Buffer w = std::move(weights);
    *this = LayerActs();
    x_in = std::move(x);
    experts = std::move(e);
    weights = std::move(w);
  }
};

struct CausalLM::State {
  TokenBatch batch;
  std::vector<int32_t> targets;      // host copy, to place the results
  Buffer tokens_d, positions_d, targets_d;  // i32 [T] on the device
  std::vector<LayerActs> layers;
  bool recompute = false;
  Buffer h_final, normed, rstd_final;
  // ForwardOptions::divergence (a copy: its teacher logits stay the caller's), and per token row
  // its row there, or -1.
  std::optional<DivergenceTargets> divergence;
  std::vector<int64_t> divergence_row;
};

namespace {

// Everything the layer code needs about the current batch.
struct BatchView {
  int64_t tokens;
  std::span<const int64_t> offsets;
  DevicePtr<const int32_t> positions;  // i32 [tokens]
  DevicePtr<const float> cos, sin;     // RoPE tables [positions, half]
};

}  // namespace

CausalLM::CausalLM(ModelConfig config, std::vector<Parameter> params, Backend& backend)
    : config_(std::move(config)), params_(std::move(params)), backend_(backend) {}

CausalLM::~CausalLM() = default;

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::Load(const std::string& dir, Backend& backend) {
  return Load(dir, backend, ServeOptions{});
}

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::Load(const std::string& dir, Backend& backend,
                                                 const ServeOptions& options) {
  // A directory with a checksum manifest (a training checkpoint) has its model files verified
  // before any is read: config.json, model.safetensors, and the shards and their index.
  GRPO_RETURN_IF_ERROR(VerifyChecksumManifest(dir, [](std::string_view name) {
                         return name == "config.json" || name.substr(0, 5) == "model";
                       }).status());
  GRPO_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::Load(dir));
  MemoryPlan plan;
  AddModelWeights(config, options.serve_format, /*training=*/false, "model", &plan);
  GRPO_RETURN_IF_ERROR(plan.Check("loading the model " + dir));
  GRPO_ASSIGN_OR_RETURN(std::vector<Parameter> params,
                        LoadParameters(config, dir, options.serve_format));
  return Create(std::move(config), std::move(params), backend, options);
}

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::Create(ModelConfig config, std::vector<Parameter> params,
                                                   Backend& backend, const ServeOptions& options) {
  GRPO_RETURN_IF_ERROR(ConvertMatrices(options.serve_format, &params));
  return Create(std::move(config), std::move(params), backend);
}

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::Create(ModelConfig config, std::vector<Parameter> params,
                                                   Backend& backend) {
  std::unique_ptr<CausalLM> m(new CausalLM(std::move(config), std::move(params), backend));
  GRPO_RETURN_IF_ERROR(m->Bind());
  return m;
}

static Shape ScaleShape(const Shape& matrix) {
  return {(matrix[0] + kFp8BlockSize - 1) / kFp8BlockSize,
          (matrix[1] + kFp8BlockSize - 1) / kFp8BlockSize};
}

// A projection matrix held for serving: BF16, or F8E4M3 with F32 block scales of the right
// shape and no NaN codes (the kernels widen codes branch-free and would not keep a NaN).
static absl::Status CheckServedMatrix(const Parameter& p) {
  const Tensor& v = p.value;
  const std::string what = "parameter '" + p.spec.name + "'";
  if (v.dtype() == DType::kBF16) return absl::OkStatus();
  if (v.dtype() != DType::kF8E4M3) {
    return absl::InvalidArgumentError(what + " is " + std::string(DTypeName(v.dtype())) +
                                   (v.dtype() == DType::kF32 ? " but read-only" : "") +
                                   "; projections are served as owned F32, BF16 or F8_E4M3");
  }
  const Shape want{(v.dim(0) + kFp8BlockSize - 1) / kFp8BlockSize,
                   (v.dim(1) + kFp8BlockSize - 1) / kFp8BlockSize};
  if (p.scale_inv.dtype() != DType::kF32 || p.scale_inv.shape() != want || !p.scale_inv.defined()) {
    return absl::InvalidArgumentError(what + " is F8_E4M3 and needs F32 scale_inv of shape " +
                                   ShapeToString(want) + ", has " +
                                   std::string(DTypeName(p.scale_inv.dtype())) + " " +
                                   ShapeToString(p.scale_inv.shape()));
  }
  const auto* q = static_cast<const uint8_t*>(v.raw_data());
  for (int64_t e = 0; e < v.numel(); ++e) {
    if ((q[e] & 0x7F) == 0x7F) {
      return absl::InvalidArgumentError(what + " holds an FP8 NaN code at element " + std::to_string(e));
    }
  }
  return absl::OkStatus();
}

absl::Status CausalLM::Bind() {
  const std::vector<ParameterSpec> specs = ExpectedParameters(config_);
  if (specs.size() != params_.size()) {
    return absl::InvalidArgumentError("expected " + std::to_string(specs.size()) + " parameters, got " +
                                   std::to_string(params_.size()));
  }
  quantized_ = false;
  for (size_t i = 0; i < specs.size(); ++i) {
    const Parameter& p = params_[i];
    const bool f32 = p.value.dtype() == DType::kF32 && p.value.writable();
    if (p.spec.name != specs[i].name || p.value.shape() != specs[i].shape ||
        (!f32 && !ServedNarrow(specs[i]))) {
      return absl::InvalidArgumentError("parameter " + std::to_string(i) + " ('" + p.spec.name +
                                     "') does not match the expected '" + specs[i].name + "' F32 " +
                                     ShapeToString(specs[i].shape));
    }
    if (!f32) GRPO_RETURN_IF_ERROR(CheckServedMatrix(p));
    quantized_ = quantized_ || !f32;
  }
  specs_.clear();
  for (const Parameter& p : params_) specs_.push_back(p.spec);
  const size_t n = params_.size();
  host_.assign(n, Tensor());
  host_scales_.assign(n, Tensor());
  values_.clear();
  values_.resize(n);
  scales_.clear();
  scales_.resize(n);
  dtypes_.assign(n, DType::kF32);
  for (size_t i = 0; i < n; ++i) Import(i, std::move(params_[i]));
  params_.clear();
  BindLayers();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::CreateOnDevice(ModelConfig config,
                                                           std::vector<DeviceParameter> values,
                                                           Backend& backend) {
  std::unique_ptr<CausalLM> m(new CausalLM(std::move(config), {}, backend));
  std::vector<ParameterSpec> specs = ExpectedParameters(m->config_);
  if (specs.size() != values.size()) {
    return absl::InvalidArgumentError("expected " + std::to_string(specs.size()) + " parameters, got " +
                                   std::to_string(values.size()));
  }
  const size_t n = specs.size();
  m->host_.assign(n, Tensor());
  m->host_scales_.assign(n, Tensor());
  m->values_.resize(n);
  m->scales_.resize(n);
  m->dtypes_.assign(n, DType::kF32);
  for (size_t i = 0; i < n; ++i) {
    DeviceParameter& v = values[i];
    const DType dtype = v.value.dtype();
    const bool narrow = ServedNarrow(specs[i]) && specs[i].shape.size() == 2 &&
                        (dtype == DType::kBF16 || dtype == DType::kF8E4M3);
    const int64_t scales = dtype == DType::kF8E4M3 ? NumElements(ScaleShape(specs[i].shape)) : 0;
    if (v.value.backend() != &backend || (dtype != DType::kF32 && !narrow) ||
        v.value.numel() != NumElements(specs[i].shape) || v.scale_inv.numel() != scales ||
        (scales > 0 && v.scale_inv.dtype() != DType::kF32)) {
      return absl::InvalidArgumentError("parameter " + std::to_string(i) + " ('" + specs[i].name + "') is " +
                                     std::string(DTypeName(dtype)) + " of " + std::to_string(v.value.numel()) +
                                     " elements with " + std::to_string(v.scale_inv.numel()) +
                                     " scales; expected " + ShapeToString(specs[i].shape) +
                                     " as F32 (or BF16 / F8_E4M3 with its block scales for a served matrix) on " +
                                     backend.name());
    }
    m->dtypes_[i] = dtype;
    m->quantized_ = m->quantized_ || dtype != DType::kF32;
    m->values_[i] = std::move(v.value);
    m->scales_[i] = std::move(v.scale_inv);
  }
  m->specs_ = std::move(specs);
  m->BindLayers();
  return m;
}

void CausalLM::BindLayers() {
  std::map<std::string, int> index;
  for (size_t i = 0; i < specs_.size(); ++i) index[specs_[i].name] = static_cast<int>(i);
  auto at = [&](const std::string& name) {
    auto it = index.find(name);
    return it == index.end() ? -1 : it->second;
  };
  auto bind_mlp = [&](const std::string& p, int64_t inter) {
    Layer::Mlp m;
    m.gate_w = at(p + "gate_proj.weight");
    m.gate_b = at(p + "gate_proj.bias");
    m.up_w = at(p + "up_proj.weight");
    m.up_b = at(p + "up_proj.bias");
    m.down_w = at(p + "down_proj.weight");
    m.down_b = at(p + "down_proj.bias");
    m.inter = inter;
    return m;
  };
  embed_ = at("model.embed_tokens.weight");
  final_norm_ = at("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_ : at("lm_head.weight");
  int64_t moe_index = 0;
  layers_.clear();
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    auto L = std::make_unique<Layer>();
    const std::string p = "model.layers." + std::to_string(l) + ".";
    L->index = l;
    L->ln1 = at(p + "input_layernorm.weight");
    L->ln2 = at(p + "post_attention_layernorm.weight");
    L->q_w = at(p + "self_attn.q_proj.weight");
    L->q_b = at(p + "self_attn.q_proj.bias");
    L->k_w = at(p + "self_attn.k_proj.weight");
    L->k_b = at(p + "self_attn.k_proj.bias");
    L->v_w = at(p + "self_attn.v_proj.weight");
    L->v_b = at(p + "self_attn.v_proj.bias");
    L->o_w = at(p + "self_attn.o_proj.weight");
    L->o_b = at(p + "self_attn.o_proj.bias");
    L->q_norm = at(p + "self_attn.q_norm.weight");
    L->k_norm = at(p + "self_attn.k_norm.weight");
    L->qa_w = at(p + "self_attn.q_a_proj.weight");
    L->qa_ln = at(p + "self_attn.q_a_layernorm.weight");
    L->qb_w = at(p + "self_attn.q_b_proj.weight");
    L->kva_w = at(p + "self_attn.kv_a_proj_with_mqa.weight");
    L->kva_ln = at(p + "self_attn.kv_a_layernorm.weight");
    L->kvb_w = at(p + "self_attn.kv_b_proj.weight");
    L->moe = config_.IsMoeLayer(l);
    if (L->moe) {
      L->moe_index = moe_index++;
      L->router_w = at(p + "mlp.gate.weight");
      L->router_bias = at(p + "mlp.gate.e_score_correction_bias");
      for (int64_t e = 0; e < config_.num_experts; ++e) {
        L->experts.push_back(bind_mlp(p + "mlp.experts." + std::to_string(e) + ".",
                                      config_.moe_intermediate_size));
      }
      if (config_.n_shared_experts > 0) {
        L->shared = bind_mlp(p + "mlp.shared_experts.",
                             config_.moe_intermediate_size * config_.n_shared_experts);
      }
    } else {
      L->mlp = bind_mlp(p + "mlp.", config_.intermediate_size);
    }
    layers_.push_back(std::move(L));
  }
  BindGradientReadyOrder();
  // RoPE tables for the usual lengths are uploaded with the weights, not by a decode step.
  RopeFor(std::min<int64_t>(config_.max_position_embeddings, 4096));
}

// The decoder layer a parameter name belongs to ("model.layers.<l>.*"), else -1.
static int64_t LayerOfParameter(const std::string& name) {
  static constexpr char kPrefix[] = "model.layers.";
  if (name.rfind(kPrefix, 0) != 0) return -1;
  size_t at = sizeof(kPrefix) - 1;
  int64_t layer = 0;
  const size_t digits = at;
  while (at < name.size() && name[at] >= '0' && name[at] <= '9') layer = layer * 10 + (name[at++] - '0');
  return at > digits && at < name.size() && name[at] == '.' ? layer : -1;
}

void CausalLM::BindGradientReadyOrder() {
  const int64_t num_layers = static_cast<int64_t>(layers_.size());
  std::vector<std::vector<size_t>> per_layer(layers_.size());
  std::vector<size_t> head, rest;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    const int64_t layer = LayerOfParameter(specs_[i].name);
    const int index = static_cast<int>(i);
    if (layer >= 0 && layer < num_layers) {
      per_layer[layer].push_back(i);
    } else if ((index == lm_head_ && lm_head_ != embed_) || index == final_norm_) {
      head.push_back(i);
    } else {
      rest.push_back(i);
    }
  }
  ready_order_.clear();
  ready_stage_.clear();
  auto add = [&](std::vector<size_t> group, int64_t stage) {
    if (group.empty()) return;
    ready_order_.push_back(std::move(group));
    ready_stage_.push_back(stage);
  };
  add(std::move(head), kHeadStage);
  for (int64_t l = num_layers - 1; l >= 0; --l) add(std::move(per_layer[l]), l);
  add(std::move(rest), kEndStage);
}

void CausalLM::ReleaseActivations() { state_.reset(); }

const RopeTables& CausalLM::RopeFor(int64_t positions) {
  if (positions > rope_.positions) {
    // Grow geometrically so a decode loop rebuilds O(log length) times, not every step.
    const int64_t grown = std::max({positions, 2 * rope_.positions, int64_t{256}});
    // Committed only once both uploads succeeded: an allocation failure leaves the old tables.
    RopeTables tables =
        BuildRopeTables(config_, std::min(grown, std::max(positions, config_.max_position_embeddings)));
    Buffer cos = Upload(backend_, tables.cos), sin = Upload(backend_, tables.sin);
    rope_ = std::move(tables);
    rope_cos_ = std::move(cos);
    rope_sin_ = std::move(sin);
  }
  return rope_;
}

// ---------------------------------------------------------------------------------------------
// Parameters on the device.

void CausalLM::Import(size_t i, Parameter p) {
  const Tensor& v = p.value;
  values_[i] = backend_.ImportHost(v.raw_data(), v.dtype(), v.numel());
  dtypes_[i] = v.dtype();
  const bool scaled = v.dtype() == DType::kF8E4M3 && p.scale_inv.numel() > 0;
  scales_[i] = scaled ? backend_.ImportHost(p.scale_inv.raw_data(), DType::kF32, p.scale_inv.numel())
                      : Buffer();
  // Keep the host storage only where the device aliases it (the CPU backend).
  host_[i] = values_[i].aliases_host() ? std::move(p.value) : Tensor();
  host_scales_[i] = scaled && scales_[i].aliases_host() ? std::move(p.scale_inv) : Tensor();
}


// Starts the download of one parameter's value (and FP8 block scales) into new host tensors;
// the bytes are valid after the backend's Synchronize.
static Parameter StartDownload(Backend& be, const ParameterSpec& spec, DType dtype,
                               const Buffer& value, const Buffer& scales) {
  Parameter p;
  p.spec = spec;
  p.value = Tensor::Zeros(dtype, spec.shape);
  be.CopyDeviceToHost(value.raw(), p.value.mutable_raw_data(), value.bytes());
  if (!scales.empty()) {
    p.scale_inv = Tensor::Zeros(DType::kF32, ScaleShape(spec.shape));
    be.CopyDeviceToHost(scales.raw(), p.scale_inv.mutable_raw_data(), scales.bytes());
  }
  return p;
}

std::vector<Parameter> CausalLM::ReadParameters() const {
  std::vector<Parameter> out;
  out.reserve(specs_.size());
  for (size_t i = 0; i < specs_.size(); ++i) {
    out.push_back(StartDownload(backend_, specs_[i], dtypes_[i], values_[i], scales_[i]));
  }
  backend_.Synchronize();
  return out;
}

Parameter CausalLM::ReadParameter(size_t i) const {
  Parameter p = StartDownload(backend_, specs_[i], dtypes_[i], values_[i], scales_[i]);
  backend_.Synchronize();
  return p;
}

absl::Status CausalLM::WriteParameter(size_t i, const Tensor& value, const Tensor& scale_inv) {
  if (i >= specs_.size()) {
    return absl::InvalidArgumentError("parameter index " + std::to_string(i) + " of " +
                                      std::to_string(specs_.size()));
  }
  const ParameterSpec& spec = specs_[i];
  compute_stale_ = true;
  if (value.shape() != spec.shape || !value.defined()) {
    return absl::InvalidArgumentError("new value of " + spec.name + " is " + ShapeToString(value.shape()) +
                                      ", expected " + ShapeToString(spec.shape));
  }
  // Same format, into memory the model owns: an upload into the existing buffer.
  const bool in_place = value.dtype() == dtypes_[i] && value.dtype() != DType::kF8E4M3 &&
                        (!values_[i].aliases_host() || host_[i].writable());
  if (in_place) {
    if (!values_[i].aliases_host() || host_[i].raw_data() != value.raw_data()) {
      backend_.CopyHostToDevice(value.raw_data(), values_[i].raw(), values_[i].bytes());
    }
    return absl::OkStatus();
  }
  Parameter p{spec, value, scale_inv};
  const bool f32 = value.dtype() == DType::kF32 && value.writable();
  if (!f32 && !ServedNarrow(spec)) {
    return absl::InvalidArgumentError("new value of " + spec.name + " must be F32, got " +
                                      std::string(DTypeName(value.dtype())));
  }
  if (!f32) GRPO_RETURN_IF_ERROR(CheckServedMatrix(p));
  Import(i, std::move(p));
  quantized_ = false;
  for (DType d : dtypes_) quantized_ = quantized_ || d != DType::kF32;
  return absl::OkStatus();
}

// An update's parameter index, checked against the model's count.
static absl::Status CheckUpdateIndex(int64_t i, size_t count) {
  if (i >= 0 && i < static_cast<int64_t>(count)) return absl::OkStatus();
  return absl::InvalidArgumentError("parameter update: index " + std::to_string(i) + " is outside [0, " +
                                    std::to_string(count) + ")");
}

absl::Status CausalLM::UpdateParameters(std::vector<std::pair<int64_t, Parameter>> updates) {
  for (const auto& [i, p] : updates) {
    GRPO_RETURN_IF_ERROR(CheckUpdateIndex(i, specs_.size()));
    const ParameterSpec& cur = specs_[i];
    const std::string what = "parameter update " + std::to_string(i) + " ('" + p.spec.name + "')";
    if (p.spec.name != cur.name) {
      return absl::InvalidArgumentError(what + ": the model's parameter " + std::to_string(i) + " is '" +
                                        cur.name + "'");
    }
    if (p.value.shape() != cur.shape || p.value.dtype() != dtypes_[i]) {
      return absl::InvalidArgumentError(what + " is " + std::string(DTypeName(p.value.dtype())) + " " +
                                        ShapeToString(p.value.shape()) + ", the model holds " +
                                        std::string(DTypeName(dtypes_[i])) + " " +
                                        ShapeToString(cur.shape));
    }
    if (p.value.dtype() != DType::kF32) GRPO_RETURN_IF_ERROR(CheckServedMatrix(p));
  }
  for (auto& [i, p] : updates) {
    GRPO_RETURN_IF_ERROR(WriteParameter(static_cast<size_t>(i), p.value, p.scale_inv));
  }
  return absl::OkStatus();
}

DeviceParameter QuantizeOnDevice(Backend& backend, const Buffer& f32, int64_t rows, int64_t cols,
                                 DType dtype, DevicePtr<int32_t> nonfinite) {
  DeviceParameter out;
  out.value = Buffer(&backend, f32.numel(), dtype);
  if (dtype == DType::kF8E4M3) {
    const Shape grid = ScaleShape({rows, cols});
    out.scale_inv = Buffer(&backend, grid[0] * grid[1], DType::kF32);
  }
  backend.QuantizeWeight(f32.data(), rows, cols, dtype, out.value.raw(),
                         out.scale_inv.empty() ? DevicePtr<float>() : out.scale_inv.data(), nonfinite);
  return out;
}

absl::Status CausalLM::UpdateParameterBuffers(std::vector<std::pair<int64_t, DeviceParameter>> updates) {
  for (const auto& [i, p] : updates) {
    GRPO_RETURN_IF_ERROR(CheckUpdateIndex(i, specs_.size()));
    const ParameterSpec& spec = specs_[i];
    const int64_t scales = dtypes_[i] == DType::kF8E4M3 ? NumElements(ScaleShape(spec.shape)) : 0;
    if (p.value.backend() != &backend_ || p.value.dtype() != dtypes_[i] ||
        p.value.numel() != NumElements(spec.shape) || p.scale_inv.numel() != scales ||
        (scales > 0 && p.scale_inv.dtype() != DType::kF32)) {
      return absl::InvalidArgumentError(
          "parameter update " + std::to_string(i) + " ('" + spec.name + "') is " +
          std::string(DTypeName(p.value.dtype())) + " of " + std::to_string(p.value.numel()) +
          " elements with " + std::to_string(p.scale_inv.numel()) + " scales on " +
          (p.value.backend() == nullptr ? "no backend" : p.value.backend()->name()) +
          "; the model holds " + std::string(DTypeName(dtypes_[i])) + " " + ShapeToString(spec.shape) +
          " on " + backend_.name());
    }
  }
  compute_stale_ = true;
  for (auto& [i, p] : updates) {
    values_[i] = std::move(p.value);
    scales_[i] = std::move(p.scale_inv);
    host_[i] = Tensor();
    host_scales_[i] = Tensor();
  }
  return absl::OkStatus();
}

absl::Status CausalLM::SetComputeDType(DType dtype) {
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError("compute dtype must be F32 or BF16, got " + std::string(DTypeName(dtype)));
  }
  if (dtype == DType::kBF16 && quantized_) {
    return absl::FailedPreconditionError(
        "bf16 compute copies need f32 masters; this model serves bf16/FP8 projections");
  }
  compute_dtype_ = dtype;
  compute_.clear();
  if (dtype == DType::kBF16) RefreshComputeWeights();
  return absl::OkStatus();
}

void CausalLM::RefreshComputeWeights() {
  compute_stale_ = false;
  if (compute_dtype_ == DType::kF32) return;
  compute_.resize(specs_.size());
  for (size_t i = 0; i < specs_.size(); ++i) {
    const ParameterSpec& spec = specs_[i];
    if (!ServedNarrow(spec) || spec.shape.size() != 2 || values_[i].dtype() != DType::kF32) {
      compute_[i] = Buffer();  // computed with as held
      continue;
    }
    if (compute_[i].empty()) compute_[i] = Buffer(&backend_, NumElements(spec.shape), compute_dtype_);
    backend_.QuantizeWeight(values_[i].data(), spec.shape[0], spec.shape[1], compute_dtype_,
                            compute_[i].raw(), nullptr, nullptr);
  }
}

int64_t CausalLM::compute_copy_bytes() const {
  int64_t total = 0;
  for (const Buffer& b : compute_) total += b.bytes();
  return total;
}

int64_t CausalLM::parameter_bytes() const {
  int64_t total = 0;
  for (size_t i = 0; i < values_.size(); ++i) total += values_[i].bytes() + scales_[i].bytes();
  return total;
}

std::vector<Buffer> CausalLM::NewGradients() const {
  std::vector<Buffer> grads;
  for (const ParameterSpec& spec : specs_) {
    if (!spec.trainable) {
      grads.emplace_back();
      continue;
    }
    grads.emplace_back(&backend_, NumElements(spec.shape));
    backend_.Zero(grads.back().data(), grads.back().numel());
  }
  return grads;
}

std::vector<Tensor> CausalLM::ReadGradients(const std::vector<Buffer>& grads) const {
  std::vector<Tensor> out;
  for (size_t i = 0; i < grads.size() && i < specs_.size(); ++i) {
    out.push_back(Tensor::Zeros(DType::kF32, specs_[i].shape));
    if (grads[i].empty()) continue;  // untrainable: zero
    backend_.CopyDeviceToHost(grads[i].data(), out.back().mutable_raw_data(), grads[i].bytes());
  }
  backend_.Synchronize();
  return out;
}

// ---------------------------------------------------------------------------------------------
// The layer computations. They are free functions over a context so the forward, the backward
// and the recomputation share one definition.
namespace {

struct Ctx {
  const ModelConfig& c;
  Backend& be;
  std::vector<Buffer>& values;  // device parameters
  const std::vector<Buffer>& scales;
  const std::vector<Buffer>& compute;  // bf16 compute copies (CausalLM::SetComputeDType) or empty
  const std::vector<ParameterSpec>& specs;
  std::vector<Buffer>* grads;  // null in forward
  const BatchView& batch;
  // Whether a backward will read this pass's activations (false: inference, or the first pass
  // of a forward with recompute; an MLP's SwiGLU activation is then not stored,
  // Backend::SwiGluLinearWeights).
  bool keep_activations = true;

  DevicePtr<float> P(int i) const { return i < 0 ? nullptr : values[i].data(); }
  // A projection matrix in whatever format the model computes with it: its compute copy when it
  // has one (mixed precision), else the value as held (f32, bf16, FP8 block).
  WeightView W(int i) const {
    const bool copy = static_cast<size_t>(i) < compute.size() && !compute[i].empty();
    const Buffer& v = copy ? compute[i] : values[i];
    WeightView w;
    w.dtype = v.dtype();
    w.data = v.raw();
    w.scales = copy || scales[i].empty() ? nullptr : scales[i].data();
    w.rows = specs[i].shape[0];
    w.cols = specs[i].shape[1];
    return w;
  }
  DevicePtr<float> G(int i) const {
    if (grads == nullptr || i < 0 || !specs[i].trainable) return nullptr;
    return (*grads)[i].data();
  }
  Buffer Buf(int64_t n) const { return Buffer(&be, n); }
};

// x[t] = row ids[t] of the embedding: copied from an f32 table, widened from a bf16 / FP8 one
// (a model serving narrow weights holds its embedding in that format).
// `ids` are the host token ids (launch metadata for the widening), `ids_d` the same uploaded.
void EmbedTokens(const Ctx& ctx, int embed, std::span<const int32_t> ids,
                 DevicePtr<const int32_t> ids_d, DevicePtr<float> x) {
  const int64_t h = ctx.c.hidden_size, T = static_cast<int64_t>(ids.size());
  if (ctx.W(embed).dtype == DType::kF32) {
    ctx.be.Embedding(ids_d, ctx.P(embed), x, T, h);
    return;
  }
  const WeightView table = ctx.W(embed);
  for (int64_t t = 0; t < T; ++t) ctx.be.WidenWeightRows(table, ids[t], ids[t] + 1, x + t * h);
}

}  // namespace

// Dense SwiGLU MLP: y = down(silu(gate(x)) * up(x)). The activation is stored for the backward
// only; the same bits either way.
static void MlpForward(const Ctx& ctx, const auto& m, DevicePtr<const float> x, int64_t n, DevicePtr<float> y, MlpActs& a) {
  const int64_t h = ctx.c.hidden_size, inter = m.inter;
  a.gate = ctx.Buf(n * inter);
  a.up = ctx.Buf(n * inter);
  const Backend::LinearOutput gate_up[] = {{ctx.W(m.gate_w), ctx.P(m.gate_b), a.gate.data(), inter},
                                            {ctx.W(m.up_w), ctx.P(m.up_b), a.up.data(), inter}};
  ctx.be.LinearWeightsSameInput(x, gate_up, n, h);
  if (!ctx.keep_activations) {
    ctx.be.SwiGluLinearWeights(a.gate.data(), a.up.data(), ctx.W(m.down_w), ctx.P(m.down_b), y, n,
                               inter, h);
    return;
  }
  a.act = ctx.Buf(n * inter);
  ctx.be.SwiGlu(a.gate.data(), a.up.data(), a.act.data(), n * inter);
  ctx.be.LinearWeights(a.act.data(), ctx.W(m.down_w), ctx.P(m.down_b), y, n, inter, h);
}

static void MlpBackward(const Ctx& ctx, const auto& m, DevicePtr<const float> x, DevicePtr<const float> dy, int64_t n,
                        const MlpActs& a, DevicePtr<float> dx, bool accumulate_dx) {
  const int64_t h = ctx.c.hidden_size, inter = m.inter;
  Buffer dact = ctx.Buf(n * inter), dgate = ctx.Buf(n * inter), dup = ctx.Buf(n * inter);
  ctx.be.LinearWeightsBackward(dy, a.act.data(), ctx.W(m.down_w), dact.data(), ctx.G(m.down_w),
                        ctx.G(m.down_b), n, inter, h, false);
  ctx.be.SwiGluBackward(dact.data(), a.gate.data(), a.up.data(), dgate.data(), dup.data(), n * inter);
  ctx.be.LinearWeightsBackward(dgate.data(), x, ctx.W(m.gate_w), dx, ctx.G(m.gate_w), ctx.G(m.gate_b), n,
                        h, inter, accumulate_dx);
  ctx.be.LinearWeightsBackward(dup.data(), x, ctx.W(m.up_w), dx, ctx.G(m.up_w), ctx.G(m.up_b), n, h,
                        inter, true);
}

// Standard attention's projections: a.ln1 -> a.q [T, nh, hd], a.k, a.v [T, nkv, hd], q and k
// normalized per head (qwen3; inputs kept in a.q_pre/a.k_pre for the backward) and rotated.
// RoPE over whole heads of a [T, heads, head_dim] q or k (Llama/Qwen: rotate half).
static RopeSpan QkvRopeSpan(int64_t T, int64_t heads, int64_t head_dim) {
  return {.rows = T, .heads = heads, .row_stride = heads * head_dim, .head_stride = head_dim,
          .offset = 0, .half = head_dim / 2, .layout = RopeLayout::kRotateHalf};
}

// MLA: the rope dims after the nope dims of each query head, [T, nh, nope + r], interleaved.
static RopeSpan MlaQueryRopeSpan(const ModelConfig& c, int64_t T) {
  const int64_t nh = c.num_attention_heads, dqk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  return {.rows = T, .heads = nh, .row_stride = nh * dqk, .head_stride = dqk,
          .offset = c.qk_nope_head_dim, .half = c.qk_rope_head_dim / 2,
          .layout = RopeLayout::kInterleaved};
}

// MLA: the shared rope key [T, r], interleaved.
static RopeSpan MlaKeyRopeSpan(const ModelConfig& c, int64_t T) {
  const int64_t r = c.qk_rope_head_dim;
  return {.rows = T, .heads = 1, .row_stride = r, .head_stride = r, .offset = 0, .half = r / 2,
          .layout = RopeLayout::kInterleaved};
}

template <typename LayerT, typename ActsT>
static void ProjectQkv(const Ctx& ctx, const LayerT& L, ActsT& a) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, nh = c.num_attention_heads;
  const int64_t hd = c.head_dim, nkv = c.num_key_value_heads;
  a.q = ctx.Buf(T * nh * hd);
  a.k = ctx.Buf(T * nkv * hd);
  a.v = ctx.Buf(T * nkv * hd);
  const Backend::LinearOutput qkv[] = {{ctx.W(L.q_w), ctx.P(L.q_b), a.q.data(), nh * hd},
                                        {ctx.W(L.k_w), ctx.P(L.k_b), a.k.data(), nkv * hd},
                                        {ctx.W(L.v_w), ctx.P(L.v_b), a.v.data(), nkv * hd}};
  be.LinearWeightsSameInput(a.ln1.data(), qkv, T, h);
  if (c.qk_norm) {
    const float eps = static_cast<float>(c.rms_norm_eps);
    a.q_pre = std::move(a.q);
    a.k_pre = std::move(a.k);
    a.q = ctx.Buf(T * nh * hd);
    a.k = ctx.Buf(T * nkv * hd);
    a.q_rstd = ctx.Buf(T * nh);
    a.k_rstd = ctx.Buf(T * nkv);
    be.RmsNorm(a.q_pre.data(), ctx.P(L.q_norm), a.q.data(), a.q_rstd.data(), T * nh, hd, eps);
    be.RmsNorm(a.k_pre.data(), ctx.P(L.k_norm), a.k.data(), a.k_rstd.data(), T * nkv, hd, eps);
  }
  be.Rope(a.q.data(), QkvRopeSpan(T, nh, hd), ctx.batch.positions, ctx.batch.cos, ctx.batch.sin,
          false);
  be.Rope(a.k.data(), QkvRopeSpan(T, nkv, hd), ctx.batch.positions, ctx.batch.cos, ctx.batch.sin,
          false);
}

// MLA's projections: a.ln1 -> a.q [T, nh, nope + r] (rope part rotated), the normalized latent
// a.c_n [T, kvl] (a.c, a.c_rstd and the q_lora intermediates kept for the backward) and the
// rotated shared rope key kpe [T, r].
template <typename LayerT, typename ActsT>
static void ProjectMla(const Ctx& ctx, const LayerT& L, ActsT& a, Buffer& kpe) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, nh = c.num_attention_heads;
  const int64_t nope = c.qk_nope_head_dim, r = c.qk_rope_head_dim;
  const int64_t dqk = nope + r, kvl = c.kv_lora_rank, ql = c.q_lora_rank;
  a.q = ctx.Buf(T * nh * dqk);
  if (ql > 0) {
    a.qa = ctx.Buf(T * ql);
    a.qa_n = ctx.Buf(T * ql);
    a.qa_rstd = ctx.Buf(T);
  }
  // Everything projected from ln1 in one call: q's first projection (q_a_proj, or q_proj
  // without a q LoRA) and kv_a_proj_with_mqa, whose rows are [latent (kvl) ; shared rope key
  // (r)]: two GEMMs on row slices.
  const WeightView kva = ctx.W(L.kva_w);
  a.c = ctx.Buf(T * kvl);
  kpe = ctx.Buf(T * r);
  const Backend::LinearOutput from_ln1[] = {
      ql > 0 ? Backend::LinearOutput{ctx.W(L.qa_w), nullptr, a.qa.data(), ql}
             : Backend::LinearOutput{ctx.W(L.q_w), nullptr, a.q.data(), nh * dqk},
      {kva.Rows(0, kvl), nullptr, a.c.data(), kvl},
      {kva.Rows(kvl, r), nullptr, kpe.data(), r}};
  be.LinearWeightsSameInput(a.ln1.data(), from_ln1, T, h);
  if (ql > 0) {
    be.RmsNorm(a.qa.data(), ctx.P(L.qa_ln), a.qa_n.data(), a.qa_rstd.data(), T, ql, kMlaLatentNormEps);
    be.LinearWeights(a.qa_n.data(), ctx.W(L.qb_w), nullptr, a.q.data(), T, ql, nh * dqk);
  }
  a.c_n = ctx.Buf(T * kvl);
  a.c_rstd = ctx.Buf(T);
  be.RmsNorm(a.c.data(), ctx.P(L.kva_ln), a.c_n.data(), a.c_rstd.data(), T, kvl, kMlaLatentNormEps);
  be.Rope(a.q.data(), MlaQueryRopeSpan(c, T), ctx.batch.positions, ctx.batch.cos, ctx.batch.sin,
          false);
  be.Rope(kpe.data(), MlaKeyRopeSpan(c, T), ctx.batch.positions, ctx.batch.cos, ctx.batch.sin,
          false);
}

// MLA's per-head keys and values from the latent: a.kvb = kv_b_proj(a.c_n), a.k [T, nh, nope + r]
// (each head's nope dims, then the shared rope key), a.v [T, nh, dv].
template <typename LayerT, typename ActsT>
static void ExpandMlaKeysValues(const Ctx& ctx, const LayerT& L, ActsT& a, const Buffer& kpe) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, nh = c.num_attention_heads;
  const int64_t nope = c.qk_nope_head_dim, r = c.qk_rope_head_dim, dv = c.v_head_dim;
  const int64_t dqk = nope + r, kvl = c.kv_lora_rank;
  a.kvb = ctx.Buf(T * nh * (nope + dv));
  be.LinearWeights(a.c_n.data(), ctx.W(L.kvb_w), nullptr, a.kvb.data(), T, kvl, nh * (nope + dv));
  a.k = ctx.Buf(T * nh * dqk);
  a.v = ctx.Buf(T * nh * dv);
  be.CopyRows(a.kvb.data(), nope + dv, a.k.data(), dqk, T * nh, nope, false);
  for (int64_t head = 0; head < nh; ++head) {
    be.CopyRows(kpe.data(), r, a.k.data() + head * dqk + nope, nh * dqk, T, r, false);
  }
  be.CopyRows(a.kvb.data() + nope, nope + dv, a.v.data(), dv, T * nh, dv, false);
}

// Attention block over packed sequences (training form): a.ln1 -> o [T, hidden].
template <typename LayerT, typename ActsT>
static void AttentionForward(const Ctx& ctx, const LayerT& L, ActsT& a, DevicePtr<float> o) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, nh = c.num_attention_heads;
  const float scale = static_cast<float>(c.AttentionScale());
  if (!c.mla) {
    const int64_t hd = c.head_dim, nkv = c.num_key_value_heads;
    ProjectQkv(ctx, L, a);
    a.lse = ctx.Buf(T * nh);
    a.attn = ctx.Buf(T * nh * hd);
    be.Attention(a.q.data(), a.k.data(), a.v.data(), a.attn.data(), a.lse.data(),
                 ctx.batch.offsets, {.nh = nh, .nkv = nkv, .dqk = hd, .dv = hd, .scale = scale});
    be.LinearWeights(a.attn.data(), ctx.W(L.o_w), ctx.P(L.o_b), o, T, nh * hd, h);
    return;
  }
  // MLA with keys and values expanded per head.
  const int64_t dv = c.v_head_dim, dqk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  Buffer kpe;
  ProjectMla(ctx, L, a, kpe);
  ExpandMlaKeysValues(ctx, L, a, kpe);
  a.lse = ctx.Buf(T * nh);
  a.attn = ctx.Buf(T * nh * dv);
  be.Attention(a.q.data(), a.k.data(), a.v.data(), a.attn.data(), a.lse.data(),
               ctx.batch.offsets, {.nh = nh, .nkv = nh, .dqk = dqk, .dv = dv, .scale = scale});
  be.LinearWeights(a.attn.data(), ctx.W(L.o_w), nullptr, o, T, nh * dv, h);
}

// Attention block backward: do [T, hidden] -> dln1 [T, hidden] (overwritten).
template <typename LayerT, typename ActsT>
static void AttentionBackward(const Ctx& ctx, const LayerT& L, ActsT& a, DevicePtr<const float> dout, DevicePtr<float> dln1) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, nh = c.num_attention_heads;
  const float scale = static_cast<float>(c.AttentionScale());
  const int64_t nkv = c.mla ? nh : c.num_key_value_heads;
  const int64_t dqk = c.qk_head_dim(), dv = c.value_head_dim();
  Buffer dattn = ctx.Buf(T * nh * dv);
  be.LinearWeightsBackward(dout, a.attn.data(), ctx.W(L.o_w), dattn.data(), ctx.G(L.o_w), ctx.G(L.o_b), T,
                    nh * dv, h, false);
  Buffer dq = ctx.Buf(T * nh * dqk), dk = ctx.Buf(T * nkv * dqk), dvb = ctx.Buf(T * nkv * dv);
  be.AttentionBackward(dattn.data(), a.q.data(), a.k.data(), a.v.data(), a.attn.data(),
                       a.lse.data(), dq.data(), dk.data(), dvb.data(), ctx.batch.offsets,
                       {.nh = nh, .nkv = nkv, .dqk = dqk, .dv = dv, .scale = scale});
  if (!c.mla) {
    const int64_t hd = c.head_dim;
    be.Rope(dq.data(), QkvRopeSpan(T, nh, hd), ctx.batch.positions, ctx.batch.cos,
            ctx.batch.sin, true);
    be.Rope(dk.data(), QkvRopeSpan(T, nkv, hd), ctx.batch.positions, ctx.batch.cos,
            ctx.batch.sin, true);
    if (c.qk_norm) {
      Buffer dq_pre = ctx.Buf(T * nh * hd), dk_pre = ctx.Buf(T * nkv * hd);
      be.RmsNormBackward(dq.data(), a.q_pre.data(), ctx.P(L.q_norm), a.q_rstd.data(), dq_pre.data(),
                         ctx.G(L.q_norm), T * nh, hd);
      be.RmsNormBackward(dk.data(), a.k_pre.data(), ctx.P(L.k_norm), a.k_rstd.data(), dk_pre.data(),
                         ctx.G(L.k_norm), T * nkv, hd);
      dq = std::move(dq_pre);
      dk = std::move(dk_pre);
    }
    be.LinearWeightsBackward(dq.data(), a.ln1.data(), ctx.W(L.q_w), dln1, ctx.G(L.q_w), ctx.G(L.q_b), T, h,
                      nh * hd, false);
    be.LinearWeightsBackward(dk.data(), a.ln1.data(), ctx.W(L.k_w), dln1, ctx.G(L.k_w), ctx.G(L.k_b), T, h,
                      nkv * hd, true);
    be.LinearWeightsBackward(dvb.data(), a.ln1.data(), ctx.W(L.v_w), dln1, ctx.G(L.v_w), ctx.G(L.v_b), T, h,
                      nkv * hd, true);
    return;
  }
  const int64_t nope = c.qk_nope_head_dim, r = c.qk_rope_head_dim;
  const int64_t kvl = c.kv_lora_rank, ql = c.q_lora_rank;
  be.Rope(dq.data(), MlaQueryRopeSpan(c, T), ctx.batch.positions, ctx.batch.cos, ctx.batch.sin,
          true);
  Buffer dkvb = ctx.Buf(T * nh * (nope + dv));
  be.CopyRows(dk.data(), dqk, dkvb.data(), nope + dv, T * nh, nope, false);
  be.CopyRows(dvb.data(), dv, dkvb.data() + nope, nope + dv, T * nh, dv, false);
  Buffer dkpe = ctx.Buf(T * r);
  be.Zero(dkpe.data(), T * r);
  for (int64_t head = 0; head < nh; ++head) {
    be.CopyRows(dk.data() + head * dqk + nope, nh * dqk, dkpe.data(), r, T, r, true);
  }
  be.Rope(dkpe.data(), MlaKeyRopeSpan(c, T), ctx.batch.positions, ctx.batch.cos, ctx.batch.sin,
          true);
  Buffer dc_n = ctx.Buf(T * kvl), dc = ctx.Buf(T * kvl);
  be.LinearWeightsBackward(dkvb.data(), a.c_n.data(), ctx.W(L.kvb_w), dc_n.data(), ctx.G(L.kvb_w), nullptr,
                    T, kvl, nh * (nope + dv), false);
  be.RmsNormBackward(dc_n.data(), a.c.data(), ctx.P(L.kva_ln), a.c_rstd.data(), dc.data(),
                     ctx.G(L.kva_ln), T, kvl);
  DevicePtr<float> g_kva = ctx.G(L.kva_w);
  const WeightView kva = ctx.W(L.kva_w);
  be.LinearWeightsBackward(dc.data(), a.ln1.data(), kva.Rows(0, kvl), dln1, g_kva, nullptr, T, h, kvl,
                           false);
  be.LinearWeightsBackward(dkpe.data(), a.ln1.data(), kva.Rows(kvl, r), dln1,
                    g_kva != nullptr ? g_kva + kvl * h : nullptr, nullptr, T, h, r, true);
  if (ql > 0) {
    Buffer dqa_n = ctx.Buf(T * ql), dqa = ctx.Buf(T * ql);
    be.LinearWeightsBackward(dq.data(), a.qa_n.data(), ctx.W(L.qb_w), dqa_n.data(), ctx.G(L.qb_w), nullptr,
                      T, ql, nh * dqk, false);
    be.RmsNormBackward(dqa_n.data(), a.qa.data(), ctx.P(L.qa_ln), a.qa_rstd.data(), dqa.data(),
                       ctx.G(L.qa_ln), T, ql);
    be.LinearWeightsBackward(dqa.data(), a.ln1.data(), ctx.W(L.qa_w), dln1, ctx.G(L.qa_w), nullptr, T, h,
                      ql, true);
  } else {
    be.LinearWeightsBackward(dq.data(), a.ln1.data(), ctx.W(L.q_w), dln1, ctx.G(L.q_w), nullptr, T, h,
                      nh * dqk, true);
  }
}

static RouterSpec RouterOf(const ModelConfig& c) {
  RouterSpec r;
  r.scoring = c.scoring == RouterScoring::kSoftmax ? RouterSpec::Scoring::kSoftmax
                                                   : RouterSpec::Scoring::kSigmoid;
  r.num_experts = c.num_experts;
  r.top_k = c.num_experts_per_tok;
  r.n_group = c.n_group;
  r.topk_group = c.topk_group;
  r.norm_topk_prob = c.norm_topk_prob;
  r.routed_scaling_factor = c.routed_scaling_factor;
  return r;
}

// Routes a.ln2's tokens into a.experts and a.weights (or takes a.experts when `forced`), on the
// device: nothing of the routing comes back to the host.
template <typename LayerT, typename ActsT>
static void RouteTokens(const Ctx& ctx, const LayerT& L, ActsT& a, bool forced) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, E = c.num_experts, k = c.num_experts_per_tok;
  a.logits = ctx.Buf(T * E);
  a.scores = ctx.Buf(T * E);
  be.Linear(a.ln2.data(), ctx.P(L.router_w), nullptr, a.logits.data(), T, h, E);
  if (!forced) a.experts = Buffer(&be, T * k, DType::kI32);
  a.weights = ctx.Buf(T * k);
  be.Route(RouterOf(c), a.logits.data(), ctx.P(L.router_bias), T, forced, a.experts.i32(),
           a.scores.data(), a.weights.data());
}

// The routed experts' weight views (and, in the backward, gradients) of a MoE layer.
struct ExpertViews {
  std::vector<WeightView> gate, up, down;
  std::vector<DevicePtr<float>> g_gate, g_up, g_down;
  MoeExpertWeights weights(const ModelConfig& c) const {
    return {gate, up, down, c.hidden_size, c.moe_intermediate_size};
  }
  MoeExpertGrads grads() const { return {g_gate, g_up, g_down}; }
};

template <typename LayerT>
static ExpertViews ExpertViewsOf(const Ctx& ctx, const LayerT& L) {
  ExpertViews v;
  for (const auto& m : L.experts) {
    v.gate.push_back(ctx.W(m.gate_w));
    v.up.push_back(ctx.W(m.up_w));
    v.down.push_back(ctx.W(m.down_w));
    if (ctx.grads == nullptr) continue;
    v.g_gate.push_back(ctx.G(m.gate_w));
    v.g_up.push_back(ctx.G(m.up_w));
    v.g_down.push_back(ctx.G(m.down_w));
  }
  return v;
}

// The device buffers of a.moe_*, as MoeExperts takes them.
template <typename ActsT>
static MoeExpertActs MoeActsOf(ActsT& a) {
  return {a.moe_slots.i32(), a.moe_offsets.i32(), a.moe_gate.data(), a.moe_up.data(),
          a.moe_act.data(), a.moe_out.data()};
}

// MoE block: x = a.ln2 -> y [T, hidden] (overwritten). Uses a.experts when `forced`.
template <typename LayerT, typename ActsT>
static void MoeForward(const Ctx& ctx, const LayerT& L, ActsT& a, bool forced, DevicePtr<float> y) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, E = c.num_experts;
  const int64_t k = c.num_experts_per_tok, inter = c.moe_intermediate_size;
  RouteTokens(ctx, L, a, forced);
  a.moe_slots = Buffer(&be, T * k, DType::kI32);
  a.moe_offsets = Buffer(&be, E + 1, DType::kI32);
  a.moe_gate = ctx.Buf(T * k * inter);
  a.moe_up = ctx.Buf(T * k * inter);
  a.moe_act = ctx.Buf(T * k * inter);
  a.moe_out = ctx.Buf(T * k * h);
  const ExpertViews views = ExpertViewsOf(ctx, L);
  be.MoeExperts(views.weights(c), a.ln2.data(), a.experts.i32(), a.weights.data(), T, k,
                MoeActsOf(a), y);
  if (L.shared.inter > 0) {
    Buffer ys = ctx.Buf(T * h);
    MlpForward(ctx, L.shared, a.ln2.data(), T, ys.data(), a.shared);
    be.Add(ys.data(), y, T * h);
  }
}

template <typename LayerT, typename ActsT>
static void MoeBackward(const Ctx& ctx, const LayerT& L, ActsT& a, DevicePtr<const float> dy, DevicePtr<float> dx) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, E = c.num_experts, k = c.num_experts_per_tok;
  Buffer dweights = ctx.Buf(T * k);
  const ExpertViews views = ExpertViewsOf(ctx, L);
  be.MoeExpertsBackward(views.weights(c), views.grads(), a.ln2.data(), a.weights.data(),
                        MoeActsOf(a), dy, T, k, dx, dweights.data());
  if (L.shared.inter > 0) MlpBackward(ctx, L.shared, a.ln2.data(), dy, T, a.shared, dx, true);
  Buffer dlogits = ctx.Buf(T * E);
  be.RouteBackward(RouterOf(c), a.scores.data(), a.experts.i32(), dweights.data(), T, dlogits.data());
  be.LinearBackward(dlogits.data(), a.ln2.data(), ctx.P(L.router_w), dx, ctx.G(L.router_w), nullptr,
                    T, h, E, true);
}

// One decoder layer: a.x_in -> y (overwritten). `attention(a, o)` computes the attention block
// from a.ln1 (over packed sequences, or over a KV cache).
template <typename LayerT, typename ActsT, typename AttentionFn>
static void LayerForward(const Ctx& ctx, const LayerT& L, ActsT& a, bool forced_routing, DevicePtr<float> y,
                         AttentionFn&& attention) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  a.ln1 = ctx.Buf(T * h);
  a.rstd1 = ctx.Buf(T);
  be.RmsNorm(a.x_in.data(), ctx.P(L.ln1), a.ln1.data(), a.rstd1.data(), T, h, eps);
  a.h1 = ctx.Buf(T * h);
  attention(a, a.h1.data());
  be.Add(a.x_in.data(), a.h1.data(), T * h);
  a.ln2 = ctx.Buf(T * h);
  a.rstd2 = ctx.Buf(T);
  be.RmsNorm(a.h1.data(), ctx.P(L.ln2), a.ln2.data(), a.rstd2.data(), T, h, eps);
  if (L.moe) {
    MoeForward(ctx, L, a, forced_routing, y);
  } else {
    MlpForward(ctx, L.mlp, a.ln2.data(), T, y, a.mlp);
  }
  be.Add(a.h1.data(), y, T * h);
}

// dy -> dx (overwritten).
template <typename LayerT, typename ActsT>
static void LayerBackward(const Ctx& ctx, const LayerT& L, ActsT& a, DevicePtr<const float> dy, DevicePtr<float> dx) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size;
  Buffer dln2 = ctx.Buf(T * h), dh1 = ctx.Buf(T * h);
  if (L.moe) {
    MoeBackward(ctx, L, a, dy, dln2.data());
  } else {
    MlpBackward(ctx, L.mlp, a.ln2.data(), dy, T, a.mlp, dln2.data(), false);
  }
  be.RmsNormBackward(dln2.data(), a.h1.data(), ctx.P(L.ln2), a.rstd2.data(), dh1.data(), ctx.G(L.ln2),
                     T, h);
  be.Add(dy, dh1.data(), T * h);
  AttentionBackward(ctx, L, a, dh1.data(), dln2.data());  // dln2 reused as dln1
  be.RmsNormBackward(dln2.data(), a.x_in.data(), ctx.P(L.ln1), a.rstd1.data(), dx, ctx.G(L.ln1), T, h);
  be.Add(dh1.data(), dx, T * h);
}

// Layer `layer` of the paged KV cache, and the block tables of a step's sequences.
struct StepCache {
  const KvCachePool& pool;
  int64_t layer;
  const BlockTables& tables;
};

// Attention of new tokens over the KV cache: a.ln1 -> o [Tn, hidden]. The new tokens' rows are
// written into the cache first, then every new token attends over its sequence's positions.
template <typename LayerT, typename ActsT>
static void StepAttention(const Ctx& ctx, const LayerT& L, ActsT& a, const StepInput& in,
                          const StepCache& kv, DevicePtr<float> o) {
  const ModelConfig& c = ctx.c;
  Backend& be = ctx.be;
  const int64_t T = ctx.batch.tokens, h = c.hidden_size, nh = c.num_attention_heads;
  const float scale = static_cast<float>(c.AttentionScale());
  auto write = [&](DevicePtr<const float> src, int64_t stride, int64_t col, int64_t cols) {
    be.WriteCache(src, stride, kv.pool, kv.layer, kv.tables, in.offsets, in.past, col, cols);
  };
  if (!c.mla) {
    const int64_t hd = c.head_dim, nkv = c.num_key_value_heads;
    ProjectQkv(ctx, L, a);
    write(a.k.data(), nkv * hd, 0, nkv * hd);
    write(a.v.data(), nkv * hd, nkv * hd, nkv * hd);
    a.attn = ctx.Buf(T * nh * hd);
    be.CachedAttention(a.q.data(), a.attn.data(), in.offsets, in.past, kv.pool, kv.layer, kv.tables,
                       {.nh = nh, .nkv = nkv, .dqk = hd, .dv = hd, .scale = scale},
                       {.k_offset = 0, .v_offset = nkv * hd});
    be.LinearWeights(a.attn.data(), ctx.W(L.o_w), ctx.P(L.o_b), o, T, nh * hd, h);
    return;
  }
  const int64_t nope = c.qk_nope_head_dim, r = c.qk_rope_head_dim, dv = c.v_head_dim;
  const int64_t dqk = nope + r, kvl = c.kv_lora_rank, lat = kvl + r;
  Buffer kpe;
  ProjectMla(ctx, L, a, kpe);
  if (be.batch_invariant()) {
    // MLA as training computes it: per-head keys and values expanded from the latent, cached
    // and attended over (kv_cache.h's batch-invariant row).
    ExpandMlaKeysValues(ctx, L, a, kpe);
    write(a.k.data(), nh * dqk, 0, nh * dqk);
    write(a.v.data(), nh * dv, nh * dqk, nh * dv);
    a.attn = ctx.Buf(T * nh * dv);
    be.CachedAttention(a.q.data(), a.attn.data(), in.offsets, in.past, kv.pool, kv.layer, kv.tables,
                       {.nh = nh, .nkv = nh, .dqk = dqk, .dv = dv, .scale = scale},
                       {.k_offset = 0, .v_offset = nh * dqk});
    be.LinearWeights(a.attn.data(), ctx.W(L.o_w), nullptr, o, T, nh * dv, h);
    return;
  }
  // MLA, absorbed: scores = (W_k(h)^T q_nope) . c + q_pe . k_pe; output = W_v(h) (sum p c).
  write(a.c_n.data(), kvl, 0, kvl);
  write(kpe.data(), r, kvl, r);
  // kv_b_proj's rows of one head: read in place when f32, else widened into a one-head tile.
  const WeightView kvb = ctx.W(L.kvb_w);
  Buffer tile = kvb.dtype == DType::kF32 ? Buffer() : ctx.Buf(std::max(nope, dv) * kvl);
  auto head_rows = [&](int64_t row0, int64_t count) -> DevicePtr<const float> {
    if (kvb.dtype == DType::kF32) return kvb.f32() + row0 * kvl;
    be.WidenWeightRows(kvb, row0, row0 + count, tile.data());
    return tile.data();
  };
  Buffer q_abs = ctx.Buf(T * nh * lat);
  for (int64_t head = 0; head < nh; ++head) {
    be.Gemm(false, false, T, kvl, nope, 1.0f, a.q.data() + head * dqk, nh * dqk,
            head_rows(head * (nope + dv), nope), kvl, 0.0f, q_abs.data() + head * lat, nh * lat);
    be.CopyRows(a.q.data() + head * dqk + nope, nh * dqk, q_abs.data() + head * lat + kvl, nh * lat,
                T, r, false);
  }
  Buffer latent_out = ctx.Buf(T * nh * kvl);
  a.attn = ctx.Buf(T * nh * dv);
  // Every head reads the one latent row: keys are [latent ; rope key], values the latent.
  be.CachedAttention(q_abs.data(), latent_out.data(), in.offsets, in.past, kv.pool, kv.layer, kv.tables,
                     {.nh = nh, .nkv = 1, .dqk = lat, .dv = kvl, .scale = scale},
                     {.k_offset = 0, .v_offset = 0});
  for (int64_t head = 0; head < nh; ++head) {
    be.Gemm(false, true, T, dv, kvl, 1.0f, latent_out.data() + head * kvl, nh * kvl,
            head_rows(head * (nope + dv) + nope, dv), kvl, 0.0f, a.attn.data() + head * dv, nh * dv);
  }
  be.LinearWeights(a.attn.data(), ctx.W(L.o_w), nullptr, o, T, nh * dv, h);
}

// ---------------------------------------------------------------------------------------------
// Checks and bookkeeping shared by Forward and ForwardStep.

static absl::Status CheckTokens(std::span<const int32_t> tokens, int64_t vocab) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab) {
      return absl::InvalidArgumentError("token id " + std::to_string(tokens[t]) + " at position " +
                                     std::to_string(t) + " is outside the vocabulary [0, " +
                                     std::to_string(vocab) + ")");
    }
  }
  return absl::OkStatus();
}

// A forced routing must cover every MoE layer and token with top_k valid expert ids.
static absl::Status CheckForcedRouting(const Routing* f, const ModelConfig& c, int64_t tokens) {
  if (f == nullptr) return absl::OkStatus();
  const int64_t num_moe = c.NumMoeLayers(), k = c.num_experts_per_tok;
  if (f->num_moe_layers != num_moe || f->num_tokens != tokens || f->top_k != k ||
      static_cast<int64_t>(f->experts.size()) != num_moe * tokens * k) {
    return absl::InvalidArgumentError("forced routing has shape [" + std::to_string(f->num_moe_layers) +
                                   ", " + std::to_string(f->num_tokens) + ", " + std::to_string(f->top_k) +
                                   "], the model and batch need [" + std::to_string(num_moe) + ", " +
                                   std::to_string(tokens) + ", " + std::to_string(k) + "]");
  }
  for (int32_t e : f->experts) {
    if (e < 0 || e >= c.num_experts) {
      return absl::InvalidArgumentError("forced routing names expert " + std::to_string(e) + " of " +
                                     std::to_string(c.num_experts));
    }
  }
  // A token's k experts are distinct, as the router chooses them (Backend::MoeExperts relies
  // on it).
  for (size_t row = 0; row < f->experts.size(); row += k) {
    for (int64_t j = 1; j < k; ++j) {
      for (int64_t i = 0; i < j; ++i) {
        if (f->experts[row + i] != f->experts[row + j]) continue;
        return absl::InvalidArgumentError(
            "forced routing names expert " + std::to_string(f->experts[row + j]) + " twice for token " +
            std::to_string((row / k) % tokens) + " of MoE layer " + std::to_string(row / k / tokens));
      }
    }
  }
  return absl::OkStatus();
}

// Synchronizes the backend when the pass it guards leaves by an exception (an allocation
// failure), so that no download still in flight (RecordRouting's) lands in host memory the
// unwinding frees. Declared after the outputs it protects, so it runs before they go.
class SyncOnUnwind {
 public:
  explicit SyncOnUnwind(Backend& be) : be_(be), exceptions_(std::uncaught_exceptions()) {}
  ~SyncOnUnwind() {
    if (std::uncaught_exceptions() > exceptions_) be_.Synchronize();
  }
  SyncOnUnwind(const SyncOnUnwind&) = delete;
  SyncOnUnwind& operator=(const SyncOnUnwind&) = delete;

 private:
  Backend& be_;
  int exceptions_;
};

static Routing EmptyRouting(const ModelConfig& c, int64_t tokens) {
  Routing r;
  const int64_t num_moe = c.NumMoeLayers(), k = c.num_experts_per_tok;
  if (num_moe == 0) return r;
  r.num_moe_layers = num_moe;
  r.num_tokens = tokens;
  r.top_k = k;
  r.experts.resize(num_moe * tokens * k);
  r.weights.resize(num_moe * tokens * k);
  return r;
}

// Puts the forced experts of this MoE layer into a.experts; returns whether routing is forced.
// (An upload of tokens * k ids.)
template <typename LayerT, typename ActsT>
static bool UseForcedRouting(Backend& be, const LayerT& L, const Routing* forced, int64_t tokens,
                             ActsT& a) {
  if (!L.moe || forced == nullptr) return false;
  const int64_t k = forced->top_k;
  a.experts = Upload(be, std::span<const int32_t>(forced->experts).subspan(L.moe_index * tokens * k,
                                                                            tokens * k));
  return true;
}

// Starts the download of this MoE layer's choice and weights into `out` (valid after the
// backend's Synchronize).
template <typename LayerT, typename ActsT>
static void RecordRouting(Backend& be, const LayerT& L, const ActsT& a, Routing* out) {
  if (!L.moe || out->experts.empty()) return;  // a dense layer, or routing not asked for
  const int64_t at = L.moe_index * out->num_tokens * out->top_k;
  be.CopyDeviceToHost(a.experts.i32(), out->experts.data() + at, a.experts.bytes());
  be.CopyDeviceToHost(a.weights.data(), out->weights.data() + at, a.weights.bytes());
}

// ---------------------------------------------------------------------------------------------

// Every sequence within max_position_embeddings, and the activations within the memory budget.
static absl::Status CheckForwardFits(const ModelConfig& c, const TokenBatch& batch, const ForwardOptions& options) {
  int64_t longest = 0;
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    const int64_t len = batch.offsets[s + 1] - batch.offsets[s];
    if (len > c.max_position_embeddings) {
      return absl::InvalidArgumentError("sequence " + std::to_string(s) + " has " + std::to_string(len) +
                                        " tokens, more than the model's max_position_embeddings (" +
                                        std::to_string(c.max_position_embeddings) + ")");
    }
    longest = std::max(longest, len);
  }
  MemoryPlan plan;
  plan.Add("activations of " + std::to_string(batch.num_tokens()) + " tokens in " +
               std::to_string(batch.num_seqs()) + " sequences (the longest " + std::to_string(longest) +
               " tokens), " + ModelSizeKeys(c),
           ActivationBytes(c, batch.num_tokens(), options.keep_activations, options.recompute));
  if (options.return_logits) {
    plan.Add("the returned logits of " + std::to_string(batch.num_targets()) + " positions x vocab_size " +
                 std::to_string(c.vocab_size),
             CheckedInt64(batch.num_targets()) * c.vocab_size * int64_t{4});
  }
  return plan.Check("a forward pass");
}

absl::StatusOr<ForwardOutput> CausalLM::Forward(const TokenBatch& batch, const ForwardOptions& options) {
  const ModelConfig& c = config_;
  const int64_t T = batch.num_tokens(), h = c.hidden_size, V = c.vocab_size;
  if (batch.offsets.empty() || batch.offsets.front() != 0 || batch.offsets.back() != T) {
    return absl::InvalidArgumentError("batch offsets must start at 0 and end at the token count");
  }
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    if (batch.offsets[s + 1] < batch.offsets[s]) return absl::InvalidArgumentError("batch offsets decrease");
  }
  if (options.keep_activations && quantized_) {
    return absl::FailedPreconditionError(
        "Forward with keep_activations (training) needs f32 weights; this model serves bf16/FP8 "
        "projections (ServeOptions.serve_format): load or create it with WeightFormat::kF32");
  }
  GRPO_RETURN_IF_ERROR(CheckTokens(batch.tokens, V));
  GRPO_RETURN_IF_ERROR(CheckForcedRouting(options.forced_routing, c, T));
  GRPO_RETURN_IF_ERROR(CheckForwardFits(c, batch, options));
  if (compute_stale_) RefreshComputeWeights();

  auto state = std::make_unique<State>();
  state->batch = batch;
  state->recompute = options.recompute;
  std::vector<int32_t> positions(T);
  state->targets.assign(T, -1);
  int64_t max_len = 1;
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    const int64_t start = batch.offsets[s], end = batch.offsets[s + 1];
    max_len = std::max(max_len, end - start);
    for (int64_t t = start; t < end; ++t) {
      positions[t] = static_cast<int32_t>(t - start);
      if (t + 1 < end) state->targets[t] = batch.tokens[t + 1];
    }
  }
  if (options.divergence != nullptr) {
    GRPO_ASSIGN_OR_RETURN(state->divergence_row, DivergenceRowOfToken(*options.divergence, state->targets, V));
    state->divergence = *options.divergence;
  }
  state->tokens_d = Upload(backend_, batch.tokens);
  state->positions_d = Upload(backend_, positions);
  state->targets_d = Upload(backend_, state->targets);
  RopeFor(max_len);
  const BatchView view{T, state->batch.offsets, state->positions_d.i32(), rope_cos_.data(),
                       rope_sin_.data()};
  Ctx ctx{c, backend_, values_, scales_, compute_, specs_, nullptr, view};
  // With recompute the backward runs the forward again, keeping everything then.
  ctx.keep_activations = options.keep_activations && !options.recompute;

  Buffer x = ctx.Buf(T * h);
  EmbedTokens(ctx, embed_, batch.tokens, state->tokens_d.i32(), x.data());
  ForwardOutput out;
  const SyncOnUnwind sync_on_unwind(backend_);
  out.routing = EmptyRouting(c, T);
  state->layers.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = *layers_[l];
    LayerActs local;
    LayerActs& a = options.keep_activations ? state->layers[l] : local;
    a.x_in = std::move(x);
    const bool forced = UseForcedRouting(backend_, L, options.forced_routing, T, a);
    Buffer y = ctx.Buf(T * h);
    LayerForward(ctx, L, a, forced, y.data(),
                 [&](LayerActs& acts, DevicePtr<float> o) { AttentionForward(ctx, L, acts, o); });
    RecordRouting(backend_, L, a, &out.routing);
    if (options.keep_activations && options.recompute) {
      a.KeepInputOnly();
    } else if (!options.keep_activations) {
      a.x_in = Buffer();
    }
    x = std::move(y);
  }
  Buffer normed = ctx.Buf(T * h), rstd = ctx.Buf(T);
  backend_.RmsNorm(x.data(), ctx.P(final_norm_), normed.data(), rstd.data(), T, h,
                   static_cast<float>(c.rms_norm_eps));
  // The output head in row chunks: each chunk's logits are consumed while in cache, and the
  // full [T, vocab] logits are never held (the backward recomputes them chunk by chunk).
  // Log-probs and entropies stay on the device until the one download at the end.
  Buffer lp_d = ctx.Buf(T), ent_d = options.need_entropy ? ctx.Buf(T) : Buffer();
  const bool divergence = state->divergence.has_value();
  Buffer div_d = divergence ? ctx.Buf(T) : Buffer();
  std::vector<float> chunk_logits;  // return_logits: one chunk's, downloaded, then its target rows kept
  if (options.return_logits) out.logits.reserve(batch.num_targets() * V);
  const int64_t chunk = LogitChunkRows(V);
  Buffer logits = ctx.Buf(std::min(T, chunk) * V);
  for (int64_t r0 = 0; r0 < T; r0 += chunk) {
    const int64_t n = std::min(chunk, T - r0);
    backend_.LinearWeights(normed.data() + r0 * h, ctx.W(lm_head_), nullptr, logits.data(), n, h,
                           V);
    backend_.LogSoftmaxTargets(logits.data(), state->targets_d.i32() + r0, lp_d.data() + r0,
                               options.need_entropy ? ent_d.data() + r0 : nullptr, n, V);
    if (divergence) {
      const Buffer teacher = ChunkTeacherLogits(backend_, *state->divergence, state->divergence_row, r0, n, V);
      if (teacher.numel() > 0) {
        backend_.DivergenceRows(state->divergence->kind, logits.data(), teacher.data(), div_d.data() + r0, n, V);
      }
    }
    if (options.return_logits) {
      chunk_logits.resize(n * V);
      backend_.CopyDeviceToHost(logits.data(), chunk_logits.data(), n * V * sizeof(float));
      backend_.Synchronize();
      for (int64_t t = r0; t < r0 + n; ++t) {
        if (state->targets[t] < 0) continue;
        out.logits.insert(out.logits.end(), chunk_logits.begin() + (t - r0) * V, chunk_logits.begin() + (t - r0 + 1) * V);
      }
    }
  }
  std::vector<float> lp(T), ent(options.need_entropy ? T : 0), div(divergence ? T : 0);
  backend_.CopyDeviceToHost(lp_d.data(), lp.data(), lp_d.bytes());
  if (options.need_entropy) backend_.CopyDeviceToHost(ent_d.data(), ent.data(), ent_d.bytes());
  if (divergence) backend_.CopyDeviceToHost(div_d.data(), div.data(), div_d.bytes());
  backend_.Synchronize();  // also completes RecordRouting's downloads
  out.logprobs.reserve(batch.num_targets());
  if (divergence) out.divergence.resize(state->divergence->rows.size());
  for (int64_t t = 0; t < T; ++t) {
    if (state->targets[t] < 0) continue;
    out.logprobs.push_back(lp[t]);
    if (options.need_entropy) out.entropy.push_back(ent[t]);
    if (divergence && state->divergence_row[t] >= 0) out.divergence[state->divergence_row[t]] = div[t];
  }
  if (options.keep_activations) {
    state->h_final = std::move(x);
    state->normed = std::move(normed);
    state->rstd_final = std::move(rstd);
    state_ = std::move(state);
  } else {
    state_.reset();
  }
  return out;
}

absl::Status CausalLM::Backward(std::span<const float> weights, std::vector<Buffer>* grads,
                                const GradientsReady& on_ready) {
  return Backward(weights, {}, grads, on_ready);
}

absl::Status CausalLM::Backward(std::span<const float> weights, std::span<const float> divergence_weights,
                                std::vector<Buffer>* grads, const GradientsReady& on_ready) {
  if (quantized_) {
    return absl::FailedPreconditionError(
        "Backward needs f32 weights; this model serves bf16/FP8 projections "
        "(ServeOptions.serve_format): load or create it with WeightFormat::kF32");
  }
  if (state_ == nullptr) {
    return absl::FailedPreconditionError("Backward needs a Forward with keep_activations first");
  }
  State& st = *state_;
  const ModelConfig& c = config_;
  const int64_t T = st.batch.num_tokens(), h = c.hidden_size, V = c.vocab_size;
  if (static_cast<int64_t>(weights.size()) != st.batch.num_targets()) {
    return absl::InvalidArgumentError("Backward got " + std::to_string(weights.size()) +
                                   " weights for " + std::to_string(st.batch.num_targets()) + " targets");
  }
  const size_t divergence_rows = st.divergence ? st.divergence->rows.size() : 0;
  if (divergence_weights.size() != divergence_rows) {
    return absl::InvalidArgumentError("Backward got " + std::to_string(divergence_weights.size()) +
                                      " divergence weights for " + std::to_string(divergence_rows) +
                                      " divergence rows of the Forward");
  }
  if (grads->empty()) *grads = NewGradients();
  if (grads->size() != specs_.size()) {
    return absl::InvalidArgumentError("Backward got " + std::to_string(grads->size()) +
                                      " gradient buffers for " + std::to_string(specs_.size()) +
                                      " parameters");
  }
  std::vector<float> row_weights(T, 0.0f);
  for (int64_t t = 0, i = 0; t < T; ++t) {
    if (st.targets[t] >= 0) row_weights[t] = weights[i++];
  }
  const Buffer row_weights_d = Upload(backend_, row_weights);
  // The divergence weights by token row (0 where a row has no divergence row), like row_weights.
  Buffer div_weights_d;
  if (st.divergence) {
    std::vector<float> div_row_weights(T, 0.0f);
    for (int64_t t = 0; t < T; ++t) {
      if (st.divergence_row[t] >= 0) div_row_weights[t] = divergence_weights[st.divergence_row[t]];
    }
    div_weights_d = Upload(backend_, div_row_weights);
  }
  // Forward sized the RoPE tables for this batch already.
  const BatchView view{T, st.batch.offsets, st.positions_d.i32(), rope_cos_.data(),
                       rope_sin_.data()};
  Ctx ctx{c, backend_, values_, scales_, compute_, specs_, grads, view};
  size_t next_ready = 0;  // the next group of ready_order_ to announce
  auto announce = [&](int64_t stage) {
    for (; next_ready < ready_order_.size() && ready_stage_[next_ready] == stage; ++next_ready) {
      if (on_ready) on_ready(ready_order_[next_ready]);
    }
  };

  Buffer dnormed = ctx.Buf(T * h), dh = ctx.Buf(T * h);
  {
    const int64_t chunk = LogitChunkRows(V);
    Buffer logits = ctx.Buf(std::min(T, chunk) * V), dlogits = ctx.Buf(std::min(T, chunk) * V);
    for (int64_t r0 = 0; r0 < T; r0 += chunk) {
      const int64_t n = std::min(chunk, T - r0);
      DevicePtr<const float> normed = st.normed.data() + r0 * h;
      backend_.LinearWeights(normed, ctx.W(lm_head_), nullptr, logits.data(), n, h, V);
      backend_.LogSoftmaxTargetsBackward(logits.data(), st.targets_d.i32() + r0,
                                         row_weights_d.data() + r0, dlogits.data(), n, V);
      if (st.divergence) {
        const Buffer teacher = ChunkTeacherLogits(backend_, *st.divergence, st.divergence_row, r0, n, V);
        if (teacher.numel() > 0) {
          backend_.DivergenceRowsBackward(st.divergence->kind, logits.data(), teacher.data(),
                                          div_weights_d.data() + r0, dlogits.data(), n, V);
        }
      }
      backend_.LinearWeightsBackward(dlogits.data(), normed, ctx.W(lm_head_), dnormed.data() + r0 * h,
                              ctx.G(lm_head_), nullptr, n, h, V, false);
    }
  }
  backend_.RmsNormBackward(dnormed.data(), st.h_final.data(), ctx.P(final_norm_), st.rstd_final.data(),
                           dh.data(), ctx.G(final_norm_), T, h);
  announce(kHeadStage);
  for (int64_t l = static_cast<int64_t>(layers_.size()) - 1; l >= 0; --l) {
    const Layer& L = *layers_[l];
    LayerActs& a = st.layers[l];
    if (st.recompute) {
      Ctx fwd{c, backend_, values_, scales_, compute_, specs_, nullptr, view};
      Buffer y = ctx.Buf(T * h);
      LayerForward(fwd, L, a, /*forced_routing=*/L.moe, y.data(),
                   [&](LayerActs& acts, DevicePtr<float> o) { AttentionForward(fwd, L, acts, o); });
    }
    Buffer dx = ctx.Buf(T * h);
    LayerBackward(ctx, L, a, dh.data(), dx.data());
    a = LayerActs();
    dh = std::move(dx);
    announce(l);
  }
  backend_.EmbeddingBackward(st.tokens_d.i32(), dh.data(), ctx.G(embed_), T, h);
  state_.reset();
  announce(kEndStage);
  return absl::OkStatus();
}

}  // namespace grpo

namespace grpo {

absl::StatusOr<StepOutput> CausalLM::ForwardStep(const StepInput& in, KvCacheView& cache,
                                         const Routing* forced_routing) {
  const ModelConfig& c = config_;
  const int64_t S = in.num_seqs(), T = static_cast<int64_t>(in.tokens.size());
  const int64_t h = c.hidden_size, V = c.vocab_size;
  if (static_cast<int64_t>(in.offsets.size()) != S + 1 || static_cast<int64_t>(in.cache_seq.size()) != S ||
      in.offsets.front() != 0 || in.offsets.back() != T) {
    return absl::InvalidArgumentError("step input: offsets, past and cache_seq disagree on the sequence count");
  }
  for (int64_t s = 0; s < S; ++s) {
    if (in.offsets[s + 1] <= in.offsets[s]) {
      return absl::InvalidArgumentError("step input: sequence " + std::to_string(s) + " has no new tokens");
    }
    if (in.past[s] < 0) return absl::InvalidArgumentError("step input: negative past length");
  }
  const KvCachePool pool = cache.pool();
  const int64_t row_width = KvCacheRowWidth(c, backend_.batch_invariant());
  if (pool.num_layers != c.num_hidden_layers || pool.row_width != row_width || pool.block_size <= 0) {
    return absl::InvalidArgumentError(
        "KV cache pool of " + std::to_string(pool.num_layers) + " layers, rows of " + std::to_string(pool.row_width) +
        " floats, blocks of " + std::to_string(pool.block_size) + " positions; the model needs " +
        std::to_string(c.num_hidden_layers) + " layers and rows of " + std::to_string(row_width) +
        (backend_.batch_invariant() ? " (batch-invariant mode)" : ""));
  }
  GRPO_RETURN_IF_ERROR(CheckTokens(in.tokens, V));
  GRPO_RETURN_IF_ERROR(CheckForcedRouting(forced_routing, c, T));
  if (compute_stale_) RefreshComputeWeights();
  std::vector<int32_t> positions(T);
  int64_t max_pos = 1;
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t t = in.offsets[s]; t < in.offsets[s + 1]; ++t) {
      positions[t] = static_cast<int32_t>(in.past[s] + (t - in.offsets[s]));
    }
    max_pos = std::max(max_pos, in.past[s] + in.offsets[s + 1] - in.offsets[s]);
  }
  // The step's uploads: token ids, positions and each sequence's last row (ints).
  const Buffer tokens_d = Upload(backend_, in.tokens), positions_d = Upload(backend_, positions);
  std::vector<int32_t> last(S);
  for (int64_t s = 0; s < S; ++s) last[s] = static_cast<int32_t>(in.offsets[s + 1] - 1);
  const Buffer last_d = Upload(backend_, last);
  RopeFor(max_pos);
  const BatchView view{T, in.offsets, positions_d.i32(), rope_cos_.data(), rope_sin_.data()};
  Ctx ctx{c, backend_, values_, scales_, compute_, specs_, nullptr, view};
  ctx.keep_activations = false;
  StepOutput out;
  const SyncOnUnwind sync_on_unwind(backend_);
  if (in.return_routing) out.routing = EmptyRouting(c, T);
  Buffer x = ctx.Buf(T * h);
  EmbedTokens(ctx, embed_, in.tokens, tokens_d.i32(), x.data());
  // One block table per sequence, the same for every layer (a block holds all layers).
  std::vector<int32_t> table_ids;
  std::vector<int64_t> table_offsets{0};
  for (int64_t s = 0; s < S; ++s) {
    cache.AppendBlockTable(in.cache_seq[s], in.past[s] + in.offsets[s + 1] - in.offsets[s], &table_ids);
    table_offsets.push_back(static_cast<int64_t>(table_ids.size()));
  }
  const Buffer table_ids_d = Upload(backend_, table_ids);  // small int32 device tensors
  const BlockTables tables{table_ids_d.i32(), table_offsets};
  const float eps = static_cast<float>(c.rms_norm_eps);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = *layers_[l];
    const StepCache kv{pool, static_cast<int64_t>(l), tables};
    LayerActs a;
    a.x_in = std::move(x);
    const bool forced = UseForcedRouting(backend_, L, forced_routing, T, a);
    Buffer y = ctx.Buf(T * h);
    LayerForward(ctx, L, a, forced, y.data(), [&](LayerActs& acts, DevicePtr<float> o) {
      StepAttention(ctx, L, acts, in, kv, o);
    });
    RecordRouting(backend_, L, a, &out.routing);
    x = std::move(y);
  }
  // Only each sequence's last new token needs logits; they stay on the device.
  Buffer xl = ctx.Buf(S * h), normed = ctx.Buf(S * h), rstd = ctx.Buf(S);
  out.logits = ctx.Buf(S * V);
  backend_.GatherRows(x.data(), last_d.i32(), nullptr, xl.data(), S, h);
  backend_.RmsNorm(xl.data(), ctx.P(final_norm_), normed.data(), rstd.data(), S, h, eps);
  backend_.LinearWeights(normed.data(), ctx.W(lm_head_), nullptr, out.logits.data(), S, h, V);
  if (!out.routing.experts.empty()) backend_.Synchronize();  // RecordRouting's downloads
  return out;
}

SampledTokens CausalLM::SampleNext(const StepOutput& out, std::span<const SamplingRow> rows) {
  const int64_t S = static_cast<int64_t>(rows.size());
  Buffer tokens(&backend_, S, DType::kI32), lp(&backend_, S), raw(&backend_, S);
  backend_.Sample(out.logits.data(), config_.vocab_size, rows, tokens.i32(), lp.data(), raw.data());
  SampledTokens r;
  r.tokens.resize(S);
  r.logprobs.resize(S);
  r.raw_logprobs.resize(S);
  backend_.CopyDeviceToHost(tokens.i32(), r.tokens.data(), tokens.bytes());
  backend_.CopyDeviceToHost(lp.data(), r.logprobs.data(), lp.bytes());
  backend_.CopyDeviceToHost(raw.data(), r.raw_logprobs.data(), raw.bytes());
  backend_.Synchronize();
  return r;
}

}  // namespace grpo
