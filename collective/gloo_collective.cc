#include "collective/gloo_collective.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "collective/peer_identity.h"
#include "core/status.h"
#include "gloo/allgatherv.h"
#include "gloo/allreduce.h"
#include "gloo/alltoallv.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/transport/tcp/device.h"

namespace grpo {
namespace {

std::chrono::milliseconds ToChrono(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

class GlooCollective : public Collective {
 public:
  GlooCollective(const CollectiveOptions& options, std::shared_ptr<gloo::rendezvous::FileStore> store,
                 std::shared_ptr<gloo::Context> context)
      : options_(options), store_(std::move(store)), context_(std::move(context)) {}

  int rank() const override { return options_.rank; }
  int size() const override { return options_.size; }
  Memory memory() const override { return Memory::kHost; }
  std::string engine() const override { return "gloo"; }

  absl::Status AllReduceSum(absl::Span<float> data) override { return AllReduceT(data); }
  absl::Status AllReduceSum(absl::Span<double> data) override { return AllReduceT(data); }

  // Each rank sends every other rank that rank's shard of its buffer (Gloo's alltoallv: one
  // exchange with each peer, the (N-1)/N of the buffer a reduce-scatter must send) and adds the N
  // copies of its own shard it received, in rank order 0..N-1. The sum's order is fixed by the
  // ranks alone, whatever the buffer's length. (Gloo 0.5's own reduce-scatter,
  // ReduceScatterHalvingDoubling, returned wrong sums for short buffers here: 7 elements on 3 and
  // 4 ranks.)
  absl::Status ReduceScatterSum(absl::Span<float> data, absl::Span<const size_t> counts) override {
    GRPO_RETURN_IF_ERROR(CheckCounts("reduce_scatter", data.size(), counts));
    if (size() == 1 || data.empty()) return Run("reduce_scatter", [] {});
    const size_t own = counts[rank()];
    received_.resize(own * size());
    GRPO_RETURN_IF_ERROR(Run("reduce_scatter", [&] {
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(data.data(), std::vector<int64_t>(counts.begin(), counts.end()));
      opts.setOutput(received_.data(), std::vector<int64_t>(size(), static_cast<int64_t>(own)));
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::alltoallv(opts);
    }));
    CountSent((data.size() - own) * sizeof(float));
    float* shard = data.data() + ShardOffset(counts, rank());
    std::copy(received_.begin(), received_.begin() + own, shard);
    for (int r = 1; r < size(); ++r) {
      const float* part = received_.data() + r * own;
      for (size_t k = 0; k < own; ++k) shard[k] += part[k];
    }
    return absl::OkStatus();
  }

  absl::Status AllGather(absl::Span<float> data, absl::Span<const size_t> counts) override {
    GRPO_RETURN_IF_ERROR(CheckCounts("all_gather", data.size(), counts));
    if (size() == 1 || data.empty()) return Run("all_gather", [] {});
    return Run("all_gather", [&] {
      gloo::AllgathervOptions opts(context_);
      opts.setOutput(data.data(), std::vector<size_t>(counts.begin(), counts.end()));
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::allgatherv(opts);  // no input given: in place, this rank's shard is already there
      CountSent(RingAllGatherBytes(counts, rank()));
    });
  }

  absl::Status Broadcast(absl::Span<float> data, int root) override { return BroadcastT(data, root); }
  absl::Status Broadcast(absl::Span<uint8_t> data, int root) override {
    return BroadcastT(data, root);
  }

  absl::Status Barrier() override {
    return Run("barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::barrier(opts);
    });
  }

 private:
  template <class T>
  absl::Status AllReduceT(absl::Span<T> data) {
    if (size() == 1 || data.empty()) return Run("all_reduce", [] {});
    return Run("all_reduce", [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data.data(), data.size());  // in place
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::allreduce(opts);
      CountSent(RingAllReduceBytes(data.size(), sizeof(T), size()));
    });
  }

