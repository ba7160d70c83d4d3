// PolicyRollout over `grpo rollout serve` servers (remote mode of `grpo train`).
//
// Contract:
//  - Generate sends every group as its own Generate RPC, concurrently, spread round robin over
//    the servers that are up. A call failing with UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED,
//    ABORTED or INTERNAL marks its server down and the group is sent to another server (samples
//    are seeded per group, so where a group runs does not change it); other errors fail the
//    call at once. With no server up, Unavailable naming the endpoints.
//  - PushWeights encodes the version once (learner/weight_push.h) and streams it to every
//    server concurrently, with the job's push token; a server that fails or rejects it is
//    marked down. It succeeds when at least one server took the version. With data-parallel
//    ranks (options.ranks) every rank pushes its own shard in parallel instead (see below).
//  - A down server is probed (Health) at the start of each Generate; one that answers gets the
//    newest pushed version before it receives work.
//  - Versions: every token of a sample must carry (Sample.weight_versions) a version between
//    the one the servers served when its group was sent and the newest pushed; a server whose
//    samples do not (e.g. one restarted with its original weights) is marked down and the group
//    sent elsewhere. Without a push in flight that is exactly the current version.
//  - Threads: one Generate and one PushWeights may run at the same time (rollout.max_staleness
//    >= 2: the trainer pushes while the next steps' groups generate). The servers take the new
//    version between two decode steps without dropping the groups in flight (partial
//    rollouts, rollout/service.h UpdateWeights); their samples record which tokens each
//    version produced. weight_version() is the newest version whose push has finished.
#ifndef GRPO_LEARNER_REMOTE_ROLLOUT_H_
#define GRPO_LEARNER_REMOTE_ROLLOUT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "learner/roles.h"
#include "learner/weight_push.h"
#include "rollout/tool_settings.h"

namespace grpo {

struct RemoteRolloutOptions {
  std::vector<std::string> endpoints;  // host:port of each rollout server
  WeightPushOptions push;              // wire format of pushed weights
  std::string push_token;              // sent with every push (rollout/push_token.h); "" none
  absl::Duration group_timeout = absl::Minutes(10);  // deadline of one Generate call
  absl::Duration push_timeout = absl::Minutes(10);
  int max_attempts = 4;                // per group, over servers
  int max_message_mb = 512;
  int max_in_flight = 64;              // concurrent Generate calls in all
  // Data-parallel learner (more than one rank): PushWeights first calls announce(version, up)
  // so that every other rank joins in PushWeightShards (learner/weight_push.h) for the servers
  // marked up, then pushes this rank's shard. A server that missed a version and comes back
  // gets it whole from this process.
  Collective* ranks = nullptr;
  std::function<absl::Status(uint64_t version, const std::vector<bool>& up)> announce;

  // Multi-turn tool use: sent with every request (GenerateRequest.tools; the servers run the
  // environment), with each GroupRequest's max_tool_calls and max_tool_output_tokens.
  // environment "none": single-turn requests.
  ToolSettings tools;
};

// One stub per endpoint, with the message limits of `max_message_mb`.
std::vector<std::unique_ptr<grpo::v1::RolloutService::Stub>> RolloutStubs(const std::vector<std::string>& endpoints,
                                                                          int max_message_mb);

absl::StatusOr<std::unique_ptr<PolicyRollout>> MakeRemoteRollout(const RemoteRolloutOptions& options);

// Proto conversions (also used by tests).
grpo::v1::GenerateRequest GroupRequestToProto(const GroupRequest& request, const ToolSettings& tools = {});
// Errors: a sample with an unspecified finish_reason (rollout/sample_proto.h).
absl::StatusOr<GroupResult> GroupResultFromProto(const grpo::v1::Group& group);

}  // namespace grpo

#endif  // GRPO_LEARNER_REMOTE_ROLLOUT_H_
