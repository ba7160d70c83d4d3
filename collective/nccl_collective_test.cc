// Needs GPUs (tag `gpu`): every collective on 1 rank, and on 2..4 ranks when as many GPUs exist,
// checked against the same exact references as Gloo's test through a host-staging adapter.
#include "collective/nccl_collective.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "collective/collective_test_lib.h"
#include "cuda_runtime_api.h"
#include "gtest/gtest.h"

namespace grpo {
namespace {

// Presents an NCCL group as a host-memory one: copies each host buffer to the device, runs the
// collective there, copies the result back.
class HostStaging : public Collective {
 public:
  explicit HostStaging(std::unique_ptr<Collective> device) : device_(std::move(device)) {}
  int rank() const override { return device_->rank(); }
  int size() const override { return device_->size(); }
  Memory memory() const override { return Memory::kHost; }
  std::string engine() const override { return device_->engine(); }

  absl::Status AllReduceSum(absl::Span<float> d) override {
    return Staged(d, [&](absl::Span<float> x) { return device_->AllReduceSum(x); });
  }
  absl::Status AllReduceSum(absl::Span<double> d) override {
    return Staged(d, [&](absl::Span<double> x) { return device_->AllReduceSum(x); });
  }
  absl::Status ReduceScatterSum(absl::Span<float> d, absl::Span<const size_t> c) override {
    return Staged(d, [&](absl::Span<float> x) { return device_->ReduceScatterSum(x, c); });
  }
  absl::Status AllGather(absl::Span<float> d, absl::Span<const size_t> c) override {
    return Staged(d, [&](absl::Span<float> x) { return device_->AllGather(x, c); });
  }
  absl::Status Broadcast(absl::Span<float> d, int root) override {
    return Staged(d, [&](absl::Span<float> x) { return device_->Broadcast(x, root); });
  }
  absl::Status Broadcast(absl::Span<uint8_t> d, int root) override {
    return Staged(d, [&](absl::Span<uint8_t> x) { return device_->Broadcast(x, root); });
  }
  absl::Status Barrier() override { return device_->Barrier(); }

 private:
  template <class T, class F>
  absl::Status Staged(absl::Span<T> host, F&& run) {
    T* dev = nullptr;
    const size_t bytes = host.size() * sizeof(T);
    if (cudaMalloc(reinterpret_cast<void**>(&dev), bytes) != cudaSuccess) return absl::ResourceExhaustedError("cudaMalloc");
    cudaMemcpy(dev, host.data(), bytes, cudaMemcpyHostToDevice);
    absl::Status s = run(absl::Span<T>(dev, host.size()));
    cudaMemcpy(host.data(), dev, bytes, cudaMemcpyDeviceToHost);
    cudaFree(dev);
    return s;
  }

  std::unique_ptr<Collective> device_;
};

// The number of GPUs, asked in a child process so this one does not initialize CUDA before fork.
int DeviceCount() {
  auto r = testing_collective::RunRanks(1, [](int) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    return std::string(static_cast<size_t>(n), 'g');
  });
  return static_cast<int>(r[0].output.size());
}

TEST(NcclCollective, EveryCollectiveGivesTheReferenceValues) {
  const int devices = DeviceCount();
  ASSERT_GE(devices, 1) << "no GPU";
  for (int n = 1; n <= std::min(devices, 4); ++n) {
    const std::string dir = testing_collective::FreshDirectory(absl::StrCat("nccl", n));
    auto results = testing_collective::RunRanks(n, [&](int rank) -> std::string {
      cudaSetDevice(rank);
      CollectiveOptions o;
      o.rank = rank;
      o.size = n;
      o.rendezvous_dir = dir;
      o.timeout = absl::Seconds(60);
      auto c = ConnectNccl(o);
      if (!c.ok()) return std::string(c.status().message());
      HostStaging staged(std::move(*c));
      return testing_collective::CheckEveryCollective(staged);
    });
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(results[r].exit_code, 0) << n << " ranks, rank " << r << ": " << results[r].output;
    }
  }
}

}  // namespace
}  // namespace grpo
