#include "learner/sharded_optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/safetensors.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

constexpr char kShardFormat[] = "grpo.adamw.shard.v2";
constexpr char kContiguousShardFormat[] = "grpo.adamw.shard.v1";  // one run at `offset`
constexpr int64_t kBytes = static_cast<int64_t>(sizeof(float));

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

absl::StatusOr<Tensor> F32Tensor(const SafetensorsFile& f, const std::string& name, int64_t numel) {
  if (!f.Contains(name)) return absl::InvalidArgumentError(f.display_name() + ": tensor " + name + " is missing");
  GRPO_ASSIGN_OR_RETURN(Tensor t, f.Get(name));
  if (t.dtype() != DType::kF32 || t.numel() != numel) {
    return absl::InvalidArgumentError(absl::StrCat(f.display_name(), ": tensor ", name, " is not F32 of ", numel, " elements"));
  }
  return t;
}

std::string FormatRuns(const std::vector<FlatRun>& runs) {
  std::string out;
  for (const FlatRun& r : runs) absl::StrAppend(&out, out.empty() ? "" : ",", r.flat_offset, ":", r.count);
  return out;
}

// "offset:count,..." of a v2 shard, each run inside [0, total).
absl::StatusOr<std::vector<FlatRun>> ParseRuns(const SafetensorsFile& f, int64_t total) {
  auto it = f.metadata().find("runs");
  if (it == f.metadata().end()) return absl::InvalidArgumentError(f.display_name() + ": __metadata__ runs is missing");
  std::vector<FlatRun> runs;
  for (absl::string_view part : absl::StrSplit(it->second, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> oc = absl::StrSplit(part, absl::MaxSplits(':', 1));
    FlatRun r{-1, -1};
    if (!absl::SimpleAtoi(oc.first, &r.flat_offset) || !absl::SimpleAtoi(oc.second, &r.count) || r.flat_offset < 0 ||
        r.count < 0 || r.count > total - r.flat_offset) {
      return absl::InvalidArgumentError(absl::StrCat(f.display_name(), ": bad run '", part, "' in __metadata__ runs"));
    }
    runs.push_back(r);
  }
  return runs;
}

// The runs asked for, sorted by flat offset, each knowing where its elements go in the output.
class RunCopier {
 public:
  RunCopier(const std::vector<FlatRun>& runs, OptimizerRange* out) : out_(out) {
    int64_t at = 0;
    for (const FlatRun& r : runs) {
      if (r.count > 0) wanted_.push_back({r.flat_offset, r.count, at});
      at += r.count;
    }
    std::sort(wanted_.begin(), wanted_.end(), [](const Wanted& a, const Wanted& b) { return a.flat < b.flat; });
    out->exp_avg.assign(at, 0.0f);
    out->exp_avg_sq.assign(at, 0.0f);
  }
  // Copies the overlap of source elements [flat, flat + n) (moments m, v) with the wanted runs.
  void Copy(int64_t flat, int64_t n, const float* m, const float* v) {
    auto it = std::lower_bound(wanted_.begin(), wanted_.end(), flat,
                               [](const Wanted& w, int64_t f) { return w.flat + w.count <= f; });
    for (; it != wanted_.end() && it->flat < flat + n; ++it) {
      const int64_t lo = std::max(flat, it->flat), hi = std::min(flat + n, it->flat + it->count);
      if (hi <= lo) continue;
      std::copy(m + (lo - flat), m + (hi - flat), out_->exp_avg.begin() + it->out + (lo - it->flat));
      std::copy(v + (lo - flat), v + (hi - flat), out_->exp_avg_sq.begin() + it->out + (lo - it->flat));
      covered_ += hi - lo;
    }
  }
  int64_t covered() const { return covered_; }
  int64_t wanted() const { return static_cast<int64_t>(out_->exp_avg.size()); }

 private:
  struct Wanted {
    int64_t flat, count, out;
  };
  std::vector<Wanted> wanted_;
  OptimizerRange* out_;
  int64_t covered_ = 0;
};

// Whether the file is an AdamW shard of the contiguous layout (v1) or of any layout (v2).
absl::StatusOr<bool> IsContiguousShard(const SafetensorsFile& f) {
  auto fmt = f.metadata().find("format");
  if (fmt != f.metadata().end() && (fmt->second == kShardFormat || fmt->second == kContiguousShardFormat)) {
    return fmt->second == kContiguousShardFormat;
  }
  return absl::InvalidArgumentError(f.display_name() + ": not an AdamW shard (__metadata__ format)");
}

// The runs a shard file of `n` elements holds: v2's list, or v1's one run at `offset`.
absl::StatusOr<std::vector<FlatRun>> ShardRuns(const SafetensorsFile& f, bool contiguous, int64_t total, int64_t n) {
  if (contiguous) {
    GRPO_ASSIGN_OR_RETURN(int64_t offset, MetaInt(f, "offset"));
    if (n > total - offset) return absl::InvalidArgumentError(f.display_name() + ": shard beyond the total");
    return std::vector<FlatRun>{{offset, n}};
  }
  GRPO_ASSIGN_OR_RETURN(std::vector<FlatRun> runs, ParseRuns(f, total));
  int64_t sum = 0;
  for (const FlatRun& r : runs) sum += r.count;
  if (sum != n) return absl::InvalidArgumentError(absl::StrCat(f.display_name(), ": runs hold ", sum, " elements, the tensors ", n));
  return runs;
}

// From shard files (either format): every file's overlap with the runs asked for.
absl::Status ReadShards(const std::vector<std::string>& paths, int64_t total, RunCopier* copier, int64_t* step_out) {
  int64_t step = -1;
  for (const std::string& path : paths) {
    GRPO_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
    GRPO_ASSIGN_OR_RETURN(bool contiguous, IsContiguousShard(f));
    GRPO_ASSIGN_OR_RETURN(int64_t s, MetaInt(f, "step"));
    GRPO_ASSIGN_OR_RETURN(int64_t shard_total, MetaInt(f, "total"));
    if (shard_total != total) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": a shard of ", shard_total,
                                                     " trainable elements, this model has ", total));
    }
    if (step >= 0 && s != step) return absl::InvalidArgumentError(absl::StrCat(path, ": step ", s, ", other shards ", step));
    step = s;
    const int64_t n = f.Info("exp_avg").ok() ? NumElements(f.Info("exp_avg")->shape) : 0;
    GRPO_ASSIGN_OR_RETURN(std::vector<FlatRun> runs, ShardRuns(f, contiguous, total, n));
    GRPO_ASSIGN_OR_RETURN(Tensor m, F32Tensor(f, "exp_avg", n));
    GRPO_ASSIGN_OR_RETURN(Tensor v, F32Tensor(f, "exp_avg_sq", n));
    int64_t at = 0;
    for (const FlatRun& r : runs) {
      copier->Copy(r.flat_offset, r.count, m.data<float>() + at, v.data<float>() + at);
      at += r.count;
    }
  }
  *step_out = step;
  return absl::OkStatus();
}

