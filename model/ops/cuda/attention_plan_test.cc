// The attention kernels' tiling, limits and split-K plan, on the host (no GPU needed).
#include "model/ops/cuda/attention_plan.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace grpo::cuda {
namespace {

bool Mentions(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(AttentionPlan, TilesNeverSpanTwoSequences) {
  const std::vector<int64_t> offsets = {0, 1, 8, 8, 78, 91};  // lengths 1, 7, 0, 70, 13
  const std::vector<RowTile> tiles = TileSequences(offsets, 32);
  ASSERT_EQ(tiles.size(), 6u);
  const std::vector<std::vector<int64_t>> expected = {
      {0, 1, 0, 1}, {1, 8, 1, 8}, {8, 40, 8, 78}, {40, 72, 8, 78}, {72, 78, 8, 78}, {78, 91, 78, 91}};
  for (size_t i = 0; i < tiles.size(); ++i) {
    EXPECT_EQ((std::vector<int64_t>{tiles[i].begin, tiles[i].end, tiles[i].seq_begin, tiles[i].seq_end}),
              expected[i])
        << "tile " << i;
  }
  EXPECT_TRUE(TileSequences(std::vector<int64_t>{0}, 32).empty());
}

TEST(AttentionPlan, SharedMemoryOfTheTilesFitsHopper) {
  // Three tiles of 32 rows at a pitch of 129 floats; four at 257.
  EXPECT_EQ(ForwardSharedBytes(128, 128), 3 * 32 * 129 * 4);
  EXPECT_EQ(BackwardSharedBytes(256, 256), 4 * 32 * 257 * 4);
  EXPECT_LE(BackwardSharedBytes(kMaxAttentionHeadDim, kMaxAttentionHeadDim), kMaxSharedBytes);
  // DeepSeek-V3's absorbed decode: 576-dim keys (latent + rope), 512-dim values.
  EXPECT_EQ(ForwardSharedBytes(576, 512), 2 * 32 * 577 * 4 + 32 * 513 * 4);
  EXPECT_LE(ForwardSharedBytes(576, 512), kMaxSharedBytes);
}

TEST(AttentionPlan, HeadsTheKernelsCannotTakeAreNamed) {
  EXPECT_EQ(TrainingHeadsProblem({6, 2, 40, 24, 1.0f}), "");
  EXPECT_EQ(TrainingHeadsProblem({8, 8, 256, 256, 1.0f}), "");
  EXPECT_TRUE(Mentions(TrainingHeadsProblem({8, 8, 257, 64, 1.0f}), "head dims up to 256"));
  EXPECT_TRUE(Mentions(TrainingHeadsProblem({6, 4, 64, 64, 1.0f}), "multiple of nkv"));
  EXPECT_TRUE(Mentions(TrainingHeadsProblem({6, 0, 64, 64, 1.0f}), "multiple of nkv"));
  EXPECT_TRUE(Mentions(TrainingHeadsProblem({4, 2, 0, 64, 1.0f}), "positive"));
  EXPECT_TRUE(Mentions(TrainingHeadsProblem({70000, 1, 64, 64, 1.0f}), "65535"));
  EXPECT_EQ(CachedHeadsProblem({128, 1, 576, 512, 1.0f}), "");
  EXPECT_TRUE(Mentions(CachedHeadsProblem({128, 1, 576, 544, 1.0f}), "value dims up to 512"));
  const std::string too_wide = CachedHeadsProblem({8, 1, 1024, 512, 1.0f});
  EXPECT_TRUE(Mentions(too_wide, "shared memory")) << too_wide;
  EXPECT_TRUE(Mentions(too_wide, "dqk=1024")) << too_wide;
  // A device with less shared memory than Hopper (99 KiB per block): the backward's 128.5 KiB at
  // 256 dims does not fit, 128 dims do.
  EXPECT_TRUE(Mentions(TrainingHeadsProblem({8, 8, 256, 256, 1.0f}, 99 * 1024), "shared memory"));
  EXPECT_EQ(TrainingHeadsProblem({8, 8, 128, 128, 1.0f}, 99 * 1024), "");
}

TEST(AttentionPlan, ABusyCallIsNotSplit) {
  // 256 sequences decoding at 8000 positions, 8 kv heads: 2048 blocks, more than 264.
  std::vector<int64_t> q_offsets(257), past(256, 7999);
  for (int64_t s = 0; s <= 256; ++s) q_offsets[s] = s;
  const CachedAttentionPlan plan = PlanCachedAttention(q_offsets, past, {32, 8, 128, 128, 1.0f}, 264);
  EXPECT_FALSE(plan.split);
  EXPECT_EQ(plan.chunk_keys, 8000);
  EXPECT_EQ(plan.partial_rows, 0);
  ASSERT_EQ(plan.items.size(), 256u);
  EXPECT_EQ(plan.items[5].seq, 5);
  EXPECT_EQ(plan.items[5].key_begin, 0);
  EXPECT_EQ(plan.items[5].key_end, 8000);
}

TEST(AttentionPlan, OneLongDecodeIsSplitAcrossBlocks) {
  // One sequence at 8192 positions, 32 heads over 8 kv heads: 8 blocks unsplit; the work,
  // 8 x 8192 positions over 264 blocks, is 249 positions each, so chunks of kMinChunkKeys.
  const std::vector<int64_t> q_offsets = {0, 1}, past = {8191};
  const CachedAttentionPlan plan = PlanCachedAttention(q_offsets, past, {32, 8, 128, 128, 1.0f}, 264);
  EXPECT_TRUE(plan.split);
  EXPECT_EQ(plan.chunk_keys, 256);
  EXPECT_EQ(plan.seq_chunks, std::vector<int64_t>{32});
  ASSERT_EQ(plan.items.size(), 32u);
  for (int64_t c = 0; c < 32; ++c) {
    EXPECT_EQ(plan.items[c].chunk, c);
    EXPECT_EQ(plan.items[c].key_begin, 256 * c);
    EXPECT_EQ(plan.items[c].key_end, 256 * (c + 1));
  }
  EXPECT_EQ(plan.partial_rows, 32 * 32);  // chunks x new rows x heads
  // A smaller target: 8 x 8192 positions over 16 blocks, 4096 each: 2 chunks on 8 kv heads.
  const CachedAttentionPlan few = PlanCachedAttention(q_offsets, past, {32, 8, 128, 128, 1.0f}, 16);
  EXPECT_EQ(few.chunk_keys, 4096);
  EXPECT_EQ(few.items.size(), 2u);
}

// Every (sequence, new row, head, visible key) is read by exactly one work item, that item's
// chunk is key / chunk_keys, the combine's count of chunks (position / chunk_keys + 1) is the
// number of items that write the row, and partial rows are distinct and inside the scratch.
TEST(AttentionPlan, SplitWorkCoversEveryVisibleKeyOnce) {
  const AttentionHeads heads{6, 2, 16, 16, 1.0f};  // groups of 3 query heads
  const int64_t group = 3;
  // decode at 701 positions; no new rows; chunked prefill of 40 rows after 300 (4 tiles of
  // pairs); a short prefill after 5.
  const std::vector<int64_t> q_offsets = {0, 1, 1, 41, 44}, past = {700, 0, 300, 5};
  const CachedAttentionPlan plan = PlanCachedAttention(q_offsets, past, heads, 1000);
  ASSERT_TRUE(plan.split);
  EXPECT_EQ(plan.chunk_keys, kMinChunkKeys);
  std::set<int64_t> partials;
  for (int64_t s = 0; s < 4; ++s) {
    for (int64_t i = 0; i < q_offsets[s + 1] - q_offsets[s]; ++i) {
      const int64_t position = past[s] + i;
      for (int64_t hg = 0; hg < group; ++hg) {
        const int64_t pair = i * group + hg;
        std::set<int64_t> writers;
        for (int64_t key = 0; key <= position; ++key) {
          int found = 0;
          for (size_t w = 0; w < plan.items.size(); ++w) {
            const CachedWorkItem& it = plan.items[w];
            if (it.seq == s && pair >= it.pair_begin && pair < it.pair_begin + kAttentionTile &&
                key >= it.key_begin && key < it.key_end) {
              ++found;
              EXPECT_EQ(it.chunk, key / plan.chunk_keys);
              writers.insert(static_cast<int64_t>(w));
            }
          }
          ASSERT_EQ(found, 1) << "seq " << s << " row " << i << " head " << hg << " key " << key;
        }
        EXPECT_EQ(static_cast<int64_t>(writers.size()), position / plan.chunk_keys + 1);
        for (int64_t c = 0; c <= position / plan.chunk_keys; ++c) {
          for (int64_t g = 0; g < heads.nkv; ++g) {
            const int64_t h = g * group + hg;
            const int64_t row = (plan.partial_base[s] + c * (q_offsets[s + 1] - q_offsets[s]) + i) * heads.nh + h;
            EXPECT_TRUE(partials.insert(row).second) << row;
            EXPECT_LT(row, plan.partial_rows);
          }
        }
      }
    }
  }
  for (const CachedWorkItem& it : plan.items) {
    EXPECT_LT(it.key_begin, it.key_end);
    EXPECT_NE(it.seq, 1);  // no new rows, no work
  }
}

}  // namespace
}  // namespace grpo::cuda
