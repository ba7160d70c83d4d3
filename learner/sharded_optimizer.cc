#include "learner/sharded_optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/safetensors.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

constexpr char kShardFormat[] = "grpo.adamw.shard.v1";

absl::StatusOr<int64_t> MetaInt(const SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  int64_t v = -1;
  if (it != f.metadata().end()) {
    char* end = nullptr;
    v = std::strtoll(it->second.c_str(), &end, 10);
    if (end == it->second.c_str() || *end != 0) v = -1;
  }
  if (v < 0) return absl::InvalidArgumentError(absl::StrCat(f.display_name(), ": __metadata__ ", key, " is missing or not a count"));
  return v;
}

// Copies the overlap of [src_offset, src_offset + n) with [want, want + out.size()) from `src`.
int64_t CopyOverlap(const float* src, int64_t src_offset, int64_t n, int64_t want, std::vector<float>* out) {
  const int64_t lo = std::max(src_offset, want), hi = std::min(src_offset + n, want + static_cast<int64_t>(out->size()));
  if (hi <= lo) return 0;
  std::copy(src + (lo - src_offset), src + (hi - src_offset), out->begin() + (lo - want));
  return hi - lo;
}

absl::StatusOr<Tensor> F32Tensor(const SafetensorsFile& f, const std::string& name, int64_t numel) {
  if (!f.Contains(name)) return absl::InvalidArgumentError(f.display_name() + ": tensor " + name + " is missing");
  GRPO_ASSIGN_OR_RETURN(Tensor t, f.Get(name));
  if (t.dtype() != DType::kF32 || t.numel() != numel) {
    return absl::InvalidArgumentError(absl::StrCat(f.display_name(), ": tensor ", name, " is not F32 of ", numel, " elements"));
  }
  return t;
}

// From shard files: every file's overlap with the range.
absl::Status ReadShards(const std::vector<std::string>& paths, int64_t total, int64_t offset, OptimizerRange* out,
                        int64_t* covered) {
  int64_t step = -1;
  for (const std::string& path : paths) {
    GRPO_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
    auto fmt = f.metadata().find("format");
    if (fmt == f.metadata().end() || fmt->second != kShardFormat) {
      return absl::InvalidArgumentError(path + ": not an AdamW shard (__metadata__ format)");
    }
    GRPO_ASSIGN_OR_RETURN(int64_t s, MetaInt(f, "step"));
    GRPO_ASSIGN_OR_RETURN(int64_t shard_offset, MetaInt(f, "offset"));
    GRPO_ASSIGN_OR_RETURN(int64_t shard_total, MetaInt(f, "total"));
    if (shard_total != total) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": a shard of ", shard_total,
                                                     " trainable elements, this model has ", total));
    }
    if (step >= 0 && s != step) return absl::InvalidArgumentError(absl::StrCat(path, ": step ", s, ", other shards ", step));
    step = s;
    const int64_t n = f.Info("exp_avg").ok() ? NumElements(f.Info("exp_avg")->shape) : 0;
    GRPO_ASSIGN_OR_RETURN(Tensor m, F32Tensor(f, "exp_avg", n));
    GRPO_ASSIGN_OR_RETURN(Tensor v, F32Tensor(f, "exp_avg_sq", n));
    *covered += CopyOverlap(m.data<float>(), shard_offset, n, offset, &out->exp_avg);
    CopyOverlap(v.data<float>(), shard_offset, n, offset, &out->exp_avg_sq);
  }
  out->step = step;
  return absl::OkStatus();
}

// From the one-process file: each trainable parameter's overlap with the range.
absl::Status ReadWhole(const std::string& path, const std::vector<ParameterSpec>& specs, int64_t offset,
                       OptimizerRange* out, int64_t* covered) {
  GRPO_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
  GRPO_ASSIGN_OR_RETURN(out->step, MetaInt(f, "step"));
  int64_t at = 0;
  for (const ParameterSpec& spec : specs) {
    if (!spec.trainable) continue;
    const int64_t n = NumElements(spec.shape);
    GRPO_ASSIGN_OR_RETURN(Tensor m, F32Tensor(f, spec.name + ".exp_avg", n));
    GRPO_ASSIGN_OR_RETURN(Tensor v, F32Tensor(f, spec.name + ".exp_avg_sq", n));
    *covered += CopyOverlap(m.data<float>(), at, n, offset, &out->exp_avg);
    CopyOverlap(v.data<float>(), at, n, offset, &out->exp_avg_sq);
    at += n;
  }
  return absl::OkStatus();
}

std::string ShardName(int rank, int ranks) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "optimizer-shard-%05d-of-%05d.safetensors", rank, ranks);
  return buf;
}

}  // namespace

