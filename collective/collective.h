// Collective communication between the ranks of one job: the interface the learner's
// data-parallel ranks use, implemented over engines the field uses (Gloo for CPU ranks,
// gloo_collective.h; NCCL for GPU ranks, nccl_collective.h). There is no transport of our own.
//
// Contract shared by every implementation:
// - A group has `size()` ranks numbered 0..size()-1; every rank calls the same collectives in
//   the same order with the same element counts (a mismatch is a programming error the engine
//   may not detect).
// - Every call is bounded by the group's timeout. A peer that is gone (exited, killed, hung)
//   makes the call fail with kUnavailable or kDeadlineExceeded, and the message names the peer
//   rank where the engine lets us tell which one it was ("peer rank 2 ...").
// - After one call fails the group is broken: every later call fails with kFailedPrecondition
//   repeating the first error. Tear the group down and start again (the learner exits and is
//   resumed from its last checkpoint).
// - Buffers are in the memory the implementation works on: host memory for Gloo, CUDA device
//   memory for NCCL (`memory()` says which). Calls block until the result is in place.
#ifndef GRPO_COLLECTIVE_COLLECTIVE_H_
#define GRPO_COLLECTIVE_COLLECTIVE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace grpo {

// Where a group's ranks meet and how long any one call may take.
struct CollectiveOptions {
  int rank = 0;
  int size = 1;
  // A directory every rank can read and write (a shared file system across nodes): the job's
  // rendezvous directory. Ranks exchange addresses (Gloo) or the unique id (NCCL) through a file
  // store in `<rendezvous_dir>/<group>/`; the directory must be fresh for each attempt.
  std::string rendezvous_dir;
  std::string group = "learner";
  // The address this rank listens on for its peers: a host name or IP of this machine. Empty:
  // this machine's host name. Tests use 127.0.0.1.
  std::string host;
  // Bound of every call, and of meeting the peers when the group is created.
  absl::Duration timeout = absl::Seconds(60);
};

// Checks the options before any rank spends time on them (rank within size, size >= 1,
// a rendezvous directory and group name given, positive timeout).
absl::Status ValidateCollectiveOptions(const CollectiveOptions& options);

// Splits `total` elements into `parts` contiguous shards whose sizes differ by at most one,
// the larger ones first: the layout ReduceScatterSum and AllGather use when every rank owns
// "its share" of a flat buffer. parts >= 1.
std::vector<size_t> EvenShards(size_t total, int parts);

// Offset of rank `rank`'s shard within a flat buffer laid out by `counts`.
size_t ShardOffset(absl::Span<const size_t> counts, int rank);

// Bytes one rank sends in a ring all-gather of `counts` floats (each shard goes round the ring
// and stops before its owner: every shard but that of the next rank, rank + 1 mod N), and in a
// ring all-reduce of `elements` values of `element_size` bytes (2(N-1)/N of the buffer).
uint64_t RingAllGatherBytes(absl::Span<const size_t> counts, int rank);
uint64_t RingAllReduceBytes(size_t elements, size_t element_size, int ranks);
// Bytes `rank` sends in a binomial-tree broadcast of `bytes` from `root`: `bytes` per child.
uint64_t BinomialBroadcastBytes(uint64_t bytes, int rank, int root, int ranks);

class Collective {
 public:
  enum class Memory { kHost, kCudaDevice };

  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Memory memory() const = 0;
  // The engine's name, for logs: "gloo" or "nccl".
  virtual std::string engine() const = 0;

  // Replaces `data` on every rank by the elementwise sum over all ranks.
  virtual absl::Status AllReduceSum(absl::Span<float> data) = 0;
  virtual absl::Status AllReduceSum(absl::Span<double> data) = 0;

  // `data` is a flat buffer of the same length on every rank, laid out as size() shards of
  // `counts[r]` elements (sum of counts == data.size()). On return this rank's shard, at
  // ShardOffset(counts, rank()), holds the elementwise sum over all ranks of that shard; the
  // other shards hold unspecified values.
  virtual absl::Status ReduceScatterSum(absl::Span<float> data,
                                        absl::Span<const size_t> counts) = 0;

  // The inverse layout: on entry this rank's shard of `data` holds its values; on return every
  // shard holds the owning rank's values, on every rank. Same `counts` contract as above.
  virtual absl::Status AllGather(absl::Span<float> data, absl::Span<const size_t> counts) = 0;

  // Copies `root`'s `data` into every other rank's `data`.
  virtual absl::Status Broadcast(absl::Span<float> data, int root) = 0;
  virtual absl::Status Broadcast(absl::Span<uint8_t> data, int root) = 0;

  // Returns once every rank has entered the barrier.
  virtual absl::Status Barrier() = 0;

  // Payload bytes this rank has sent over the network in its calls so far, as the engine's
  // algorithm for each call moves them (ring all-reduce: 2(N-1)/N of the buffer; reduce-scatter:
  // the other ranks' shards; ring all-gather: every shard but the next rank's; broadcast down a
  // binomial tree: the buffer once per child of this rank). Computed from the call's sizes, not read off the sockets;
  // for benchmarks and the learner's traffic metric. Safe to read from any thread.
  uint64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }

 protected:
  void CountSent(uint64_t bytes) { bytes_sent_.fetch_add(bytes, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> bytes_sent_{0};
};

}  // namespace grpo

#endif  // GRPO_COLLECTIVE_COLLECTIVE_H_
