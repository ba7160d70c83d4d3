#include "learner/data_parallel.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace grpo {

std::vector<size_t> SplitByTokens(const std::vector<int64_t>& costs, int parts) {
  int64_t total = 0;
  for (int64_t c : costs) total += c;
  std::vector<size_t> bounds(parts + 1, costs.size());
  bounds[0] = 0;
  int64_t prefix = 0;
  size_t i = 0;
  for (int r = 1; r < parts; ++r) {
    // Range r-1 ends at the item boundary closest to r/parts of the total cost.
    const double target = static_cast<double>(total) * r / parts;
    while (i < costs.size() &&
           std::abs(prefix + costs[i] - target) <= std::abs(prefix - target)) {
      prefix += costs[i++];
    }
    bounds[r] = i;
  }
  return bounds;
}

namespace {

// One contiguous piece of a gradient buffer inside a host bucket.
struct Piece {
  size_t param;
  int64_t offset, count;
};

absl::Status ReduceBucket(Collective& c, Backend& backend, const std::vector<Piece>& pieces,
                          std::vector<float>* host, std::vector<Buffer>* grads) {
  int64_t at = 0;
  for (const Piece& p : pieces) {
    backend.CopyDeviceToHost((*grads)[p.param].data() + p.offset, host->data() + at,
                             p.count * static_cast<int64_t>(sizeof(float)));
    at += p.count;
  }
  backend.Synchronize();
  GRPO_RETURN_IF_ERROR(c.AllReduceSum(absl::MakeSpan(host->data(), at)));
  at = 0;
  for (const Piece& p : pieces) {
    backend.CopyHostToDevice(host->data() + at, (*grads)[p.param].data() + p.offset,
                             p.count * static_cast<int64_t>(sizeof(float)));
    at += p.count;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status AllReduceGradients(Collective& c, const std::vector<ParameterSpec>& specs,
                                std::vector<Buffer>* grads, int64_t bucket_elements) {
  if (c.size() == 1) return absl::OkStatus();
  if (c.memory() != Collective::Memory::kHost) {
    return absl::UnimplementedError("data parallel: gradients are staged through host memory; "
                                    "a device-memory collective (nccl) needs a device path");
  }
  if (grads->size() != specs.size() || bucket_elements <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("data parallel: ", grads->size(),
                                                   " gradients for ", specs.size(), " parameters"));
  }
  std::vector<float> host(bucket_elements);
  std::vector<Piece> pieces;
  int64_t filled = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].trainable) continue;
    Buffer& g = (*grads)[i];
    for (int64_t off = 0; off < g.numel();) {
      const int64_t n = std::min(g.numel() - off, bucket_elements - filled);
      pieces.push_back({i, off, n});
      filled += n;
      off += n;
      if (filled == bucket_elements) {
        GRPO_RETURN_IF_ERROR(ReduceBucket(c, *g.backend(), pieces, &host, grads));
        pieces.clear();
        filled = 0;
      }
    }
  }
  if (!pieces.empty()) {
    GRPO_RETURN_IF_ERROR(ReduceBucket(c, *(*grads)[pieces[0].param].backend(), pieces, &host, grads));
  }
  return absl::OkStatus();
}

absl::Status BroadcastParameters(Collective& c, CausalLM& model) {
  if (c.size() == 1) return absl::OkStatus();
  for (size_t i = 0; i < model.parameter_specs().size(); ++i) {
    Buffer& b = model.parameter_buffer(i);
    std::vector<uint8_t> host(b.bytes());
    b.backend()->CopyDeviceToHost(b.raw(), host.data(), b.bytes());
    b.backend()->Synchronize();
    GRPO_RETURN_IF_ERROR(c.Broadcast(absl::MakeSpan(host), 0));
    if (c.rank() != 0) b.backend()->CopyHostToDevice(host.data(), b.raw(), b.bytes());
  }
  return absl::OkStatus();
}

absl::Status BroadcastBytes(Collective& c, std::string* bytes, int root) {
  uint8_t len[8];
  uint64_t n = bytes->size();
  std::memcpy(len, &n, 8);
  GRPO_RETURN_IF_ERROR(c.Broadcast(absl::MakeSpan(len, 8), root));
  std::memcpy(&n, len, 8);
  bytes->resize(n);
  return c.Broadcast(absl::MakeSpan(reinterpret_cast<uint8_t*>(bytes->data()), n), root);
}

namespace {

template <class T>
void Put(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <class T>
void PutVector(std::string* out, const std::vector<T>& v) {
  Put<uint64_t>(out, v.size());
  out->append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  template <class T>
  bool Get(T* v) {
    if (s_.size() - at_ < sizeof(T)) return false;
    std::memcpy(v, s_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }
  template <class T>
  bool GetVector(std::vector<T>* v) {
    uint64_t n = 0;
    if (!Get(&n) || n > (s_.size() - at_) / sizeof(T)) return false;
    v->resize(n);
    std::memcpy(v->data(), s_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return true;
  }
  bool done() const { return at_ == s_.size(); }

 private:
  const std::string& s_;
  size_t at_ = 0;
};

}  // namespace

std::string SerializeGroups(const std::vector<RlGroup>& groups) {
  std::string out;
  Put<uint64_t>(&out, groups.size());
  for (const RlGroup& g : groups) {
    PutVector(&out, g.prompt);
    PutVector(&out, g.prompt_routing);
    Put<uint64_t>(&out, g.samples.size());
    for (const RlSample& s : g.samples) {
      PutVector(&out, s.completion);
      PutVector(&out, s.rollout_logprobs);
      PutVector(&out, s.routing);
      Put<double>(&out, s.advantage);
      Put<uint8_t>(&out, s.trained ? 1 : 0);
      PutVector(&out, s.token_advantages);
      PutVector(&out, s.loss_mask);
      PutVector(&out, s.teacher_logits);
    }
  }
  return out;
}

absl::StatusOr<std::vector<RlGroup>> ParseGroups(const std::string& bytes) {
  Reader in(bytes);
  uint64_t n = 0;
  std::vector<RlGroup> groups;
  bool ok = in.Get(&n) && n <= bytes.size();
  for (uint64_t g = 0; ok && g < n; ++g) {
    RlGroup group;
    uint64_t samples = 0;
    ok = in.GetVector(&group.prompt) && in.GetVector(&group.prompt_routing) && in.Get(&samples) &&
         samples <= bytes.size();
    for (uint64_t i = 0; ok && i < samples; ++i) {
      RlSample s;
      uint8_t trained = 0;
      ok = in.GetVector(&s.completion) && in.GetVector(&s.rollout_logprobs) &&
           in.GetVector(&s.routing) && in.Get(&s.advantage) && in.Get(&trained) &&
           in.GetVector(&s.token_advantages) && in.GetVector(&s.loss_mask) &&
           in.GetVector(&s.teacher_logits);
      s.trained = trained != 0;
      group.samples.push_back(std::move(s));
    }
    groups.push_back(std::move(group));
  }
  if (!ok || !in.done()) {
    return absl::DataLossError(absl::StrCat("data parallel: training groups message of ",
                                            bytes.size(), " bytes is malformed"));
  }
  return groups;
}

}  // namespace grpo
