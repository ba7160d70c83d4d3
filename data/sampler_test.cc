#include "data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

namespace grpo::data {
namespace {

TEST(EpochSampler, EachEpochIsAPermutationAndDeterministic) {
  auto a = *EpochSampler::Create(10, 42);
  auto b = *EpochSampler::Create(10, 42);
  auto c = *EpochSampler::Create(10, 43);
  std::vector<int64_t> ea = a.NextBatch(10), eb = b.NextBatch(10), ec = c.NextBatch(10);
  EXPECT_EQ(ea, eb);
  EXPECT_NE(ea, ec);
  std::vector<int64_t> sorted = ea;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(10);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_EQ(a.cursor(), (Cursor{1, 0}));
  EXPECT_NE(a.NextBatch(10), ea);  // the next epoch has another order
  // Pinned values: the order must not change across builds (checkpoints depend on it).
  EXPECT_EQ(EpochSampler::EpochOrder(5, 7, 0, true), EpochSampler::EpochOrder(5, 7, 0, true));
  EXPECT_EQ(EpochSampler::EpochOrder(4, 1, 3, false), (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST(EpochSampler, ResumeFromCursorYieldsTheSameSequence) {
  auto full = *EpochSampler::Create(7, 5);
  std::vector<int64_t> reference = full.NextBatch(30);
  for (int split : {0, 3, 7, 11, 14, 29}) {
    auto first = *EpochSampler::Create(7, 5);
    std::vector<int64_t> got = first.NextBatch(split);
    const Cursor saved = first.cursor();
    auto resumed = *EpochSampler::Create(7, 5, true, saved);
    std::vector<int64_t> rest = resumed.NextBatch(30 - split);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, reference) << "split at " << split;
  }
}

TEST(EpochSampler, BadArguments) {
  EXPECT_FALSE(EpochSampler::Create(0, 1).ok());
  EXPECT_FALSE(EpochSampler::Create(5, 1, true, {0, 6}).ok());
  EXPECT_FALSE(EpochSampler::Create(5, 1, true, {-1, 0}).ok());
  auto end_of_epoch = EpochSampler::Create(5, 1, true, {2, 5});
  ASSERT_TRUE(end_of_epoch.ok());
  EXPECT_EQ(end_of_epoch->cursor(), (Cursor{3, 0}));
}

TEST(SplitMix64, RangeStaysInBounds) {
  SplitMix64 rng(3);
  for (int i = 0; i < 10000; ++i) {
    const int64_t v = rng.Range(-3, 4);
    ASSERT_GE(v, -3);
    ASSERT_LE(v, 4);
  }
  EXPECT_EQ(SplitMix64(1).Next(), SplitMix64(1).Next());
}

}  // namespace
}  // namespace grpo::data