// From the one-process file: each trainable parameter's overlap with the runs asked for.
absl::Status ReadWhole(const std::string& path, const std::vector<ParameterSpec>& specs, RunCopier* copier,
                       int64_t* step) {
  GRPO_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
  GRPO_ASSIGN_OR_RETURN(*step, MetaInt(f, "step"));
  int64_t at = 0;
  for (const ParameterSpec& spec : specs) {
    if (!spec.trainable) continue;
    const int64_t n = NumElements(spec.shape);
    GRPO_ASSIGN_OR_RETURN(Tensor m, F32Tensor(f, spec.name + ".exp_avg", n));
    GRPO_ASSIGN_OR_RETURN(Tensor v, F32Tensor(f, spec.name + ".exp_avg_sq", n));
    copier->Copy(at, n, m.data<float>(), v.data<float>());
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

absl::StatusOr<OptimizerRange> ReadOptimizerRuns(const std::string& dir, const std::vector<ParameterSpec>& specs,
                                                 const std::vector<FlatRun>& runs) {
  OptimizerRange out;
  RunCopier copier(runs, &out);
  const std::string whole = dir + "/optimizer.safetensors";
  if (fs::exists(whole)) {
    GRPO_RETURN_IF_ERROR(ReadWhole(whole, specs, &copier, &out.step));
  } else {
    std::vector<std::string> shards;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("optimizer-shard-", 0) == 0) shards.push_back(e.path().string());
    }
    if (shards.empty()) return absl::NotFoundError(dir + ": no optimizer.safetensors and no optimizer shards");
    std::sort(shards.begin(), shards.end());
    GRPO_RETURN_IF_ERROR(ReadShards(shards, TrainableElements(specs), &copier, &out.step));
  }
  if (copier.covered() != copier.wanted()) {
    return absl::DataLossError(absl::StrCat(dir, ": the optimizer files cover ", copier.covered(), " of the ",
                                            copier.wanted(), " elements asked for"));
  }
  return out;
}

