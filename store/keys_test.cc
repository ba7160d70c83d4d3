#include "store/keys.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace grpo::store {
namespace {

TEST(KeysTest, RoundTrip) {
  SampleKey k{7, 0x0102030405060708ull, 0xfffffffe, 3};
  std::string s = SampleKeyString(k);
  ASSERT_EQ(s.size(), kSampleKeySize);
  EXPECT_EQ(DecodeSampleKey(s), k);
  EXPECT_EQ(s.substr(0, 4), std::string("\0\0\0\x07", 4));
  EXPECT_EQ(DecodeStepKey(StepKey(9, 1ull << 40))->second, 1ull << 40);
  EXPECT_EQ(*DecodeRunKey(RunKey(0xdeadbeef)), 0xdeadbeefu);
  EXPECT_FALSE(DecodeSampleKey("short").has_value());
}

TEST(KeysTest, BytewiseOrderIsNumericOrder) {
  std::mt19937_64 rng(42);
  std::vector<SampleKey> keys;
  for (int i = 0; i < 2000; ++i) {
    keys.push_back({static_cast<uint32_t>(rng() % 3), rng() % 300 + (i % 2 ? 1ull << 33 : 0),
                    static_cast<uint32_t>(rng() % 70000), static_cast<uint32_t>(rng() % 300)});
  }
  auto numeric = keys;
  std::sort(numeric.begin(), numeric.end(), [](const SampleKey& a, const SampleKey& b) {
    return std::tie(a.run_id, a.step, a.prompt_index, a.sample_index) <
           std::tie(b.run_id, b.step, b.prompt_index, b.sample_index);
  });
  std::sort(keys.begin(), keys.end(), [](const SampleKey& a, const SampleKey& b) {
    return SampleKeyString(a) < SampleKeyString(b);
  });
  EXPECT_EQ(keys, numeric);
}

TEST(KeysTest, PrefixOfAStepCoversExactlyItsGroups) {
  std::string step = StepKey(1, 5);
  std::string end = PrefixSuccessor(step);
  EXPECT_LT(SampleKeyString({1, 5, 0, 0}), end);
  EXPECT_LT(SampleKeyString({1, 5, 0xffffffff, 0xffffffff}), end);
  EXPECT_GE(SampleKeyString({1, 6, 0, 0}), end);
  EXPECT_EQ(PrefixSuccessor(std::string("\x01\xff", 2)), std::string("\x02", 1));
  EXPECT_EQ(PrefixSuccessor(std::string("\xff\xff", 2)), "");
}

}  // namespace
}  // namespace grpo::store