int64_t TrainableElements(const std::vector<ParameterSpec>& specs) {
  int64_t total = 0;
  for (const ParameterSpec& s : specs) total += s.trainable ? NumElements(s.shape) : 0;
  return total;
}

absl::StatusOr<OptimizerRange> ReadOptimizerRange(const std::string& dir, const std::vector<ParameterSpec>& specs,
                                                  int64_t offset, int64_t count) {
  OptimizerRange out;
  out.exp_avg.assign(count, 0.0f);
  out.exp_avg_sq.assign(count, 0.0f);
  int64_t covered = 0;
  const std::string whole = dir + "/optimizer.safetensors";
  if (fs::exists(whole)) {
    GRPO_RETURN_IF_ERROR(ReadWhole(whole, specs, offset, &out, &covered));
  } else {
    std::vector<std::string> shards;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("optimizer-shard-", 0) == 0) shards.push_back(e.path().string());
    }
    if (shards.empty()) return absl::NotFoundError(dir + ": no optimizer.safetensors and no optimizer shards");
    std::sort(shards.begin(), shards.end());
    GRPO_RETURN_IF_ERROR(ReadShards(shards, TrainableElements(specs), offset, &out, &covered));
  }
  if (covered != count) {
    return absl::DataLossError(absl::StrCat(dir, ": the optimizer files cover ", covered, " of elements [", offset,
                                            ", ", offset + count, ")"));
  }
  return out;
}

absl::Status LoadAnyOptimizerState(const std::string& dir, AdamW* optimizer, const std::vector<ParameterSpec>& specs) {
  if (fs::exists(dir + "/optimizer.safetensors")) return optimizer->LoadState(dir + "/optimizer.safetensors");
  GRPO_ASSIGN_OR_RETURN(OptimizerRange all, ReadOptimizerRange(dir, specs, 0, TrainableElements(specs)));
  return optimizer->SetState(all.exp_avg, all.exp_avg_sq, all.step);
}

absl::StatusOr<ShardedAdamW> ShardedAdamW::Create(Backend& backend, const std::vector<ParameterSpec>& specs,
                                                  const AdamWOptions& options, Collective& collective) {
  GRPO_RETURN_IF_ERROR(AdamW::Create(backend, {}, options).status());  // the options' checks
  if (collective.memory() != Collective::Memory::kHost) {
    return absl::UnimplementedError("sharded AdamW stages through host memory; a device collective needs a device path");
  }
  ShardedAdamW s;
  s.backend_ = &backend;
  s.collective_ = &collective;
  s.options_ = options;
  s.specs_ = specs;
  s.total_ = TrainableElements(specs);
  s.counts_ = EvenShards(static_cast<size_t>(s.total_), collective.size());
  s.offset_ = static_cast<int64_t>(ShardOffset(s.counts_, collective.rank()));
  s.count_ = static_cast<int64_t>(s.counts_[collective.rank()]);
  int64_t at = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].trainable) continue;
    const int64_t n = NumElements(specs[i].shape);
    const int64_t lo = std::max(at, s.offset_), hi = std::min(at + n, s.offset_ + s.count_);
    if (lo < hi) s.pieces_.push_back({i, lo - at, lo - s.offset_, hi - lo});
    at += n;
  }
  const int64_t alloc = std::max<int64_t>(s.count_, 1);
  s.exp_avg_ = Buffer(&backend, alloc);
  s.exp_avg_sq_ = Buffer(&backend, alloc);
  s.grad_shard_ = Buffer(&backend, alloc);
  backend.Zero(s.exp_avg_.data(), alloc);
  backend.Zero(s.exp_avg_sq_.data(), alloc);
  return s;
}