absl::StatusOr<OptimizerRange> ReadOptimizerRange(const std::string& dir, const std::vector<ParameterSpec>& specs,
                                                  int64_t offset, int64_t count) {
  return ReadOptimizerRuns(dir, specs, {FlatRun{offset, count}});
}

absl::Status LoadAnyOptimizerState(const std::string& dir, AdamW* optimizer, const std::vector<ParameterSpec>& specs) {
  if (fs::exists(dir + "/optimizer.safetensors")) return optimizer->LoadState(dir + "/optimizer.safetensors");
  GRPO_ASSIGN_OR_RETURN(OptimizerRange all, ReadOptimizerRange(dir, specs, 0, TrainableElements(specs)));
  return optimizer->SetState(all.exp_avg, all.exp_avg_sq, all.step);
}

absl::StatusOr<ShardedAdamW> ShardedAdamW::Create(Backend& backend, const std::vector<ParameterSpec>& specs,
                                                  const GradientBuckets& layout, const AdamWOptions& options,
                                                  Collective& collective) {
  GRPO_RETURN_IF_ERROR(AdamW::Create(backend, {}, options).status());  // the options' checks
  if (collective.memory() != Collective::Memory::kHost) {
    return absl::UnimplementedError("sharded AdamW stages through host memory; a device collective needs a device path");
  }
  if (layout.ranks() != collective.size() || layout.rank() != collective.rank() ||
      layout.num_parameters() != specs.size() || layout.total_elements() != TrainableElements(specs)) {
    return absl::InvalidArgumentError("sharded AdamW: the bucket layout is for other parameters or ranks");
  }
  ShardedAdamW s(layout);
  s.backend_ = &backend;
  s.collective_ = &collective;
  s.options_ = options;
  s.specs_ = specs;
  for (size_t b = 0; b < layout.buckets().size(); ++b) {
    const GradientBucket& bucket = layout.buckets()[b];
    layout.ForEachPiece(b, bucket.own_begin, bucket.own_begin + bucket.own_count, [&](const BucketPiece& p) {
      s.pieces_.push_back({p.param, p.param_offset, bucket.own_offset + (p.bucket_offset - bucket.own_begin), p.count});
    });
  }
  const int64_t alloc = std::max<int64_t>(layout.own_elements(), 1);
  s.exp_avg_ = Buffer(&backend, alloc);
  s.exp_avg_sq_ = Buffer(&backend, alloc);
  s.grad_shard_ = Buffer(&backend, alloc);
  backend.Zero(s.exp_avg_.data(), alloc);
  backend.Zero(s.exp_avg_sq_.data(), alloc);
  return s;
}

