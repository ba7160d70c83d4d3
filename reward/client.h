// RewardClient: the trainer's client for RewardService replicas, with retries and failover.
//
// Contract:
//  - Score sends the whole batch to one replica. A call that fails with UNAVAILABLE,
//    DEADLINE_EXCEEDED (per-attempt timeout), ABORTED or INTERNAL is retried on the next
//    replica (round robin), with exponential backoff (backoff, doubling, capped at 2 s)
//    between rounds over all replicas, up to max_attempts attempts in all. Other codes
//    (INVALID_ARGUMENT, RESOURCE_EXHAUSTED for an oversized batch, ...) fail at once: another
//    replica would refuse them too.
//  - A replica that failed is tried last for the next calls until it answers again.
//  - The reply must carry one result per item, ids matching; otherwise the attempt failed.
//  - Thread-safe: one client may be shared by many threads.
#ifndef GRPO_REWARD_CLIENT_H_
#define GRPO_REWARD_CLIENT_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/status.h"
#include "proto/reward.grpc.pb.h"

namespace grpo::reward {

struct ClientOptions {
  std::vector<std::string> targets;  // "host:port" of each replica
  absl::Duration timeout = absl::Seconds(30);  // per attempt
  int max_attempts = 6;
  absl::Duration backoff = absl::Milliseconds(50);
  int max_message_mb = 512;
};

class RewardClient {
 public:
  static absl::StatusOr<std::unique_ptr<RewardClient>> Create(ClientOptions options);

  absl::StatusOr<std::vector<grpo::v1::RewardResult>> Score(
      const std::vector<grpo::v1::RewardRequestItem>& items);
  absl::StatusOr<grpo::v1::ListRulesResponse> ListRules();
  // True when at least one replica reports SERVING.
  bool AnyServing();

  // Attempts made so far (for tests and metrics).
  int attempts() const { return attempts_.load(); }

 private:
  explicit RewardClient(ClientOptions options) : options_(std::move(options)) {}
  std::vector<size_t> Order() ABSL_LOCKS_EXCLUDED(mu_);
  void MarkFailed(size_t replica, bool failed) ABSL_LOCKS_EXCLUDED(mu_);

  ClientOptions options_;
  std::vector<std::unique_ptr<grpo::v1::RewardService::Stub>> stubs_;
  absl::Mutex mu_;
  std::vector<bool> failed_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> attempts_{0};
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_CLIENT_H_
