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

absl::Status CheckGrads(const std::vector<ParameterSpec>& specs, const std::vector<Buffer>& grads) {
  if (grads.size() != specs.size()) {
    return absl::InvalidArgumentError("got " + std::to_string(grads.size()) + " gradients for " +
                                   std::to_string(specs.size()) + " parameters");
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].trainable) continue;
    const Buffer& g = grads[i];
    if (g.dtype() != DType::kF32 || g.numel() != NumElements(specs[i].shape)) {
      return absl::InvalidArgumentError("gradient of " + specs[i].name + " is " +
                                     std::string(DTypeName(g.dtype())) + " of " +
                                     std::to_string(g.numel()) + " elements, expected F32 " +
                                     ShapeToString(specs[i].shape));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> GlobalGradNorm(const std::vector<ParameterSpec>& specs,
                                      const std::vector<Buffer>& grads) {
  GRPO_RETURN_IF_ERROR(CheckGrads(specs, grads));
  Backend* be = nullptr;
  for (size_t i = 0; i < specs.size() && be == nullptr; ++i) {
    if (specs[i].trainable) be = grads[i].backend();
  }
  if (be == nullptr) return 0.0;
  // One double per trainable gradient on the device, one download, summed here in order.
  Buffer sums(be, static_cast<int64_t>(specs.size()), DType::kF64);
  int64_t n = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].trainable) be->SumSquares(grads[i].data(), grads[i].numel(), sums.f64() + n++);
  }
  std::vector<double> host(n);
  be->CopyDeviceToHost(sums.f64(), host.data(), n * static_cast<int64_t>(sizeof(double)));
  be->Synchronize();
  double sq = 0;
  for (double s : host) sq += s;
  return std::sqrt(sq);
}

void ZeroGrads(std::vector<Buffer>* grads) {
  for (auto& g : *grads) {
    if (g.numel() > 0) g.backend()->Zero(g.data(), g.numel());
  }
}

absl::StatusOr<double> ClipGradNorm(const std::vector<ParameterSpec>& specs,
                                    std::vector<Buffer>* grads, double max_norm) {
  if (!(max_norm > 0) || !std::isfinite(max_norm)) {
    return absl::InvalidArgumentError("max_norm must be finite and > 0, got " + std::to_string(max_norm));
  }
  GRPO_ASSIGN_OR_RETURN(const double norm, GlobalGradNorm(specs, *grads));
  if (!std::isfinite(norm)) {
    return absl::InvalidArgumentError("gradient norm is not finite (" + std::to_string(norm) +
                                   "): step skipped");
  }
  // torch computes the coefficient on the f32 norm tensor: (1 / (norm + 1e-6)) * max_norm
  // (Tensor.__rtruediv__ is reciprocal() * other), in f32.
  const float c = (1.0f / (static_cast<float>(norm) + 1e-6f)) * static_cast<float>(max_norm);
  if (c < 1.0f) {
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!specs[i].trainable) continue;
      Buffer& g = (*grads)[i];
      g.backend()->Scale(g.data(), g.numel(), c);
    }
  }
  return norm;
}

absl::StatusOr<AdamW> AdamW::Create(Backend& backend, const std::vector<ParameterSpec>& specs,
                                    const AdamWOptions& options) {
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
  AdamW opt(backend);
  opt.options_ = options;
  for (const ParameterSpec& spec : specs) {
    opt.specs_.push_back(spec);
    if (spec.trainable) {
      const int64_t n = NumElements(spec.shape);
      opt.exp_avg_.emplace_back(&backend, n);
      opt.exp_avg_sq_.emplace_back(&backend, n);
      backend.Zero(opt.exp_avg_.back().data(), n);
      backend.Zero(opt.exp_avg_sq_.back().data(), n);
    } else {
      opt.exp_avg_.emplace_back();
      opt.exp_avg_sq_.emplace_back();
    }
  }
  return opt;
}

Tensor AdamW::Download(const Buffer& b, size_t i) const {
  if (!specs_[i].trainable) return Tensor();
  Tensor t = Tensor::Zeros(DType::kF32, specs_[i].shape);
  backend_->CopyDeviceToHost(b.data(), t.mutable_raw_data(), b.bytes());
  backend_->Synchronize();
  return t;
}

