#include "rollout/weight_stream.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <new>

#include <sys/mman.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/crc32c.h"
#include "core/fp8_block.h"
#include "core/thread_pool.h"

namespace grpo {
namespace {

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08X", v);
  return buf;
}

Shape ScaleGrid(const Shape& weight) {
  return {(weight[0] + kFp8BlockSize - 1) / kFp8BlockSize,
          (weight[1] + kFp8BlockSize - 1) / kFp8BlockSize};
}

Shape ChunkShape(const grpo::v1::WeightUpdateChunk& c) {
  Shape s;
  for (uint64_t d : c.shape()) s.push_back(static_cast<int64_t>(d));
  return s;
}

}  // namespace

absl::StatusOr<grpo::v1::DType> ToProtoDType(DType d) {
  switch (d) {
    case DType::kF32: return grpo::v1::DTYPE_F32;
    case DType::kBF16: return grpo::v1::DTYPE_BF16;
    case DType::kF16: return grpo::v1::DTYPE_F16;
    case DType::kF8E4M3: return grpo::v1::DTYPE_F8_E4M3;
    default:
      return absl::InvalidArgumentError("dtype " + std::string(DTypeName(d)) +
                                     " cannot be sent in a weight update");
  }
}

absl::StatusOr<DType> FromProtoDType(grpo::v1::DType d) {
  switch (d) {
    case grpo::v1::DTYPE_F32: return DType::kF32;
    case grpo::v1::DTYPE_BF16: return DType::kBF16;
    case grpo::v1::DTYPE_F16: return DType::kF16;
    case grpo::v1::DTYPE_F8_E4M3: return DType::kF8E4M3;
    default: return absl::InvalidArgumentError("unsupported wire dtype " + std::to_string(d));
  }
}

namespace {

// Freed big weight buffers, kept for the next update (up to kMaxCachedBytes): an engine
// receives the same tensor sizes every step, and reusing memory it has already touched avoids
// the page faults of fresh memory, which dominated the cost of an update (see
// docs/PERFORMANCE.md, "Weight push").
class BufferCache {
 public:
  static constexpr size_t kMaxCachedBytes = size_t{8} << 30;
  static BufferCache& Get() {
    static BufferCache* cache = new BufferCache;  // never destroyed: buffers may outlive main
    return *cache;
  }
  void* Take(size_t len) {
    absl::MutexLock lock(&mu_);
    const auto it = free_.find(len);
    if (it == free_.end()) return nullptr;
    void* p = it->second;
    free_.erase(it);
    cached_ -= len;
    return p;
  }
  void Give(void* p, size_t len) {
    {
      absl::MutexLock lock(&mu_);
      if (cached_ + len <= kMaxCachedBytes) {
        free_.emplace(len, p);
        cached_ += len;
        return;
      }
    }
    munmap(p, len);
  }

 private:
  absl::Mutex mu_;
  std::multimap<size_t, void*> free_ ABSL_GUARDED_BY(mu_);
  size_t cached_ ABSL_GUARDED_BY(mu_) = 0;
};

// A buffer for one staged or assembled tensor; its contents are unspecified (callers overwrite
// every byte). Big ones are anonymous mappings with transparent huge pages requested (madvise),
// recycled through BufferCache when released.
std::pair<uint8_t*, std::shared_ptr<const void>> NewWeightBuffer(size_t n) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (n >= kHuge) {
    const size_t len = (n + kHuge - 1) / kHuge * kHuge + kHuge;  // room to align to 2 MiB
    void* p = BufferCache::Get().Take(len);
    if (p == nullptr) {
      p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) p = nullptr;
    }
    if (p != nullptr) {
      const uintptr_t aligned = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge;
      madvise(reinterpret_cast<void*>(aligned), len - (aligned - reinterpret_cast<uintptr_t>(p)),
              MADV_HUGEPAGE);
      return {reinterpret_cast<uint8_t*>(aligned),
              std::shared_ptr<const void>(p, [len](const void* q) {
                BufferCache::Get().Give(const_cast<void*>(q), len);
              })};
    }
  }
  void* p = std::calloc(std::max<size_t>(n, 1), 1);
  if (p == nullptr) throw std::bad_alloc();  // an error for the caller, not an abort
  return {static_cast<uint8_t*>(p), std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); })};
}

}  // namespace