absl::Status ShardedAdamW::CheckSizes(const std::vector<Buffer>& values, const std::vector<Buffer>& grads) const {
  if (values.size() != specs_.size() || grads.size() != specs_.size()) {
    return absl::InvalidArgumentError("sharded AdamW: values or gradients do not match the parameters");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<double>> ShardedAdamW::Step(std::vector<Buffer>* values, std::vector<Buffer>* grads,
                                                         double lr, double max_norm) {
  GRPO_RETURN_IF_ERROR(CheckSizes(*values, *grads));
  // 1. reduce-scatter the gradients (host staging)
  std::vector<float> flat(total_);
  int64_t at = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    backend_->CopyDeviceToHost((*grads)[i].data(), flat.data() + at, (*grads)[i].bytes());
    at += (*grads)[i].numel();
  }
  backend_->Synchronize();
  GRPO_RETURN_IF_ERROR(collective_->ReduceScatterSum(absl::MakeSpan(flat), counts_));
  return StepOwnShard(values, &flat, lr, max_norm);
}

absl::StatusOr<std::optional<double>> ShardedAdamW::StepSummed(std::vector<Buffer>* values,
                                                               const std::vector<Buffer>& grads, double lr,
                                                               double max_norm) {
  GRPO_RETURN_IF_ERROR(CheckSizes(*values, grads));
  std::vector<float> flat(total_);
  for (const Piece& p : pieces_) {
    backend_->CopyDeviceToHost(grads[p.param].data() + p.param_offset, flat.data() + offset_ + p.shard_offset,
                               p.count * static_cast<int64_t>(sizeof(float)));
  }
  backend_->Synchronize();
  return StepOwnShard(values, &flat, lr, max_norm);
}

absl::StatusOr<std::optional<double>> ShardedAdamW::StepOwnShard(std::vector<Buffer>* values,
                                                                 std::vector<float>* flat_grads, double lr,
                                                                 double max_norm) {
  std::vector<float>& flat = *flat_grads;
  float* own = flat.data() + offset_;
  // 2. the global norm, clipping
  double sq = 0;
  for (int64_t k = 0; k < count_; ++k) sq += static_cast<double>(own[k]) * own[k];
  GRPO_RETURN_IF_ERROR(collective_->AllReduceSum(absl::MakeSpan(&sq, 1)));
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) return std::optional<double>();
  if (max_norm > 0) {
    const float c = (1.0f / (static_cast<float>(norm) + 1e-6f)) * static_cast<float>(max_norm);
    if (c < 1.0f) {
      for (int64_t k = 0; k < count_; ++k) own[k] *= c;
    }
  }
  // 3. AdamW over the own shard
  if (count_ > 0) backend_->CopyHostToDevice(own, grad_shard_.raw(), count_ * static_cast<int64_t>(sizeof(float)));
  ++step_;
  const double k = static_cast<double>(step_);
  AdamWScalars s;
  s.b1 = static_cast<float>(options_.beta1);
  s.omb1 = static_cast<float>(1.0 - options_.beta1);
  s.b2 = static_cast<float>(options_.beta2);
  s.omb2 = static_cast<float>(1.0 - options_.beta2);
  s.neg_step = static_cast<float>(-(lr / (1.0 - std::pow(options_.beta1, k))));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(options_.beta2, k)));
  s.eps = static_cast<float>(options_.eps);
  for (const Piece& p : pieces_) {
    const bool decay = options_.decay_1d || specs_[p.param].shape.size() != 1;
    s.shrink = static_cast<float>(1.0 - lr * (decay ? options_.weight_decay : 0.0));
    backend_->AdamW((*values)[p.param].data() + p.param_offset, grad_shard_.data() + p.shard_offset,
                    exp_avg_.data() + p.shard_offset, exp_avg_sq_.data() + p.shard_offset, p.count, s);
  }
  // 4. all-gather the parameters
  for (const Piece& p : pieces_) {
    backend_->CopyDeviceToHost((*values)[p.param].data() + p.param_offset, own + p.shard_offset,
                               p.count * static_cast<int64_t>(sizeof(float)));
  }
  backend_->Synchronize();
  GRPO_RETURN_IF_ERROR(collective_->AllGather(absl::MakeSpan(flat), counts_));
  int64_t at = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].trainable) continue;
    backend_->CopyHostToDevice(flat.data() + at, (*values)[i].raw(), (*values)[i].bytes());
    at += (*values)[i].numel();
  }
  return std::optional<double>(norm);
}

absl::Status ShardedAdamW::SaveShard(const std::string& dir) const {
  Tensor m = Tensor::Zeros(DType::kF32, {count_}), v = Tensor::Zeros(DType::kF32, {count_});
  if (count_ > 0) {
    backend_->CopyDeviceToHost(exp_avg_.data(), m.mutable_raw_data(), m.nbytes());
    backend_->CopyDeviceToHost(exp_avg_sq_.data(), v.mutable_raw_data(), v.nbytes());
    backend_->Synchronize();
  }
  return WriteSafetensors(dir + "/" + ShardName(collective_->rank(), collective_->size()),
                          {{"exp_avg", m}, {"exp_avg_sq", v}},
                          {{"format", kShardFormat},
                           {"step", std::to_string(step_)},
                           {"offset", std::to_string(offset_)},
                           {"total", std::to_string(total_)}});
}

absl::Status ShardedAdamW::LoadShard(const std::string& dir) {
  GRPO_ASSIGN_OR_RETURN(OptimizerRange r, ReadOptimizerRange(dir, specs_, offset_, count_));
  if (count_ > 0) {
    backend_->CopyHostToDevice(r.exp_avg.data(), exp_avg_.raw(), count_ * static_cast<int64_t>(sizeof(float)));
    backend_->CopyHostToDevice(r.exp_avg_sq.data(), exp_avg_sq_.raw(), count_ * static_cast<int64_t>(sizeof(float)));
  }
  step_ = r.step;
  return absl::OkStatus();
}

}  // namespace grpo