absl::Status AdamW::Step(std::vector<Buffer>* values, const std::vector<Buffer>& grads, double lr) {
  if (!(lr >= 0) || !std::isfinite(lr)) {
    return absl::InvalidArgumentError("lr must be finite and >= 0, got " + std::to_string(lr));
  }
  if (values->size() != specs_.size()) {
    return absl::InvalidArgumentError("optimizer was created for " + std::to_string(specs_.size()) +
                                   " parameters, got " + std::to_string(values->size()));
  }
  for (size_t i = 0; i < specs_.size(); ++i) {
    const Buffer& v = (*values)[i];
    if (specs_[i].trainable && (v.dtype() != DType::kF32 || v.numel() != NumElements(specs_[i].shape))) {
      return absl::InvalidArgumentError("value of " + specs_[i].name + " must be an F32 buffer of " +
                                     ShapeToString(specs_[i].shape) + ", is " +
                                     std::string(DTypeName(v.dtype())) + " of " +
                                     std::to_string(v.numel()) + " elements");
    }
  }
  GRPO_RETURN_IF_ERROR(CheckGrads(specs_, grads));

  ++step_;
  const double k = static_cast<double>(step_);
  const double step_size = lr / (1.0 - std::pow(options_.beta1, k));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, k));
  // Scalars enter torch's f32 kernels as f32.
  AdamWScalars s;
  s.b1 = static_cast<float>(options_.beta1);
  s.omb1 = static_cast<float>(1.0 - options_.beta1);
  s.b2 = static_cast<float>(options_.beta2);
  s.omb2 = static_cast<float>(1.0 - options_.beta2);
  s.neg_step = static_cast<float>(-step_size);
  s.bc2_sqrt = static_cast<float>(bc2_sqrt);
  s.eps = static_cast<float>(options_.eps);
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    const bool decay = options_.decay_1d || specs_[i].shape.size() != 1;
    s.shrink = static_cast<float>(1.0 - lr * (decay ? options_.weight_decay : 0.0));
    Buffer& p = (*values)[i];
    backend_->AdamW(p.data(), grads[i].data(), exp_avg_[i].data(), exp_avg_sq_[i].data(), p.numel(), s);
  }
  return absl::OkStatus();
}

absl::Status AdamW::SaveState(const std::string& path) const {
  NamedTensors tensors;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    tensors.emplace_back(specs_[i].name + ".exp_avg", exp_avg(i));
    tensors.emplace_back(specs_[i].name + ".exp_avg_sq", exp_avg_sq(i));
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
  std::vector<Tensor> m(specs_.size()), v(specs_.size());  // host, uploaded once all are read
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
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    backend_->CopyHostToDevice(m[i].raw_data(), exp_avg_[i].raw(), exp_avg_[i].bytes());
    backend_->CopyHostToDevice(v[i].raw_data(), exp_avg_sq_[i].raw(), exp_avg_sq_[i].bytes());
  }
  step_ = step;
  return absl::OkStatus();
}

absl::Status AdamW::SetState(const std::vector<float>& m, const std::vector<float>& v, int64_t step) {
  int64_t total = 0;
  for (const ParameterSpec& spec : specs_) total += spec.trainable ? NumElements(spec.shape) : 0;
  if (static_cast<int64_t>(m.size()) != total || static_cast<int64_t>(v.size()) != total || step < 0) {
    return absl::InvalidArgumentError("optimizer state of " + std::to_string(m.size()) + "/" +
                                      std::to_string(v.size()) + " elements for " + std::to_string(total) +
                                      " trainable elements");
  }
  int64_t at = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    backend_->CopyHostToDevice(m.data() + at, exp_avg_[i].raw(), exp_avg_[i].bytes());
    backend_->CopyHostToDevice(v.data() + at, exp_avg_sq_[i].raw(), exp_avg_sq_[i].bytes());
    at += exp_avg_[i].numel();
  }
  step_ = step;
  return absl::OkStatus();
}

}  // namespace grpo
