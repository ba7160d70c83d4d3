// Test helpers for collectives: run N ranks as forked processes on loopback, and the reference
// checks every implementation must pass. For tests only.
#ifndef GRPO_COLLECTIVE_COLLECTIVE_TEST_LIB_H_
#define GRPO_COLLECTIVE_COLLECTIVE_TEST_LIB_H_

#include <functional>
#include <string>
#include <vector>

#include "collective/collective.h"

namespace grpo::testing_collective {

// A rank's work: returns "" on success, else what went wrong.
using RankBody = std::function<std::string(Collective&)>;

struct RankResult {
  int exit_code = -1;  // 0 when the body returned ""; 128+signal when killed
  std::string output;  // the body's error text
};

// Forks `size` processes; process r runs body(r) and exits 0 when it returns "", else 1 after
// passing the text back. Waits for all of them.
std::vector<RankResult> RunRanks(int size, const std::function<std::string(int rank)>& body);

// Options for rank `rank` of `size` on loopback (host 127.0.0.1), meeting in `rendezvous_dir`;
// the rest (the timeout) as CollectiveOptions has them.
CollectiveOptions LoopbackOptions(const std::string& rendezvous_dir, int rank, int size);

// A new empty directory under the test's temporary directory.
std::string FreshDirectory(const std::string& name);

// All-reduce (f32, f64), reduce-scatter (even and skewed shards), all-gather, broadcast (f32,
// bytes) and barrier on host buffers of several odd lengths, each compared with the exact sum
// or copy computed locally. Host-memory collectives only.
std::string CheckEveryCollective(Collective& c);

// Runs all-reduces until one fails; returns "" when the failure names `peer` ("peer rank K").
std::string ExpectPeerFailure(Collective& c, int peer);

}  // namespace grpo::testing_collective

#endif  // GRPO_COLLECTIVE_COLLECTIVE_TEST_LIB_H_
