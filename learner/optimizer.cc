#include "learner/optimizer.h"

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "core/safetensors.h"

namespace grpo {
namespace {

constexpr char kStateFormat[] = "grpo.adamw.v1";

absl::Status CheckGrads(const std::vector<Parameter>& params, const std::vector<Tensor>& grads) {
  if (grads.size() != params.size()) {
    return absl::InvalidArgumentError("got " + std::to_string(grads.size()) + " gradients for " +
                                   std::to_string(params.size()) + " parameters");
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].spec.trainable) continue;
    const Tensor& g = grads[i];
    if (g.dtype() != DType::kF32 || g.shape() != params[i].spec.shape || !g.defined()) {
      return absl::InvalidArgumentError("gradient of " + params[i].spec.name + " is " +
                                     std::string(DTypeName(g.dtype())) + " " +
                                     ShapeToString(g.shape()) + ", expected F32 " +
                                     ShapeToString(params[i].spec.shape));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> GlobalGradNorm(const std::vector<Parameter>& params, const std::vector<Tensor>& grads) {
  GRPO_RETURN_IF_ERROR(CheckGrads(params, grads));
  double sq = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].spec.trainable) continue;
    const float* g = grads[i].data<float>();
    double s = 0;
    for (int64_t j = 0, n = grads[i].numel(); j < n; ++j) s += static_cast<double>(g[j]) * g[j];
    sq += s;
  }
  return std::sqrt(sq);
}

void ZeroGrads(std::vector<Tensor>* grads) {
  for (auto& g : *grads) {
    if (g.numel() > 0) std::memset(g.mutable_data<float>(), 0, g.nbytes());
  }
}

absl::StatusOr<double> ClipGradNorm(const std::vector<Parameter>& params, std::vector<Tensor>* grads,
                            double max_norm) {
  if (!(max_norm > 0) || !std::isfinite(max_norm)) {
    return absl::InvalidArgumentError("max_norm must be finite and > 0, got " + std::to_string(max_norm));
  }
  GRPO_ASSIGN_OR_RETURN(const double norm, GlobalGradNorm(params, *grads));
  if (!std::isfinite(norm)) {
    return absl::InvalidArgumentError("gradient norm is not finite (" + std::to_string(norm) +
                                   "): step skipped");
  }
  // torch computes the coefficient on the f32 norm tensor: (1 / (norm + 1e-6)) * max_norm
  // (Tensor.__rtruediv__ is reciprocal() * other), in f32.
  const float c = (1.0f / (static_cast<float>(norm) + 1e-6f)) * static_cast<float>(max_norm);
  if (c < 1.0f) {
    for (size_t i = 0; i < params.size(); ++i) {
      if (!params[i].spec.trainable) continue;
      float* g = (*grads)[i].mutable_data<float>();
      for (int64_t j = 0, n = (*grads)[i].numel(); j < n; ++j) g[j] *= c;
    }
  }
  return norm;
}

absl::StatusOr<AdamW> AdamW::Create(const std::vector<Parameter>& params, const AdamWOptions& options) {
  auto unit = [](double v) { return v >= 0 && v < 1; };
  if (!unit(options.beta1)) return absl::InvalidArgumentError("beta1 must be in [0, 1), got " + std::to_string(options.beta1));
  if (!unit(options.beta2)) return absl::InvalidArgumentError("beta2 must be in [0, 1), got " + std::to_string(options.beta2));
  if (!(options.eps >= 0) || !std::isfinite(options.eps)) {
    return absl::InvalidArgumentError("eps must be finite and >= 0, got " + std::to_string(options.eps));
  }
  if (!(options.weight_decay >= 0) || !std::isfinite(options.weight_decay)) {
    return absl::InvalidArgumentError("weight_decay must be finite and >= 0, got " +
                                   std::to_string(options.weight_decay));
  }
  AdamW opt;
  opt.options_ = options;
  for (const Parameter& p : params) {
    opt.specs_.push_back(p.spec);
    if (p.spec.trainable) {
      opt.exp_avg_.push_back(Tensor::Zeros(DType::kF32, p.spec.shape));
      opt.exp_avg_sq_.push_back(Tensor::Zeros(DType::kF32, p.spec.shape));
    } else {
      opt.exp_avg_.emplace_back();
      opt.exp_avg_sq_.emplace_back();
    }
  }
  return opt;
}

