#include "model/ops/cpu_guarded/guarded_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <new>
#include <vector>

namespace grpo {
namespace {

// Raw addresses, the way only a backend implementation can get them: to show that the host
// cannot use them.
struct Peek : Backend {
  static float* RawOf(DevicePtr<float> p) { return Raw(p); }
};

TEST(CpuGuarded, OpsAndTransfersWork) {
  Backend& be = CpuGuardedBackend();
  EXPECT_STREQ(be.name(), "cpu_guarded");
  const std::vector<float> a = {1, 2, 3, 4}, b = {10, 20, 30, 40};
  Buffer x = Upload(be, a), y = Upload(be, b);
  be.Add(x.data(), y.data(), 4);
  EXPECT_EQ(DownloadF32(be, y), (std::vector<float>{11, 22, 33, 44}));
}

TEST(CpuGuarded, DownloadedBytesAreValidOnlyAfterSynchronize) {
  Backend& be = CpuGuardedBackend();
  Buffer x = Upload(be, std::vector<float>{1.5f, -2.0f});
  std::vector<float> host(2, 0.0f);
  be.CopyDeviceToHost(x.data(), host.data(), x.bytes());
  EXPECT_TRUE(std::isnan(host[0]) && std::isnan(host[1]));  // poisoned until then
  be.Synchronize();
  EXPECT_EQ(host, (std::vector<float>{1.5f, -2.0f}));
}

TEST(CpuGuarded, TransfersAreCounted) {
  Backend& be = CpuGuardedBackend();
  be.ResetTransferStats();
  Buffer x = Upload(be, std::vector<int32_t>{1, 2, 3});
  const std::vector<int32_t> back = DownloadI32(be, x);
  EXPECT_EQ(back, (std::vector<int32_t>{1, 2, 3}));
  const TransferStats s = be.transfer_stats();
  EXPECT_EQ(s.host_to_device_bytes, 12);
  EXPECT_EQ(s.host_to_device_calls, 1);
  EXPECT_EQ(s.device_to_host_bytes, 12);
  EXPECT_EQ(s.device_to_host_calls, 1);
  be.ResetTransferStats();
  EXPECT_EQ(be.transfer_stats().total_bytes(), 0);
}

TEST(CpuGuardedDeathTest, HostAccessToDeviceMemoryCrashes) {
  Backend& be = CpuGuardedBackend();
  Buffer x(&be, 16);
  be.Zero(x.data(), 16);
  float* p = Peek::RawOf(x.data());
  EXPECT_DEATH({ p[3] = 1.0f; }, "");
  EXPECT_DEATH({ std::printf("%f\n", static_cast<double>(p[0])); }, "");
}

TEST(CpuGuardedDeathTest, BlocksOpenedByAnOpCloseWhenItReturns) {
  // Two blocks sharing a page and one large block: an op opens each, and every one of them is
  // closed again once the op returns (the per-page open counts return to zero).
  Backend& be = CpuGuardedBackend();
  Buffer a = Upload(be, std::vector<float>{1, 2}), b = Upload(be, std::vector<float>{3, 4});
  Buffer big(&be, 1 << 20);
  be.Zero(big.data(), big.numel());
  be.Add(a.data(), b.data(), 2);
  be.Add(a.data(), big.data(), 2);
  EXPECT_EQ(DownloadF32(be, b), (std::vector<float>{4, 6}));
  float* pb = Peek::RawOf(b.data());
  float* pbig = Peek::RawOf(big.data());
  EXPECT_DEATH({ pb[0] = 1.0f; }, "");
  EXPECT_DEATH({ pbig[(1 << 20) - 1] = 1.0f; }, "");
}

TEST(CpuGuarded, FailsTheNthAllocationWhenAsked) {
  Backend& be = CpuGuardedBackend();
  FailCpuGuardedAllocation(2);
  Buffer first(&be, 8);
  EXPECT_THROW(Buffer(&be, 8), std::bad_alloc);
  Buffer third(&be, 8);  // one failure only
  FailCpuGuardedAllocation(1);
  FailCpuGuardedAllocation(0);  // disarmed
  Buffer fourth(&be, 8);
  EXPECT_FALSE(fourth.empty());
}

TEST(BackendForTests, FollowsTheEnvironment) {
  setenv("GRPO_TEST_BACKEND", "cpu_guarded", 1);
  EXPECT_EQ(&BackendForTests(), &CpuGuardedBackend());
  setenv("GRPO_TEST_BACKEND", "cpu", 1);
  EXPECT_EQ(&BackendForTests(), &CpuBackend());
  setenv("GRPO_TEST_BACKEND", "tpu", 1);
  EXPECT_DEATH(BackendForTests(), "GRPO_TEST_BACKEND=tpu");
  unsetenv("GRPO_TEST_BACKEND");
}

}  // namespace
}  // namespace grpo
