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
