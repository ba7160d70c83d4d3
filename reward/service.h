// RewardService over gRPC (proto/reward.proto), serving one RuleSet.
//
// Contract:
//  - Listens on ServeOptions::listen (default 127.0.0.1:50051: loopback unless told otherwise):
//    HOST:PORT with PORT in 0..65535, 0 picking a free port (see port()). The address is its
//    own: a port another server listens on is an error, not shared (core/grpc_server.h). Start
//    fails with InvalidArgument for a bad address and Unavailable naming why it cannot listen.
//  - Score: items are scored independently, results in request order. A batch with more than
//    max_batch_items items is RESOURCE_EXHAUSTED; an item whose text (completion + answer +
//    prompt + task + meta) exceeds max_item_bytes gets a per-item error, not a reward. The
//    client's deadline is checked between items: once it has passed, the call ends with
//    DEADLINE_EXCEEDED. While draining, Score is UNAVAILABLE.
//  - Bytes in flight are bounded: a request larger than max_request_mb is refused by gRPC
//    (RESOURCE_EXHAUSTED); at most max_concurrent_requests Score calls run at once and the rest
//    are refused with RESOURCE_EXHAUSTED at once (gRPC's thread quota is that plus a few, for
//    Health and ListRules). Start refuses options whose requests in flight
//    (max_request_mb x max_concurrent_requests) do not fit in memory (core/memory_plan.h).
//    A Score whose allocation fails answers RESOURCE_EXHAUSTED.
//  - Health: SERVING, or NOT_SERVING while draining. ListRules: the configured rules.
//  - Shutdown(grace): stops taking calls (drain), lets running calls finish for up to `grace`,
//    then cancels the rest and returns. ServeUntilSignal does this on SIGTERM or SIGINT.
#ifndef GRPO_REWARD_SERVICE_H_
#define GRPO_REWARD_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/thread_pool.h"
#include "core/status.h"
#include "proto/reward.grpc.pb.h"
#include "reward/rule_set.h"

namespace grpo::reward {

// The wire form of a RuleSet result (what RewardService.Score returns for one item).
void ToRewardResult(const std::string& id, const ItemResult& r, grpo::v1::RewardResult* out);

// The limits Score enforces on a batch (ServeOptions' fields of the same names).
struct ScoreLimits {
  size_t max_batch_items = 65536;
  size_t max_item_bytes = 8u << 20;
};

// The work of one admitted Score call, as the server does it: more than max_batch_items items
// is ResourceExhausted (nothing scored); an item above max_item_bytes gets a per-item error;
// `expired` is asked between items (the client's deadline or cancellation): once it says true,
// DeadlineExceeded. Items are scored on `pool` (may be null) from 64 items on. `resp` is
// overwritten with the results in request order when OK. The fuzzer drives this function.
absl::Status ScoreBatch(const RuleSet& rules, const grpo::v1::ScoreRequest& req, const ScoreLimits& limits,
                        const std::function<bool()>& expired, ThreadPool* pool, grpo::v1::ScoreResponse* resp);

struct ServeOptions {
  std::string listen = "127.0.0.1:50051";
  size_t max_batch_items = 65536;
  size_t max_item_bytes = 8u << 20;
  int max_request_mb = 64;          // largest request received (gRPC max receive message size)
  int max_concurrent_requests = 8;  // Score calls at once
  int max_message_mb = 512;         // largest response sent
  int threads = 0;  // scoring threads per large batch (0: all cores)
  std::string version = "grpo 0.1.0";
};

// RewardItem from its proto form (and back, for clients and tests).
RewardItem FromProto(const grpo::v1::RewardRequestItem& p);
grpo::v1::RewardRequestItem ToProto(const RewardItem& item, const std::string& id);

class RewardServer {
 public:
  static absl::StatusOr<std::unique_ptr<RewardServer>> Start(std::shared_ptr<const RuleSet> rules,
                                                     ServeOptions options);
  ~RewardServer();
  int port() const { return port_; }
  // Drains and stops (see above). Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(5));
  // Blocks until the server has stopped.
  void Wait();

  class Impl;

 private:
  RewardServer() = default;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
};

// Starts a server and blocks until SIGTERM or SIGINT, then shuts it down cleanly. Prints one
// line "grpo reward serve: listening on HOST:PORT" to stderr when ready.
absl::Status ServeUntilSignal(std::shared_ptr<const RuleSet> rules, ServeOptions options);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_SERVICE_H_
