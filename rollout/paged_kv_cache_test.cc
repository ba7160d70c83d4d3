#include "rollout/paged_kv_cache.h"

#include <gtest/gtest.h>

#include <random>

#include "model/causal_lm.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"

namespace grpo {
namespace {

ModelConfig Nano() { return *PresetConfig("deepseek_v3-nano"); }

// The device address of the row of `position` of `seq` in `layer`, found through the
// sequence's block table as a kernel finds it.
DevicePtr<float> Row(PagedKvCache& cache, int64_t layer, int64_t seq, int64_t position) {
  std::vector<int32_t> table;
  cache.AppendBlockTable(seq, position + 1, &table);
  const KvCachePool p = cache.pool();
  const int64_t block = table[position / p.block_size];
  return p.data + ((block * p.num_layers + layer) * p.block_size + position % p.block_size) * p.row_width;
}

// First float of a cache row, written and read through transfers.
void SetFirst(Backend& be, DevicePtr<float> row, float v) { be.CopyHostToDevice(&v, row, sizeof(float)); }
float First(Backend& be, DevicePtr<float> row) {
  float v = 0;
  be.CopyDeviceToHost(row, &v, sizeof(float));
  be.Synchronize();
  return v;
}

TEST(PagedKvCache, ForkSharesBlocksAndWritesCopyOnlyTheLastPartialBlock) {
  const ModelConfig c = Nano();
  Backend& be = BackendForTests();
  KvBlockPool pool(c, 16, 4, be);
  PagedKvCache cache(pool);
  const int64_t a = cache.AddSequence();
  ASSERT_TRUE(cache.Reserve(a, 10, 0).ok());  // 3 blocks, the last one half full
  EXPECT_EQ(pool.free_blocks(), 13);
  for (int64_t p = 0; p < 10; ++p) SetFirst(be, Row(cache, 1, a, p), static_cast<float>(p));
  const int64_t b = cache.Fork(a);
  EXPECT_EQ(pool.free_blocks(), 13);  // nothing copied
  for (int32_t blk : cache.blocks(a)) EXPECT_EQ(pool.ref_count(blk), 2);
  // b writes position 10: only the block holding positions 8..11 is copied.
  ASSERT_TRUE(cache.Reserve(b, 11, 10).ok());
  EXPECT_EQ(pool.free_blocks(), 12);
  EXPECT_EQ(cache.blocks(a)[0], cache.blocks(b)[0]);
  EXPECT_EQ(cache.blocks(a)[1], cache.blocks(b)[1]);
  EXPECT_NE(cache.blocks(a)[2], cache.blocks(b)[2]);
  EXPECT_EQ(First(be, Row(cache, 1, b, 9)), 9.0f);  // the copy carries the shared rows
  SetFirst(be, Row(cache, 1, b, 10), 100.0f);
  SetFirst(be, Row(cache, 1, b, 9), -1.0f);
  EXPECT_EQ(First(be, Row(cache, 1, a, 9)), 9.0f);  // the parent is untouched
  EXPECT_TRUE(Row(cache, 0, a, 0) ==
              cache.pool().data + cache.blocks(a)[0] * 4 * KvCacheRowWidth(c) * c.num_hidden_layers);
  // Growing into a new block allocates one; no copy since nothing there is shared.
  ASSERT_TRUE(cache.Reserve(b, 13, 12).ok());
  EXPECT_EQ(pool.free_blocks(), 11);
  cache.FreeSequence(b);
  cache.FreeSequence(a);
  EXPECT_EQ(pool.free_blocks(), 16);
}

TEST(PagedKvCache, ExhaustionChangesNothing) {
  KvBlockPool pool(Nano(), 3, 4, BackendForTests());
  PagedKvCache cache(pool);
  const int64_t a = cache.AddSequence();
  ASSERT_TRUE(cache.Reserve(a, 8, 0).ok());
  const int64_t b = cache.Fork(a);
  // b needs a copy of block 1 plus 2 new blocks: 3 > 1 free.
  const absl::Status st = cache.Reserve(b, 16, 7);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("1 free"), std::string::npos) << st.message();
  EXPECT_EQ(cache.blocks(b), cache.blocks(a));
  EXPECT_EQ(pool.free_blocks(), 1);
}

TEST(PagedKvCache, DecodingThroughPagedForksEqualsTheDenseCache) {
  const ModelConfig c = Nano();
  auto model = CausalLM::Create(c, InitParameters(c, 3, 0.1), BackendForTests());
  ASSERT_TRUE(model.ok());
  const std::vector<int32_t> prompt = {4, 8, 15, 16, 23, 42, 7};
  Backend& be = (*model)->backend();
  KvBlockPool pool(c, 32, 4, be);
  PagedKvCache paged(pool);
  DenseKvCache dense(c, 2, 32, be);
  const int64_t s0 = paged.AddSequence();
  ASSERT_TRUE(paged.Reserve(s0, 7, 0).ok());
  StepInput pre{.tokens = prompt, .offsets = {0, 7}, .past = {0}, .cache_seq = {s0}};
  auto pa = (*model)->ForwardStep(pre, paged);
  pre.cache_seq = {0};
  auto de = (*model)->ForwardStep(pre, dense);
  pre.cache_seq = {1};
  ASSERT_TRUE((*model)->ForwardStep(pre, dense).ok());
  ASSERT_TRUE(pa.ok() && de.ok());
  EXPECT_EQ(DownloadF32(be, pa->logits), DownloadF32(be, de->logits));
  const int64_t s1 = paged.Fork(s0);
  // Two branches with different next tokens, 6 steps each, both caches side by side.
  std::vector<int32_t> last = {1, 2};
  for (int64_t step = 0; step < 6; ++step) {
    const int64_t pos = 7 + step;
    ASSERT_TRUE(paged.Reserve(s0, pos + 1, pos).ok());
    ASSERT_TRUE(paged.Reserve(s1, pos + 1, pos).ok());
    StepInput in{.tokens = last, .offsets = {0, 1, 2}, .past = {pos, pos}, .cache_seq = {s0, s1}};
    auto p_out = (*model)->ForwardStep(in, paged);
    in.cache_seq = {0, 1};
    auto d_out = (*model)->ForwardStep(in, dense);
    ASSERT_TRUE(p_out.ok() && d_out.ok());
    ASSERT_EQ(DownloadF32(be, p_out->logits), DownloadF32(be, d_out->logits)) << "step " << step;
    last = {static_cast<int32_t>((step * 31 + 5) % c.vocab_size), static_cast<int32_t>((step * 17 + 9) % c.vocab_size)};
  }
  // The prompt's first block stayed shared; the partial one was copied once per branch at most.
  EXPECT_EQ(paged.blocks(s0)[0], paged.blocks(s1)[0]);
}

}  // namespace
}  // namespace grpo