absl::Status ShardedAdamW::CheckSizes(const std::vector<Buffer>& values, size_t grads) const {
  if (values.size() != specs_.size() || grads != specs_.size()) {
    return absl::InvalidArgumentError("sharded AdamW: values or gradients do not match the parameters");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<double>> ShardedAdamW::Step(std::vector<Buffer>* values, const std::vector<Buffer>& grads,
                                                         double lr, double max_norm) {
  GRPO_RETURN_IF_ERROR(CheckSizes(*values, grads.size()));
  std::vector<float> sums(layout_.own_elements());
  image_.resize(layout_.max_bucket_elements());
  for (size_t b = 0; b < layout_.buckets().size(); ++b) {
    const GradientBucket& bucket = layout_.buckets()[b];
    layout_.ToHost(*backend_, b, 0, bucket.count, grads, image_.data());
    GRPO_RETURN_IF_ERROR(collective_->ReduceScatterSum(absl::MakeSpan(image_.data(), bucket.count), bucket.shard_counts));
    std::copy(image_.begin() + bucket.own_begin, image_.begin() + bucket.own_begin + bucket.own_count,
              sums.begin() + bucket.own_offset);
  }
  return StepOnShard(values, absl::MakeSpan(sums), lr, max_norm, absl::MakeSpan(image_));
}

absl::StatusOr<std::optional<double>> ShardedAdamW::StepOnShard(std::vector<Buffer>* values,
                                                                absl::Span<float> shard_sums, double lr,
                                                                double max_norm, absl::Span<float> staging) {
  GRPO_RETURN_IF_ERROR(CheckSizes(*values, specs_.size()));
  if (static_cast<int64_t>(shard_sums.size()) != layout_.own_elements() ||
      static_cast<int64_t>(staging.size()) < layout_.max_bucket_elements()) {
    return absl::InvalidArgumentError(absl::StrCat("sharded AdamW: ", shard_sums.size(), " summed gradients for a shard of ",
                                                   layout_.own_elements(), ", staging of ", staging.size(),
                                                   " floats for buckets of ", layout_.max_bucket_elements()));
  }
  GRPO_ASSIGN_OR_RETURN(double norm, ClippedNorm(shard_sums, max_norm));
  if (!std::isfinite(norm)) return std::optional<double>();
  if (!shard_sums.empty()) {
    backend_->CopyHostToDevice(shard_sums.data(), grad_shard_.raw(), static_cast<int64_t>(shard_sums.size()) * kBytes);
  }
  AdamWOnShard(values, lr);
  GRPO_RETURN_IF_ERROR(AllGatherParameters(values, staging.data()));
  return std::optional<double>(norm);
}

// The global norm of the summed gradients; the own vector clipped to max_norm (when > 0 and the
// norm is finite).
absl::StatusOr<double> ShardedAdamW::ClippedNorm(absl::Span<float> sums, double max_norm) {
  double sq = 0;
  for (float g : sums) sq += static_cast<double>(g) * g;
  GRPO_RETURN_IF_ERROR(collective_->AllReduceSum(absl::MakeSpan(&sq, 1)));
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(norm)) {
    const float c = (1.0f / (static_cast<float>(norm) + 1e-6f)) * static_cast<float>(max_norm);
    if (c < 1.0f) {
      for (float& g : sums) g *= c;
    }
  }
  return norm;
}

void ShardedAdamW::AdamWOnShard(std::vector<Buffer>* values, double lr) {
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
    backend_->AdamW((*values)[p.param].data() + p.param_offset, grad_shard_.data() + p.own_offset,
                    exp_avg_.data() + p.own_offset, exp_avg_sq_.data() + p.own_offset, p.count, s);
  }
}

// Bucket by bucket: the own shard to the host image, all-gathered, the other shards back.
absl::Status ShardedAdamW::AllGatherParameters(std::vector<Buffer>* values, float* image) {
  for (size_t b = 0; b < layout_.buckets().size(); ++b) {
    const GradientBucket& bucket = layout_.buckets()[b];
    const int64_t own_end = bucket.own_begin + bucket.own_count;
    layout_.ToHost(*backend_, b, bucket.own_begin, own_end, *values, image);
    GRPO_RETURN_IF_ERROR(collective_->AllGather(absl::MakeSpan(image, bucket.count), bucket.shard_counts));
    layout_.ToDevice(*backend_, b, 0, bucket.own_begin, image, values);
    layout_.ToDevice(*backend_, b, own_end, bucket.count, image, values);
  }
  return absl::OkStatus();
}

absl::Status ShardedAdamW::SaveShard(const std::string& dir) const {
  const int64_t own = layout_.own_elements();
  Tensor m = Tensor::Zeros(DType::kF32, {own}), v = Tensor::Zeros(DType::kF32, {own});
  if (own > 0) {
    backend_->CopyDeviceToHost(exp_avg_.data(), m.mutable_raw_data(), m.nbytes());
    backend_->CopyDeviceToHost(exp_avg_sq_.data(), v.mutable_raw_data(), v.nbytes());
    backend_->Synchronize();
  }
  return WriteSafetensors(dir + "/" + ShardName(collective_->rank(), collective_->size()),
                          {{"exp_avg", m}, {"exp_avg_sq", v}},
                          {{"format", kShardFormat},
                           {"step", std::to_string(step_)},
                           {"total", std::to_string(layout_.total_elements())},
                           {"runs", FormatRuns(layout_.own_runs())}});
}

absl::Status ShardedAdamW::LoadShard(const std::string& dir) {
  GRPO_ASSIGN_OR_RETURN(OptimizerRange r, ReadOptimizerRuns(dir, specs_, layout_.own_runs()));
  const int64_t own = layout_.own_elements();
  if (own > 0) {
    backend_->CopyHostToDevice(r.exp_avg.data(), exp_avg_.raw(), own * kBytes);
    backend_->CopyHostToDevice(r.exp_avg_sq.data(), exp_avg_sq_.raw(), own * kBytes);
  }
  step_ = r.step;
  return absl::OkStatus();
}

}  // namespace grpo
