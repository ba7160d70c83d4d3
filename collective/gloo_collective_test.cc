#include "collective/gloo_collective.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collective/collective_test_lib.h"
#include "gtest/gtest.h"

namespace grpo {
namespace {

using testing_collective::RankBody;
using testing_collective::RunRanks;

CollectiveOptions Options(const std::string& dir, int rank, int size) {
  CollectiveOptions o = testing_collective::LoopbackOptions(dir, rank, size);
  o.timeout = absl::Seconds(20);
  return o;
}

// Runs `body` on `size` forked ranks joined through a fresh rendezvous directory; every rank must
// return an empty string (else the error text) for the test to pass.
void ExpectAllRanksPass(const std::string& name, int size, RankBody body) {
  const std::string dir = testing_collective::FreshDirectory(name);
  std::vector<testing_collective::RankResult> results =
      RunRanks(size, [&](int rank) -> std::string {
        auto c = ConnectGloo(Options(dir, rank, size));
        if (!c.ok()) return std::string(c.status().message());
        return body(**c);
      });
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(results[r].exit_code, 0) << name << " rank " << r << ": " << results[r].output;
  }
}

class GlooCollectiveTest : public ::testing::TestWithParam<int> {};

TEST_P(GlooCollectiveTest, EveryCollectiveGivesTheReferenceValues) {
  const int n = GetParam();
  ExpectAllRanksPass(absl::StrCat("values", n), n, testing_collective::CheckEveryCollective);
}

INSTANTIATE_TEST_SUITE_P(Ranks, GlooCollectiveTest, ::testing::Values(1, 2, 3, 4));

// What each call sends, on 3 ranks: a reduce-scatter of 999 floats (333 per rank) sends the 666
// floats of the other ranks' shards once (a ring all-reduce of the same buffer sends twice as
// much: 2 x 2/3 of it), a ring all-gather every shard but the next rank's (with all 999 floats on
// rank 1: ranks 1 and 2 pass them on), a broadcast down a binomial tree the buffer once per child
// (root 1 sends to both others).
TEST(GlooCollective, CountsTheBytesEachCallSends) {
  ExpectAllRanksPass("traffic", 3, [](Collective& c) -> std::string {
    std::vector<float> f(999, 1.0f);
    const std::vector<size_t> even = EvenShards(999, 3);
    const std::vector<size_t> skewed = {0, 999, 0};
    const uint64_t b = sizeof(float);
    const uint64_t want[] = {666 * b, 1332 * b, 666 * b, (c.rank() == 0 ? 0 : 999) * b,
                             (c.rank() == 1 ? 2 : 0) * 999 * b};
    uint64_t got[5];
    uint64_t before = c.bytes_sent();
    auto step = [&](int i, absl::Status s) {
      got[i] = c.bytes_sent() - before;
      before = c.bytes_sent();
      return s.ok();
    };
    if (!step(0, c.ReduceScatterSum(absl::MakeSpan(f), even)) || !step(1, c.AllReduceSum(absl::MakeSpan(f))) ||
        !step(2, c.AllGather(absl::MakeSpan(f), even)) || !step(3, c.AllGather(absl::MakeSpan(f), skewed)) ||
        !step(4, c.Broadcast(absl::MakeSpan(f), 1))) {
      return "a call failed";
    }
    for (int i = 0; i < 5; ++i) {
      if (got[i] != want[i]) return absl::StrCat("call ", i, " on rank ", c.rank(), ": ", got[i], " bytes, want ", want[i]);
    }
    return "";
  });
}

TEST(GlooCollective, PeerThatExitsIsNamedWithinTheTimeout) {
  for (int size : {2, 3}) {
    const std::string dir = testing_collective::FreshDirectory(absl::StrCat("exit", size));
    const int victim = size - 1;
    const absl::Time start = absl::Now();
    std::vector<testing_collective::RankResult> results = RunRanks(size, [&](int rank) {
      CollectiveOptions o = Options(dir, rank, size);
      o.timeout = absl::Seconds(10);
      auto c = ConnectGloo(o);
      if (!c.ok()) return std::string(c.status().message());
      if (!(*c)->Barrier().ok()) return std::string("barrier before the exit failed");
      if (rank == victim) _exit(0);  // gone without a word, mid-job
      return testing_collective::ExpectPeerFailure(**c, victim);
    });
    const absl::Duration took = absl::Now() - start;
    for (int r = 0; r < victim; ++r) {
      EXPECT_EQ(results[r].exit_code, 0) << "size " << size << " rank " << r << ": "
                                         << results[r].output;
    }
    EXPECT_LT(took, absl::Seconds(10 + 8)) << "size " << size;
  }
}

TEST(GlooCollective, RankThatNeverArrivesFailsTheJoinWithinTheTimeout) {
  const std::string dir = testing_collective::FreshDirectory("never");
  CollectiveOptions o = Options(dir, 0, 2);
  o.timeout = absl::Seconds(2);
  const absl::Time start = absl::Now();
  auto c = ConnectGloo(o);
  ASSERT_FALSE(c.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  EXPECT_NE(std::string(c.status().message()).find("rank 0 of 2"), std::string::npos)
      << c.status();
}

TEST(GlooCollective, BadOptionsAreRejectedBeforeAnyWait) {
  CollectiveOptions o = Options("/tmp", 2, 2);
  EXPECT_EQ(ConnectGloo(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = 0;
  o.rendezvous_dir.clear();
  EXPECT_EQ(ConnectGloo(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Shards, EvenShardsCoverTheBufferLargerFirst) {
  EXPECT_EQ(EvenShards(10, 3), (std::vector<size_t>{4, 3, 3}));
  EXPECT_EQ(EvenShards(2, 4), (std::vector<size_t>{1, 1, 0, 0}));
  std::vector<size_t> c = EvenShards(10, 3);
  EXPECT_EQ(ShardOffset(c, 0), 0u);
  EXPECT_EQ(ShardOffset(c, 2), 7u);
}

}  // namespace
}  // namespace grpo