  template <class T>
  absl::Status BroadcastT(absl::Span<T> data, int root) {
    if (root < 0 || root >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("collective broadcast: root ", root, " outside 0..", size() - 1));
    }
    if (size() == 1 || data.empty()) return Run("broadcast", [] {});
    return Run("broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data.data(), data.size());
      opts.setRoot(root);
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::broadcast(opts);
      CountSent(BinomialBroadcastBytes(data.size() * sizeof(T), rank(), root, size()));
    });
  }

  absl::Status CheckCounts(const char* op, size_t n, absl::Span<const size_t> counts) const {
    if (counts.size() != static_cast<size_t>(size())) {
      return absl::InvalidArgumentError(absl::StrCat("collective ", op, ": ", counts.size(),
                                                     " shard counts for ", size(), " ranks"));
    }
    size_t total = 0;
    for (size_t c : counts) total += c;
    if (total != n) {
      return absl::InvalidArgumentError(absl::StrCat("collective ", op, ": shard counts sum to ",
                                                     total, " but the buffer has ", n));
    }
    if (n > static_cast<size_t>(INT32_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat("collective ", op, ": ", n, " elements exceed 2^31-1; split the call"));
    }
    return absl::OkStatus();
  }

  uint32_t NextTag() { return next_tag_++; }

  // Runs one Gloo call, turning its exceptions into a Status that names the peer that failed.
  template <class F>
  absl::Status Run(const char* op, F&& call) {
    if (!broken_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("collective ", op, ": group already failed: ", broken_.message()));
    }
    try {
      call();
      return absl::OkStatus();
    } catch (const gloo::Exception& e) {
      broken_ = Failure(op, e.what());
      return broken_;
    }
  }

  absl::Status Failure(const char* op, const std::string& what) const;

  CollectiveOptions options_;
  std::shared_ptr<gloo::rendezvous::FileStore> store_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t next_tag_ = 1;
  absl::Status broken_;
  std::vector<float> received_;  // reduce-scatter: the N copies of this rank's shard
};

absl::Status GlooCollective::Failure(const char* op, const std::string& what) const {
  const std::string who = collective_internal::DescribeFailedPeers(
      collective_internal::FailedPeers(*store_, rank(), size(), what));
  const std::string msg = absl::StrCat("collective ", op, " on rank ", rank(), " of ", size(),
                                       " (gloo, timeout ", absl::FormatDuration(options_.timeout),
                                       "): ", who, what);
  if (what.find("imed out") != std::string::npos) return absl::DeadlineExceededError(msg);
  return absl::UnavailableError(msg);
}

absl::Status EnsureDirectory(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + path, errno);
  return absl::OkStatus();
}

// Gloo writes to sockets without MSG_NOSIGNAL: a write to a dead peer would kill this process
// with SIGPIPE instead of failing the call with an error that names the peer.
void IgnoreSigpipe() {
  struct sigaction old = {};
  if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> ConnectGloo(const CollectiveOptions& options) {
  GRPO_RETURN_IF_ERROR(ValidateCollectiveOptions(options));
  const std::string dir = options.rendezvous_dir + "/" + options.group;
  GRPO_RETURN_IF_ERROR(EnsureDirectory(options.rendezvous_dir));
  GRPO_RETURN_IF_ERROR(EnsureDirectory(dir));
  const std::string where = absl::StrCat("collective: rank ", options.rank, " of ", options.size,
                                         " joining gloo group in ", dir);
  IgnoreSigpipe();
  try {
    auto store = std::make_shared<gloo::rendezvous::FileStore>(dir);
    gloo::transport::tcp::attr attr;
    attr.hostname = options.host.empty() ? collective_internal::ThisHostName() : options.host;
    const std::string listen_ip = collective_internal::NumericAddress(attr.hostname);
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.size);
    context->setTimeout(ToChrono(options.timeout));
    context->connectFullMesh(*store, device);
    collective_internal::PublishIdentity(*store, options.rank, listen_ip);
    return std::unique_ptr<Collective>(new GlooCollective(options, store, context));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(where, ": ", e.what()));
  }
}

}  // namespace grpo
