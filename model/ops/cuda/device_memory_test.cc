// The CUDA backend's memory bookkeeping, on the host (no GPU needed).
#include "model/ops/cuda/device_memory.h"

#include <gtest/gtest.h>

#include <new>
#include <string>

namespace grpo::cuda {
namespace {

TEST(DeviceMemoryLedger, CountsLiveAndPeakBytes) {
  DeviceMemoryLedger ledger;
  int a = 0, b = 0, c = 0;
  ledger.Add(&a, 1000);
  ledger.Add(&b, 24);
  EXPECT_EQ(ledger.live_bytes(), 1024);
  EXPECT_EQ(ledger.live_count(), 2);
  EXPECT_EQ(ledger.Remove(&a), 1000);
  EXPECT_EQ(ledger.live_bytes(), 24);
  EXPECT_EQ(ledger.peak_bytes(), 1024);
  ledger.Add(&c, 500);
  EXPECT_EQ(ledger.peak_bytes(), 1024);
  ledger.ResetPeak();
  EXPECT_EQ(ledger.peak_bytes(), 524);
  EXPECT_EQ(ledger.Remove(&b), 24);
  EXPECT_EQ(ledger.Remove(&c), 500);
  EXPECT_EQ(ledger.live_bytes(), 0);
  EXPECT_EQ(ledger.live_count(), 0);
}

TEST(DeviceMemoryLedger, AnAddressFreedAgainAborts) {
  DeviceMemoryLedger ledger;
  int a = 0;
  ledger.Add(&a, 8);
  EXPECT_EQ(ledger.Remove(&a), 8);
  EXPECT_DEATH(ledger.Remove(&a), "did not allocate");
}

TEST(DeviceMemoryLedger, AnAddressHandedOutTwiceAborts) {
  DeviceMemoryLedger ledger;
  int a = 0;
  ledger.Add(&a, 8);
  EXPECT_DEATH(ledger.Add(&a, 16), "twice");
}

TEST(OutOfMemory, TheMessageNamesTheRequestTheDeviceAndTheHoldings) {
  const std::string m = OutOfMemoryMessage(int64_t{3} << 30, "device buffer", "cuda:0",
                                           DeviceMemoryInfo{int64_t{10} << 20, int64_t{80} << 30},
                                           int64_t{79} << 30, 312, int64_t{79} << 30);
  EXPECT_NE(m.find("out of CUDA device memory allocating 3.00 GiB (device buffer)"), std::string::npos) << m;
  EXPECT_NE(m.find("cuda:0 has 10.00 MiB free of 80.00 GiB"), std::string::npos) << m;
  EXPECT_NE(m.find("312 buffers"), std::string::npos) << m;
}

TEST(OutOfMemory, IsABadAllocCarryingTheMessage) {
  try {
    throw DeviceOutOfMemory("out of CUDA device memory allocating 1 B (x)");
  } catch (const std::bad_alloc& e) {
    EXPECT_STREQ(e.what(), "out of CUDA device memory allocating 1 B (x)");
  }
}

}  // namespace
}  // namespace grpo::cuda