absl::Status AdamW::Step(std::vector<Parameter>* params, const std::vector<Tensor>& grads, double lr) {
  if (!(lr >= 0) || !std::isfinite(lr)) {
    return absl::InvalidArgumentError("lr must be finite and >= 0, got " + std::to_string(lr));
  }
  if (params->size() != specs_.size()) {
    return absl::InvalidArgumentError("optimizer was created for " + std::to_string(specs_.size()) +
                                   " parameters, got " + std::to_string(params->size()));
  }
  for (size_t i = 0; i < specs_.size(); ++i) {
    const Parameter& p = (*params)[i];
    if (p.spec.name != specs_[i].name || p.spec.shape != specs_[i].shape ||
        p.spec.trainable != specs_[i].trainable) {
      return absl::InvalidArgumentError("parameter " + std::to_string(i) + " is " + p.spec.name + " " +
                                     ShapeToString(p.spec.shape) + ", the optimizer has " +
                                     specs_[i].name + " " + ShapeToString(specs_[i].shape));
    }
    if (p.spec.trainable && (p.value.dtype() != DType::kF32 || p.value.shape() != p.spec.shape ||
                             !p.value.writable())) {
      return absl::InvalidArgumentError("value of " + p.spec.name + " must be a writable F32 tensor of " +
                                     ShapeToString(p.spec.shape));
    }
  }
  GRPO_RETURN_IF_ERROR(CheckGrads(*params, grads));

  ++step_;
  const double k = static_cast<double>(step_);
  const double step_size = lr / (1.0 - std::pow(options_.beta1, k));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, k));
  // Scalars enter torch's f32 kernels as f32.
  const float b1 = static_cast<float>(options_.beta1), omb1 = static_cast<float>(1.0 - options_.beta1);
  const float b2 = static_cast<float>(options_.beta2), omb2 = static_cast<float>(1.0 - options_.beta2);
  const float neg_step = static_cast<float>(-step_size), bc2s = static_cast<float>(bc2_sqrt);
  const float eps = static_cast<float>(options_.eps);
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    const bool decay = options_.decay_1d || specs_[i].shape.size() != 1;
    const float shrink = static_cast<float>(1.0 - lr * (decay ? options_.weight_decay : 0.0));
    float* p = (*params)[i].value.mutable_data<float>();
    const float* g = grads[i].data<float>();
    float* m = exp_avg_[i].mutable_data<float>();
    float* v = exp_avg_sq_[i].mutable_data<float>();
    for (int64_t j = 0, n = exp_avg_[i].numel(); j < n; ++j) {
      p[j] = p[j] * shrink;
      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1): torch's vectorized add is a fused
      // multiply-add; the product of two floats is exact in double, so this rounds once too.
      m[j] = static_cast<float>(static_cast<double>(m[j] * b1) + static_cast<double>(omb1) * g[j]);
      // exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2): torch's kernel computes
      // v + (value * g) * g, which its compiler contracts into a fused multiply-add.
      v[j] = static_cast<float>(static_cast<double>(v[j] * b2) +
                                static_cast<double>(omb2 * g[j]) * static_cast<double>(g[j]));
      const float denom = std::sqrt(v[j]) / bc2s + eps;
      p[j] = p[j] + neg_step * m[j] / denom;
    }
  }
  return absl::OkStatus();
}

absl::Status AdamW::SaveState(const std::string& path) const {
  NamedTensors tensors;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    tensors.emplace_back(specs_[i].name + ".exp_avg", exp_avg_[i]);
    tensors.emplace_back(specs_[i].name + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  return WriteSafetensors(path, tensors, {{"format", kStateFormat}, {"step", std::to_string(step_)}});
}

absl::Status AdamW::LoadState(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
  const auto& meta = file.metadata();
  auto fmt = meta.find("format");
  if (fmt == meta.end() || fmt->second != kStateFormat) {
    return absl::InvalidArgumentError(path + ": not an AdamW state file (__metadata__ format is not \"" +
                                   std::string(kStateFormat) + "\")");
  }
  auto step_it = meta.find("step");
  int64_t step = -1;
  if (step_it != meta.end()) {
    try {
      size_t used = 0;
      step = std::stoll(step_it->second, &used);
      if (used != step_it->second.size()) step = -1;
    } catch (...) {
      step = -1;
    }
  }
  if (step < 0) return absl::InvalidArgumentError(path + ": __metadata__ step is missing or not a count");

  std::set<std::string> expected;
  std::vector<Tensor> m(specs_.size()), v(specs_.size());
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    for (int which = 0; which < 2; ++which) {
      const std::string name = specs_[i].name + (which == 0 ? ".exp_avg" : ".exp_avg_sq");
      expected.insert(name);
      if (!file.Contains(name)) return absl::InvalidArgumentError(path + ": tensor " + name + " is missing");
      GRPO_ASSIGN_OR_RETURN(Tensor t, file.Get(name));
      if (t.dtype() != DType::kF32 || t.shape() != specs_[i].shape) {
        return absl::InvalidArgumentError(path + ": tensor " + name + " is " +
                                       std::string(DTypeName(t.dtype())) + " " +
                                       ShapeToString(t.shape()) + ", expected F32 " +
                                       ShapeToString(specs_[i].shape));
      }
      Tensor owned = Tensor::Zeros(DType::kF32, specs_[i].shape);
      std::memcpy(owned.mutable_raw_data(), t.raw_data(), owned.nbytes());
      (which == 0 ? m : v)[i] = owned;
    }
  }
  for (const std::string& name : file.names()) {
    if (!expected.count(name)) {
      return absl::InvalidArgumentError(path + ": unexpected tensor " + name +
                                     " (not a trainable parameter of this model)");
    }
  }
  exp_avg_ = std::move(m);
  exp_avg_sq_ = std::move(v);
  step_ = step;
  return absl::OkStatus();
}

}  // namespace grpo
