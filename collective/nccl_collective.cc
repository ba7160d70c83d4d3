#include "collective/nccl_collective.h"

#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collective/peer_identity.h"
#include "core/status.h"
#include "cuda_runtime_api.h"
#include "gloo/rendezvous/file_store.h"
#include "nccl.h"

namespace grpo {
namespace {

constexpr char kUniqueIdKey[] = "nccl_unique_id";

class NcclCollective : public Collective {
 public:
  NcclCollective(const CollectiveOptions& options,
                 std::shared_ptr<gloo::rendezvous::FileStore> store, ncclComm_t comm,
                 cudaStream_t stream)
      : options_(options), store_(std::move(store)), comm_(comm), stream_(stream) {}

  ~NcclCollective() override {
    if (comm_ != nullptr) broken_.ok() ? ncclCommDestroy(comm_) : ncclCommAbort(comm_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (scratch_ != nullptr) cudaFree(scratch_);
  }

  int rank() const override { return options_.rank; }
  int size() const override { return options_.size; }
  Memory memory() const override { return Memory::kCudaDevice; }
  std::string engine() const override { return "nccl"; }

  absl::Status AllReduceSum(absl::Span<float> data) override {
    return Run("all_reduce", RingAllReduceBytes(data.size(), sizeof(float), size()), [&] {
      return ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat32, ncclSum, comm_,
                           stream_);
    });
  }
  absl::Status AllReduceSum(absl::Span<double> data) override {
    return Run("all_reduce", RingAllReduceBytes(data.size(), sizeof(double), size()), [&] {
      return ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat64, ncclSum, comm_,
                           stream_);
    });
  }

  absl::Status ReduceScatterSum(absl::Span<float> data, absl::Span<const size_t> counts) override {
    GRPO_RETURN_IF_ERROR(CheckCounts("reduce_scatter", data.size(), counts));
    const uint64_t sent = (data.size() - counts[rank()]) * sizeof(float);  // ring: N-1 shards
    if (AllEqual(counts)) {  // NCCL's in-place form: the own shard at rank * count
      const size_t count = counts[0];
      return Run("reduce_scatter", sent, [&] {
        return ncclReduceScatter(data.data(), data.data() + rank() * count, count, ncclFloat32,
                                 ncclSum, comm_, stream_);
      });
    }
    return Run("reduce_scatter", sent, [&] {  // uneven shards: one reduce per owner, in one group
      ncclGroupStart();
      for (int r = 0; r < size(); ++r) {
        float* shard = data.data() + ShardOffset(counts, r);
        ncclReduce(shard, shard, counts[r], ncclFloat32, ncclSum, r, comm_, stream_);
      }
      return ncclGroupEnd();
    });
  }

  absl::Status AllGather(absl::Span<float> data, absl::Span<const size_t> counts) override {
    GRPO_RETURN_IF_ERROR(CheckCounts("all_gather", data.size(), counts));
    const uint64_t sent = RingAllGatherBytes(counts, rank());
    if (AllEqual(counts)) {
      const size_t count = counts[0];
      return Run("all_gather", sent, [&] {
        return ncclAllGather(data.data() + rank() * count, data.data(), count, ncclFloat32, comm_,
                             stream_);
      });
    }
    return Run("all_gather", sent, [&] {  // uneven shards: each owner broadcasts its own
      ncclGroupStart();
      for (int r = 0; r < size(); ++r) {
        float* shard = data.data() + ShardOffset(counts, r);
        ncclBroadcast(shard, shard, counts[r], ncclFloat32, r, comm_, stream_);
      }
      return ncclGroupEnd();
    });
  }

  absl::Status Broadcast(absl::Span<float> data, int root) override {
    GRPO_RETURN_IF_ERROR(CheckRoot(root));
    return Run("broadcast", ChainBroadcastBytes(data.size() * sizeof(float), root), [&] {
      return ncclBroadcast(data.data(), data.data(), data.size(), ncclFloat32, root, comm_,
                           stream_);
    });
  }
  absl::Status Broadcast(absl::Span<uint8_t> data, int root) override {
    GRPO_RETURN_IF_ERROR(CheckRoot(root));
    return Run("broadcast", ChainBroadcastBytes(data.size(), root), [&] {
      return ncclBroadcast(data.data(), data.data(), data.size(), ncclUint8, root, comm_, stream_);
    });
  }

  // NCCL has no barrier: an all-reduce of one float on a scratch device buffer is one.
  absl::Status Barrier() override {
    if (scratch_ == nullptr && cudaMalloc(reinterpret_cast<void**>(&scratch_), sizeof(float)) != cudaSuccess) {
      return absl::ResourceExhaustedError("collective barrier: cudaMalloc of 4 bytes failed");
    }
    return Run("barrier", RingAllReduceBytes(1, sizeof(float), size()), [&] {
      return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_);
    });
  }

 private:
  static bool AllEqual(absl::Span<const size_t> counts) {
    for (size_t c : counts) {
      if (c != counts[0]) return false;
    }
    return true;
  }

  absl::Status CheckRoot(int root) const {
    if (root >= 0 && root < size()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("collective broadcast: root ", root, " outside 0..", size() - 1));
  }

