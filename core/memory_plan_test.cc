#include "core/memory_plan.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <vector>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace grpo {
namespace {

using ::testing::HasSubstr;

TEST(FormatBytes, Units) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.00 GiB");
  EXPECT_EQ(FormatBytes(std::numeric_limits<int64_t>::max()), "8.00 EiB");
}

TEST(MemoryPlan, FitsWithinTheBudget) {
  MemoryPlan plan;
  plan.Add("parameters", int64_t{3} << 20);
  plan.Add("KV cache", int64_t{1} << 20);
  EXPECT_EQ(plan.total().value(), int64_t{4} << 20);
  EXPECT_EQ(plan.ToString(), "parameters 3.00 MiB + KV cache 1.00 MiB");
  EXPECT_TRUE(plan.Check("generate", {int64_t{4} << 20, "test"}).ok());
}

TEST(MemoryPlan, RefusalNamesTheLargestPartAndTheBudget) {
  MemoryPlan plan;
  plan.Add("parameters (hidden_size 64)", int64_t{1} << 20);
  plan.Add("KV cache (--kv-memory-mb 100000000)", CheckedInt64(100000000) * (int64_t{1} << 20));
  const absl::Status s = plan.Check("grpo generate", {int64_t{8} << 30, "MemAvailable"});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  const std::string m(s.message());
  EXPECT_THAT(m, HasSubstr("grpo generate needs at least 95.37 TiB of memory but 8.00 GiB is available"));
  EXPECT_THAT(m, HasSubstr("MemAvailable; GRPO_MEMORY_LIMIT_MB sets another budget"));
  EXPECT_THAT(m, HasSubstr("largest part: KV cache (--kv-memory-mb 100000000) 95.37 TiB"));
  EXPECT_THAT(m, HasSubstr("all: parameters (hidden_size 64) 1.00 MiB + KV cache"));
}

TEST(MemoryPlan, OverflowIsRefusedWhateverTheBudget) {
  MemoryPlan plan;
  plan.Add("weights (intermediate_size 4611686018427387904)", CheckedInt64(int64_t{1} << 62) * 64);
  const absl::Status s = plan.Check("init-model", {std::numeric_limits<int64_t>::max(), "test"});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("more memory than 64-bit sizes can count"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("intermediate_size 4611686018427387904) (overflows 64 bits)"));
  // Two parts that fit alone but not together.
  MemoryPlan sum;
  sum.Add("a", std::numeric_limits<int64_t>::max());
  sum.Add("b", 1);
  EXPECT_TRUE(sum.total().overflowed());
  EXPECT_FALSE(sum.Check("x", {std::numeric_limits<int64_t>::max(), "test"}).ok());
}

TEST(MemoryBudget, EnvironmentOverrides) {
  ::setenv("GRPO_MEMORY_LIMIT_MB", "64", 1);
  MemoryBudget b = MemoryBudget::Available();
  EXPECT_EQ(b.bytes, int64_t{64} << 20);
  EXPECT_EQ(b.source, "GRPO_MEMORY_LIMIT_MB=64");
  MemoryPlan plan;
  plan.Add("x", int64_t{65} << 20);
  const absl::Status s = plan.Check("test");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("64.00 MiB is available (GRPO_MEMORY_LIMIT_MB=64)"));

  ::setenv("GRPO_MEMORY_LIMIT_MB", "lots", 1);
  b = MemoryBudget::Available();
  EXPECT_EQ(b.bytes, 0);
  EXPECT_THAT(b.source, HasSubstr("'lots' is not a number of MiB"));
  ::setenv("GRPO_MEMORY_LIMIT_MB", "99999999999999999", 1);  // overflows as bytes
  EXPECT_EQ(MemoryBudget::Available().bytes, 0);
  ::unsetenv("GRPO_MEMORY_LIMIT_MB");
}

TEST(MemoryBudget, TheMachineHasSome) {
  ::unsetenv("GRPO_MEMORY_LIMIT_MB");
  const MemoryBudget b = MemoryBudget::Available();
  EXPECT_GT(b.bytes, 0) << b.source;
  EXPECT_FALSE(b.source.empty());
}

// Resident bytes of this process (/proc/self/statm).
int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// 256 MiB of small blocks, freed while a later block pins the top of the heap: the allocator
// keeps them (the "memory never returned" of a large reward batch) until told to give them back.
TEST(ReturnFreedMemoryToSystem, GivesBackFreedSmallBlocks) {
  constexpr int kBlocks = 256 * 1024;
  std::vector<std::unique_ptr<char[]>> blocks(kBlocks);
  for (auto& b : blocks) {
    b.reset(new char[1000]);
    std::fill_n(b.get(), 1000, 'x');
  }
  auto pin = std::make_unique<char[]>(1000);
  std::fill_n(pin.get(), 1000, 'y');
  const int64_t before_free = ResidentBytes();
  blocks.clear();
  const int64_t after_free = ResidentBytes();
  ReturnFreedMemoryToSystem();
  const int64_t after_trim = ResidentBytes();
  EXPECT_GT(after_free, before_free - (int64_t{64} << 20));  // freeing alone returns little
  EXPECT_LT(after_trim, after_free - (int64_t{200} << 20))
      << "before free " << before_free << ", after free " << after_free << ", after trim " << after_trim;
  EXPECT_EQ(pin[0], 'y');
}

}  // namespace
}  // namespace grpo