std::pair<Tensor, uint8_t*> NewWeightTensor(DType dtype, Shape shape) {
  const size_t n = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
  auto [p, owner] = NewWeightBuffer(n);
  return {Tensor::View(dtype, std::move(shape), p, std::move(owner)), p};
}

absl::StatusOr<std::vector<Tensor>> WireToServing(const std::vector<WireInput>& in) {
  struct Job {
    size_t tensor;
    int64_t begin, end;  // rows of an FP8 weight, elements otherwise
  };
  constexpr int64_t kJobElements = int64_t{1} << 20;
  std::vector<Tensor> out(in.size());
  std::vector<float*> dst(in.size(), nullptr);
  std::vector<Job> jobs;
  std::vector<size_t> decoded;  // inputs that need a new f32 tensor
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = *in[i].data;
    if (t.dtype() == DType::kF32) {
      out[i] = t.writable() ? t : t.Clone();
      continue;
    }
    if (t.dtype() == DType::kF8E4M3) {
      const Tensor* s = in[i].scale_inv;
      if (s == nullptr) return absl::InvalidArgumentError("tensor " + std::to_string(i) + ": FP8 without its scale tensor");
      if (t.rank() != 2 || s->dtype() != DType::kF32 || s->rank() != 2 ||
          s->shape() != ScaleGrid(t.shape())) {
        return absl::InvalidArgumentError("tensor " + std::to_string(i) + ": FP8 " +
                                       ShapeToString(t.shape()) + " needs F32 scales " +
                                       (t.rank() == 2 ? ShapeToString(ScaleGrid(t.shape())) : "") +
                                       ", got " + std::string(DTypeName(s->dtype())) + " " +
                                       ShapeToString(s->shape()));
      }
      const int64_t rows_per = std::max<int64_t>(1, kJobElements / std::max<int64_t>(1, t.dim(1)));
      for (int64_t r = 0; r < t.dim(0); r += rows_per) jobs.push_back({i, r, std::min(t.dim(0), r + rows_per)});
    } else if (t.dtype() == DType::kBF16 || t.dtype() == DType::kF16) {
      for (int64_t e = 0; e < t.numel(); e += kJobElements) jobs.push_back({i, e, std::min(t.numel(), e + kJobElements)});
    } else {
      return absl::InvalidArgumentError("tensor " + std::to_string(i) + ": cannot serve dtype " +
                                     std::string(DTypeName(t.dtype())));
    }
    decoded.push_back(i);
  }
  // Outputs are ordinary writable tensors (models update f32 in place), allocated on all threads:
  // zero-filling fresh memory is a large part of the cost.
  std::atomic<size_t> next_alloc{0};
  ThreadPool& pool = ThreadPool::Default();
  pool.ParallelFor(pool.num_threads(), 1, [&](int64_t, int64_t) {
    for (size_t k; (k = next_alloc.fetch_add(1)) < decoded.size();) {
      const size_t i = decoded[k];
      out[i] = Tensor::Zeros(DType::kF32, in[i].data->shape());
      dst[i] = out[i].mutable_data<float>();
    }
  });
  std::atomic<size_t> next{0};
  pool.ParallelFor(pool.num_threads(), 1, [&](int64_t, int64_t) {
    for (size_t j; (j = next.fetch_add(1)) < jobs.size();) {
      const Job& job = jobs[j];
      const Tensor& t = *in[job.tensor].data;
      if (t.dtype() == DType::kF8E4M3) {
        DequantizeFp8BlockRows(t, *in[job.tensor].scale_inv, job.begin, job.end,
                               dst[job.tensor] + job.begin * t.dim(1));
      } else {
        const auto* src = static_cast<const uint8_t*>(t.raw_data()) + job.begin * DTypeSize(t.dtype());
        ConvertToF32(t.dtype(), src, static_cast<size_t>(job.end - job.begin), dst[job.tensor] + job.begin);
      }
    }
  });
  return out;
}

absl::StatusOr<Tensor> WireToServing(const Tensor& data, const Tensor* scale_inv) {
  GRPO_ASSIGN_OR_RETURN(std::vector<Tensor> out, WireToServing({WireInput{&data, scale_inv}}));
  return std::move(out[0]);
}