  absl::Status CheckCounts(const char* op, size_t n, absl::Span<const size_t> counts) const {
    size_t total = 0;
    for (size_t c : counts) total += c;
    if (counts.size() != static_cast<size_t>(size()) || total != n) {
      return absl::InvalidArgumentError(absl::StrCat("collective ", op, ": ", counts.size(),
                                                     " shard counts summing to ", total, " for ",
                                                     size(), " ranks and a buffer of ", n));
    }
    return absl::OkStatus();
  }

  // NCCL broadcasts down a ring from the root: every rank but the last one forwards the buffer.
  uint64_t ChainBroadcastBytes(uint64_t bytes, int root) const {
    return rank() == (root + size() - 1) % size() ? 0 : bytes;
  }

  // Enqueues one NCCL call and waits for it within the timeout; counts `sent` bytes when it ran.
  template <class F>
  absl::Status Run(const char* op, uint64_t sent, F&& enqueue) {
    if (!broken_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("collective ", op, ": group already failed: ", broken_.message()));
    }
    ncclResult_t r = enqueue();
    if (r != ncclSuccess && r != ncclInProgress) {
      return broken_ = Failure(op, ncclGetErrorString(r), /*timed_out=*/false);
    }
    broken_ = Wait(op);
    if (broken_.ok()) CountSent(sent);
    return broken_;
  }

  absl::Status Wait(const char* op) {
    const absl::Time deadline = absl::Now() + options_.timeout;
    while (true) {
      cudaError_t done = cudaStreamQuery(stream_);
      if (done == cudaSuccess) return absl::OkStatus();
      if (done != cudaErrorNotReady) return Failure(op, cudaGetErrorString(done), false);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        return Failure(op, ncclGetErrorString(async), false);
      }
      if (absl::Now() > deadline) return Failure(op, "timed out", true);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  absl::Status Failure(const char* op, const std::string& what, bool timed_out) {
    const std::string who = collective_internal::DescribeFailedPeers(
        collective_internal::FailedPeers(*store_, rank(), size(), what));
    const std::string msg = absl::StrCat("collective ", op, " on rank ", rank(), " of ", size(),
                                         " (nccl, timeout ", absl::FormatDuration(options_.timeout),
                                         "): ", who, what);
    return timed_out ? absl::DeadlineExceededError(msg) : absl::UnavailableError(msg);
  }

  CollectiveOptions options_;
  std::shared_ptr<gloo::rendezvous::FileStore> store_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  float* scratch_ = nullptr;
  absl::Status broken_;
};

absl::Status EnsureDirectory(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + path, errno);
  return absl::OkStatus();
}

// Rank 0 creates the unique id and publishes it; the others wait for it (bounded).
absl::StatusOr<ncclUniqueId> ShareUniqueId(gloo::rendezvous::FileStore& store,
                                           const CollectiveOptions& options) {
  ncclUniqueId id;
  if (options.rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
      return absl::UnavailableError(absl::StrCat("ncclGetUniqueId: ", ncclGetErrorString(r)));
    }
    store.set(kUniqueIdKey, std::vector<char>(id.internal, id.internal + sizeof(id.internal)));
    return id;
  }
  store.wait({kUniqueIdKey}, std::chrono::milliseconds(absl::ToInt64Milliseconds(options.timeout)));
  std::vector<char> bytes = store.get(kUniqueIdKey);
  if (bytes.size() != sizeof(id.internal)) {
    return absl::DataLossError(absl::StrCat("nccl unique id in the store has ", bytes.size(),
                                            " bytes, want ", sizeof(id.internal)));
  }
  std::memcpy(id.internal, bytes.data(), bytes.size());
  return id;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> ConnectNccl(const CollectiveOptions& options) {
  GRPO_RETURN_IF_ERROR(ValidateCollectiveOptions(options));
  const std::string where = absl::StrCat("collective: rank ", options.rank, " of ", options.size,
                                         " joining nccl group");
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    return absl::UnavailableError(where + ": no CUDA device");
  }
  const std::string dir = options.rendezvous_dir + "/" + options.group;
  GRPO_RETURN_IF_ERROR(EnsureDirectory(options.rendezvous_dir));
  GRPO_RETURN_IF_ERROR(EnsureDirectory(dir));
  try {
    auto store = std::make_shared<gloo::rendezvous::FileStore>(dir);
    GRPO_ASSIGN_OR_RETURN(ncclUniqueId id, ShareUniqueId(*store, options));
    ncclComm_t comm = nullptr;
    ncclResult_t r = ncclCommInitRank(&comm, options.size, id, options.rank);
    if (r != ncclSuccess) {
      return absl::UnavailableError(absl::StrCat(where, ": ", ncclGetErrorString(r)));
    }
    cudaStream_t stream = nullptr;
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
      ncclCommDestroy(comm);
      return absl::UnavailableError(where + ": cudaStreamCreate failed");
    }
    collective_internal::PublishIdentity(*store, options.rank,
                                         collective_internal::ThisHostName());
    return std::unique_ptr<Collective>(new NcclCollective(options, store, comm, stream));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(where, " in ", dir, ": ", e.what()));
  }
}

}  // namespace grpo