namespace {

constexpr uint32_t kF32ExponentBits = 0x7f800000u;  // all ones: NaN or an infinity

// Whether f32 bits p[0, n) hold a NaN or an infinity. Blocks of a constant 256 elements without
// branches, which the compiler vectorizes at -O2 (~14 GB/s on one core; a plain loop: ~4).
bool AnyNonFinite(const uint32_t* p, int64_t n) {
  int64_t k = 0;
  for (; k + 256 <= n; k += 256) {
    uint32_t any = 0;
    for (int i = 0; i < 256; ++i) any |= (~p[k + i] & kF32ExponentBits) == 0 ? 1u : 0u;
    if (any != 0) return true;
  }
  for (; k < n; ++k) {
    if ((~p[k] & kF32ExponentBits) == 0) return true;
  }
  return false;
}

// InvalidArgument naming the first tensor (in `specs` order) with a NaN or an infinity and its
// first such element. Runs on the shared pool over pieces of ~1M elements; a piece is searched
// element by element only if AnyNonFinite finds one.
absl::Status CheckFinite(const std::vector<ParameterSpec>& specs, const std::vector<Tensor>& values) {
  struct Job {
    size_t tensor;
    int64_t begin, end;
  };
  constexpr int64_t kJobElements = int64_t{1} << 20;
  std::vector<Job> jobs;
  for (size_t i = 0; i < values.size(); ++i) {
    for (int64_t e = 0; e < values[i].numel(); e += kJobElements) {
      jobs.push_back({i, e, std::min(values[i].numel(), e + kJobElements)});
    }
  }
  std::vector<int64_t> first_bad(jobs.size(), -1);
  std::atomic<size_t> next{0};
  ThreadPool& pool = ThreadPool::Default();
  pool.ParallelFor(pool.num_threads(), 1, [&](int64_t, int64_t) {
    for (size_t j; (j = next.fetch_add(1)) < jobs.size();) {
      const Job& job = jobs[j];
      const auto* bits = static_cast<const uint32_t*>(values[job.tensor].raw_data());
      if (!AnyNonFinite(bits + job.begin, job.end - job.begin)) continue;
      for (int64_t k = job.begin; k < job.end; ++k) {
        if ((~bits[k] & kF32ExponentBits) == 0) {
          first_bad[j] = k;
          break;
        }
      }
    }
  });
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (first_bad[j] < 0) continue;
    const Tensor& t = values[jobs[j].tensor];
    const float v = static_cast<const float*>(t.raw_data())[first_bad[j]];
    return absl::InvalidArgumentError("tensor '" + specs[jobs[j].tensor].name + "' element " +
                                      std::to_string(first_bad[j]) + " is " +
                                      (std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf") +
                                      " after decoding: weights must be finite");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WeightAssembler> WeightAssembler::Create(const ModelConfig& config,
                                                WeightAssemblerOptions options) {
  if (options.max_total_bytes == 0) {
    return absl::InvalidArgumentError("WeightAssemblerOptions.max_total_bytes must be > 0");
  }
  WeightAssembler a;
  a.options_ = options;
  a.specs_ = ExpectedParameters(config);
  if (a.specs_.empty()) return absl::InvalidArgumentError("the model config implies no tensors");
  for (const ParameterSpec& spec : a.specs_) {
    a.expected_[spec.name] = Expected{spec, false, ""};
    if (spec.is_matrix) {
      ParameterSpec scale{spec.name + "_scale_inv", ScaleGrid(spec.shape), false, false};
      a.expected_[scale.name] = Expected{scale, true, spec.name};
    }
  }
  return a;
}

absl::Status WeightAssembler::Fail(absl::Status s) {
  const std::string prefix =
      have_version_ ? "weight update v" + std::to_string(version_) : "weight update";
  error_ = grpo::WithContext(s, prefix);
  staged_.clear();
  current_.clear();
  return error_;
}

absl::Status WeightAssembler::BeginStream(const grpo::v1::WeightUpdateChunk& chunk) {
  const uint32_t count = std::max<uint32_t>(chunk.shard_count(), 1);
  const std::string shard = "shard " + std::to_string(chunk.shard_index()) + " of " + std::to_string(count);
  if (chunk.shard_index() >= count) {
    return Fail(absl::InvalidArgumentError(shard + ": shard_index must be below shard_count"));
  }
  if (!have_version_) {
    if (chunk.version() == 0) {
      return Fail(absl::InvalidArgumentError("version 0 is reserved for the weights loaded from disk"));
    }
    if (chunk.version() <= options_.serving_version) {
      return Fail(absl::InvalidArgumentError("version " + std::to_string(chunk.version()) +
                                             " is not newer than the serving version " +
                                             std::to_string(options_.serving_version)));
    }
    if (chunk.version() - options_.serving_version > options_.max_version_step) {
      return Fail(absl::InvalidArgumentError(
          "version " + std::to_string(chunk.version()) + " is more than " +
          std::to_string(options_.max_version_step) + " (max_version_step) beyond the serving version " +
          std::to_string(options_.serving_version)));
    }
    have_version_ = true;
    version_ = chunk.version();
    shard_count_ = count;
  } else {
    // A later shard stream. Nothing of it is staged yet: these refusals leave the shards that
    // arrived intact (the assembler is not poisoned).
    GRPO_RETURN_IF_ERROR(CheckNextShard(chunk.version(), chunk.shard_index(), chunk.shard_count()));
  }
  stream_open_ = true;
  stream_shard_ = chunk.shard_index();
  return absl::OkStatus();
}

absl::Status WeightAssembler::CheckNextShard(uint64_t version, uint32_t shard_index, uint32_t shard_count) const {
  if (!have_version_) return absl::OkStatus();
  const uint32_t count = std::max<uint32_t>(shard_count, 1);
  const std::string which = "weight update v" + std::to_string(version_) + ": shard " + std::to_string(shard_index) +
                            " of " + std::to_string(count);
  if (version != version_) {
    return absl::FailedPreconditionError(which + " of version " + std::to_string(version) + " arrived while version " +
                                         std::to_string(version_) +
                                         " is being assembled (a stale or mismatched shard)");
  }
  if (count != shard_count_) {
    return absl::InvalidArgumentError(which + ": the version is being assembled from " +
                                      std::to_string(shard_count_) + " shards (mismatched shard_count)");
  }
  if (shards_done_.count(shard_index)) return absl::InvalidArgumentError(which + " arrived twice");
  return absl::OkStatus();
}

absl::Status WeightAssembler::Merge(WeightAssembler&& shard) {
  if (!error_.ok()) return error_;
  if (finished_) return absl::FailedPreconditionError("weight update: Merge after Finish");
  if (!shard.error_.ok()) return shard.error_;
  if (stream_open_ || shard.finished_ || shard.stream_open_ || shard.shards_done_.size() != 1) {
    return absl::FailedPreconditionError(
        "weight update: Merge takes one whole shard stream, ended, into an assembler between streams");
  }
  const uint32_t index = *shard.shards_done_.begin();
  grpo::v1::WeightUpdateChunk first;  // the shard's first message, as BeginStream would see it
  first.set_version(shard.version_);
  first.set_shard_index(index);
  first.set_shard_count(shard.shard_count_);
  GRPO_RETURN_IF_ERROR(BeginStream(first));
  stream_open_ = false;
  const std::string which = "shard " + std::to_string(index) + " of " + std::to_string(shard_count_);
  std::vector<std::pair<size_t, std::string>> in_order;  // the shard's tensors in stream order
  for (const auto& [name, st] : shard.staged_) {
    if (staged_.count(name)) {
      return Fail(absl::InvalidArgumentError(which + ": tensor '" + name + "' was already received in another shard"));
    }
    in_order.emplace_back(st.order, name);
  }
  if (staged_bytes_ + shard.staged_bytes_ > options_.max_total_bytes) {
    return Fail(absl::ResourceExhaustedError(which + ": staging its " + std::to_string(shard.staged_bytes_) +
                                             " bytes would exceed the " + std::to_string(options_.max_total_bytes) +
                                             "-byte limit of one update (" + std::to_string(staged_bytes_) +
                                             " staged)"));
  }
  std::sort(in_order.begin(), in_order.end());
  for (const auto& [order, name] : in_order) {
    Staged& s = staged_[name];
    s = std::move(shard.staged_.at(name));
    s.order = staged_.size() - 1;
  }
  staged_bytes_ += shard.staged_bytes_;
  bytes_received_ += shard.bytes_received_;
  shards_done_.insert(index);
  shard.staged_.clear();
  return absl::OkStatus();
}

absl::Status WeightAssembler::Add(const grpo::v1::WeightUpdateChunk& chunk) {
  if (!error_.ok()) return error_;
  if (finished_) return absl::FailedPreconditionError("weight update: Add after Finish");
  if (have_summary_) {
    return Fail(absl::InvalidArgumentError("a message (tensor '" + chunk.tensor_name() +
                                        "') arrived after the summary, which must be last"));
  }
  if (!stream_open_) {
    GRPO_RETURN_IF_ERROR(BeginStream(chunk));
  } else if (chunk.version() != version_) {
    return Fail(absl::InvalidArgumentError("message for tensor '" + chunk.tensor_name() +
                                        "' at offset " + std::to_string(chunk.offset()) +
                                        " has version " + std::to_string(chunk.version()) +
                                        "; the stream is version " + std::to_string(version_)));
  } else if (chunk.shard_index() != stream_shard_ || std::max<uint32_t>(chunk.shard_count(), 1) != shard_count_) {
    return Fail(absl::InvalidArgumentError("message for tensor '" + chunk.tensor_name() + "' says shard " +
                                           std::to_string(chunk.shard_index()) + " of " +
                                           std::to_string(chunk.shard_count()) + "; the stream is shard " +
                                           std::to_string(stream_shard_) + " of " + std::to_string(shard_count_)));
  }
  if (!chunk.tensor_name().empty()) {
    GRPO_RETURN_IF_ERROR(AddData(chunk));
  } else if (!chunk.data().empty()) {
    return Fail(absl::InvalidArgumentError("a message carries data but no tensor_name"));
  } else if (!chunk.has_summary()) {
    return Fail(absl::InvalidArgumentError("a message carries neither a tensor nor the summary"));
  }
  if (chunk.has_summary()) {
    if (!current_.empty()) {
      return Fail(absl::InvalidArgumentError(
          "summary arrived while tensor '" + current_ + "' is incomplete (" +
          std::to_string(staged_[current_].received) + " of " +
          std::to_string(staged_[current_].data.nbytes()) + " bytes)"));
    }
    have_summary_ = true;
    summary_ = chunk.summary();
    absl::Status s = CheckSummary(summary_);
    if (!s.ok()) return Fail(s);
  }
  return absl::OkStatus();
}

absl::Status WeightAssembler::AddData(const grpo::v1::WeightUpdateChunk& c) {
  const std::string& name = c.tensor_name();
  const std::string at = "tensor '" + name + "' chunk at offset " + std::to_string(c.offset());
  const auto exp = expected_.find(name);
  if (exp == expected_.end()) {
    return Fail(absl::NotFoundError("unknown tensor '" + name + "': not a tensor of this model"));
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(c.data().data());
  const std::span<const uint8_t> data(bytes, c.data().size());
  const uint32_t crc = Crc32c(data);
  if (crc != c.crc32c()) {
    return Fail(absl::DataLossError(at + ": crc32c mismatch (data has " + Hex(crc) +
                                   ", message says " + Hex(c.crc32c()) + ")"));
  }
  auto dtype = FromProtoDType(c.dtype());
  if (!dtype.ok()) return Fail(grpo::WithContext(dtype.status(), at));
  const Shape shape = ChunkShape(c);
  const ParameterSpec& spec = exp->second.spec;

  if (current_.empty()) {  // the first chunk of a tensor
    if (staged_.count(name)) {
      return Fail(absl::InvalidArgumentError(at + ": the tensor was already received in full "
                                          "(duplicated chunk or tensor sent twice)"));
    }
    if (shape != spec.shape) {
      return Fail(absl::InvalidArgumentError(at + ": shape " + ShapeToString(shape) +
                                          ", the model's is " + ShapeToString(spec.shape)));
    }
    if (exp->second.is_scale) {
      if (*dtype != DType::kF32) {
        return Fail(absl::InvalidArgumentError(at + ": scale tensors must be F32, got " +
                                            std::string(DTypeName(*dtype))));
      }
    } else if (*dtype == DType::kF8E4M3) {
      if (!spec.is_matrix) {
        return Fail(absl::InvalidArgumentError(at + ": F8_E4M3 is only allowed for 2-D projection "
                                            "weights, not this tensor"));
      }
    } else if (*dtype != DType::kF32 && *dtype != DType::kBF16 && *dtype != DType::kF16) {
      return Fail(absl::InvalidArgumentError(at + ": dtype " + std::string(DTypeName(*dtype)) +
                                          " is not a weight dtype"));
    }
    const uint64_t nbytes = static_cast<uint64_t>(NumElements(shape)) * DTypeSize(*dtype);
    if (staged_bytes_ + nbytes > options_.max_total_bytes) {
      return Fail(absl::ResourceExhaustedError(
          at + ": staging its " + std::to_string(nbytes) + " bytes would exceed the " +
          std::to_string(options_.max_total_bytes) + "-byte limit of one update (" +
          std::to_string(staged_bytes_) + " staged)"));
    }
    staged_bytes_ += nbytes;
    Staged& s = staged_[name];
    if (*dtype == DType::kF32 && !exp->second.is_scale) {
      // Served as is, so it must be an ordinary writable tensor.
      s.data = Tensor::Zeros(*dtype, shape);
      s.dst = static_cast<uint8_t*>(s.data.mutable_raw_data());
    } else {
      auto [buffer, owner] = NewWeightBuffer(nbytes);
      s.dst = buffer;
      s.data = Tensor::View(*dtype, shape, buffer, std::move(owner));
    }
    s.order = staged_.size() - 1;
    ++stream_tensors_;
    current_ = name;
  } else if (name != current_) {
    const Staged& cur = staged_[current_];
    return Fail(absl::InvalidArgumentError(
        at + ": started while tensor '" + current_ + "' is incomplete (" +
        std::to_string(cur.received) + " of " + std::to_string(cur.data.nbytes()) +
        " bytes; a chunk was dropped or is missing is_last)"));
  }
  Staged& s = staged_[name];
  if (*dtype != s.data.dtype() || shape != s.data.shape()) {
    return Fail(absl::InvalidArgumentError(at + ": dtype/shape " + std::string(DTypeName(*dtype)) +
                                        ShapeToString(shape) + " differ from the tensor's first "
                                        "chunk " + std::string(DTypeName(s.data.dtype())) +
                                        ShapeToString(s.data.shape())));
  }
  if (*dtype == DType::kF8E4M3) {
    const auto& f = c.fp8();
    if (!c.has_fp8() || f.block_shape_size() != 2 || f.block_shape(0) != kFp8BlockSize ||
        f.block_shape(1) != kFp8BlockSize || f.scale_tensor_name() != name + "_scale_inv") {
      return Fail(absl::InvalidArgumentError(at + ": an F8_E4M3 chunk needs fp8 with block_shape "
                                          "[128, 128] and scale_tensor_name '" + name +
                                          "_scale_inv'"));
    }
  } else if (c.has_fp8()) {
    return Fail(absl::InvalidArgumentError(at + ": fp8 scaling set on a non-FP8 tensor"));
  }
  if (c.offset() != s.received) {
    return Fail(absl::InvalidArgumentError(
        at + (c.offset() < s.received ? ": overlaps bytes already received" : ": leaves a gap") +
        "; expected offset " + std::to_string(s.received) +
        " (chunks dropped, duplicated or out of order)"));
  }
  const uint64_t total = s.data.nbytes();
  if (data.size() > total - s.received) {
    return Fail(absl::InvalidArgumentError(at + ": " + std::to_string(data.size()) +
                                        " bytes run past the tensor's " + std::to_string(total) +
                                        " bytes"));
  }
  if (!data.empty()) {
    std::memcpy(s.dst + s.received, data.data(), data.size());
  }
  s.received += data.size();
  bytes_received_ += data.size();
  stream_bytes_ += data.size();
  stream_crc_ = Crc32cExtend(stream_crc_, data);
  if (c.is_last()) {
    if (s.received != total) {
      return Fail(absl::InvalidArgumentError(at + ": is_last, but only " +
                                          std::to_string(s.received) + " of " +
                                          std::to_string(total) + " bytes arrived"));
    }
    s.complete = true;
    current_.clear();
  } else if (s.received == total && total > 0) {
    return Fail(absl::InvalidArgumentError(at + ": completes the tensor but is_last is not set"));
  }
  return absl::OkStatus();
}

absl::Status WeightAssembler::CheckSummary(const grpo::v1::WeightUpdateSummary& s) const {
  if (s.version() != version_) {
    return absl::InvalidArgumentError("summary version " + std::to_string(s.version()) +
                                   " differs from the stream's " + std::to_string(version_));
  }
  if (s.num_tensors() != stream_tensors_) {
    return absl::DataLossError("summary says " + std::to_string(s.num_tensors()) +
                              " tensors, " + std::to_string(stream_tensors_) + " arrived");
  }
  if (s.total_bytes() != stream_bytes_) {
    return absl::DataLossError("summary says " + std::to_string(s.total_bytes()) +
                              " total bytes, " + std::to_string(stream_bytes_) + " arrived");
  }
  if (s.crc32c() != stream_crc_) {
    return absl::DataLossError("summary crc32c " + Hex(s.crc32c()) + " differs from the " +
                              Hex(stream_crc_) + " of the data received");
  }
  return absl::OkStatus();
}

absl::Status WeightAssembler::EndStream() {
  if (!error_.ok()) return error_;
  if (finished_) return absl::FailedPreconditionError("weight update: EndStream after Finish");
  if (!have_summary_) {
    return Fail(absl::InvalidArgumentError(
        "missing summary: the stream ended without its final summary message" +
        (current_.empty() ? std::string() : " (tensor '" + current_ + "' incomplete)")));
  }
  shards_done_.insert(stream_shard_);
  stream_open_ = false;
  have_summary_ = false;
  stream_tensors_ = 0;
  stream_bytes_ = 0;
  stream_crc_ = 0;
  return absl::OkStatus();
}

uint32_t WeightAssembler::shards_missing() const {
  return have_version_ ? shard_count_ - static_cast<uint32_t>(shards_done_.size()) : 1;
}

absl::StatusOr<StagedWeights> WeightAssembler::Finish() {
  if (!error_.ok()) return error_;
  if (finished_) return absl::FailedPreconditionError("weight update: Finish called twice");
  if (stream_open_ || shards_done_.empty()) GRPO_RETURN_IF_ERROR(EndStream());
  if (shards_missing() > 0) {
    std::string missing;
    for (uint32_t i = 0; i < shard_count_; ++i) {
      if (!shards_done_.count(i)) missing += (missing.empty() ? "" : ", ") + std::to_string(i);
    }
    return Fail(absl::InvalidArgumentError(std::to_string(shards_done_.size()) + " of " +
                                           std::to_string(shard_count_) + " shards arrived (missing shard " +
                                           missing + ")"));
  }
  finished_ = true;
  for (const ParameterSpec& spec : specs_) {
    const auto it = staged_.find(spec.name);
    if (it == staged_.end()) {
      return Fail(absl::InvalidArgumentError("missing tensor '" + spec.name + "' (shape " +
                                          ShapeToString(spec.shape) + ")"));
    }
    const std::string scale = spec.name + "_scale_inv";
    if (it->second.data.dtype() == DType::kF8E4M3 && !staged_.count(scale)) {
      return Fail(absl::InvalidArgumentError("missing scale tensor '" + scale +
                                          "' of FP8 tensor '" + spec.name + "'"));
    }
  }
  for (const auto& [name, st] : staged_) {
    const Expected& e = expected_.at(name);
    if (e.is_scale && staged_.at(e.scale_of).data.dtype() != DType::kF8E4M3) {
      return Fail(absl::InvalidArgumentError("scale tensor '" + name + "' sent but '" + e.scale_of +
                                          "' is not FP8"));
    }
  }
  std::vector<WireInput> inputs;
  for (const ParameterSpec& spec : specs_) {
    const auto sc = staged_.find(spec.name + "_scale_inv");
    inputs.push_back({&staged_.at(spec.name).data, sc == staged_.end() ? nullptr : &sc->second.data});
  }
  absl::StatusOr<std::vector<Tensor>> values = WireToServing(inputs);
  if (!values.ok()) return Fail(values.status());
  if (absl::Status finite = CheckFinite(specs_, *values); !finite.ok()) return Fail(finite);
  StagedWeights out;
  out.version = version_;
  out.bytes = bytes_received_;
  for (size_t i = 0; i < specs_.size(); ++i) out.params.push_back({specs_[i], std::move((*values)[i])});
  if (options_.keep_wire_tensors) {
    out.wire.resize(staged_.size());
    for (auto& [name, st] : staged_) out.wire[st.order] = {name, std::move(st.data)};
  }
  staged_.clear();
  return out;
}

}  // namespace grpo
