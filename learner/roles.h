// The trainer's view of the other roles, one interface each with an in-process implementation
// (the embedded default) and a gRPC one (remote mode: the services named by endpoints).
//
//  - PolicyRollout: generates groups with the current policy weights and takes new versions.
//    Embedded: a RolloutEngine in this process serving the pushed weights: the values a remote
//    engine would assemble from the wire (learner/weight_push.h ServingWeights), with projection
//    matrices held as bf16 or FP8 blocks and served tile by tile, as a remote engine does. When
//    the engine runs on the policy's backend (the trainer's case), its serving copy and every
//    push are made device to device with backend ops (Backend::QuantizeWeight to the wire dtype,
//    WidenWeightRows back, QuantizeWeight to the held format): bit-identical to the wire path,
//    with a few bytes of host traffic per push whatever the model's size. Remote: the masters
//    are downloaded once per push, encoded once and streamed to every server.
//  - RewardScorer: scores completions. Embedded: a RuleSet. Remote: RewardClient (failover
//    over the replicas).
#ifndef GRPO_LEARNER_ROLES_H_
#define GRPO_LEARNER_ROLES_H_

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "learner/weight_push.h"
#include "model/causal_lm.h"
#include "proto/reward.pb.h"
#include "reward/rule_set.h"
#include "rollout/engine.h"

namespace grpo {

class PolicyRollout {
 public:
  virtual ~PolicyRollout() = default;
  virtual absl::StatusOr<std::vector<GroupResult>> Generate(const std::vector<GroupRequest>& requests) = 0;
  // Makes `version` (> the serving one) serve the weights of `policy` (the learner's model, f32
  // masters) before the next Generate returns any token of it.
  virtual absl::Status PushWeights(uint64_t version, const CausalLM& policy) = 0;
  virtual uint64_t weight_version() const = 0;
};

class RewardScorer {
 public:
  virtual ~RewardScorer() = default;
  virtual absl::StatusOr<std::vector<grpo::v1::RewardResult>> Score(
      const std::vector<grpo::v1::RewardRequestItem>& items) = 0;
};

struct EmbeddedRolloutOptions {
  WeightFormat format = WeightFormat::kF32;  // one of kWireWeightFormats
  int64_t kv_memory_bytes = int64_t{256} << 20;
  uint64_t initial_version = 0;
  const tokenizer::Tokenizer* tokenizer = nullptr;  // for stop strings
  int64_t tool_call_threads = 4;                    // EngineOptions::tool_call_threads
};

// A RolloutEngine on `backend` over a copy of `policy`'s weights (as served in `format`; made
// on the device when `backend` is the policy's).
absl::StatusOr<std::unique_ptr<PolicyRollout>> MakeEmbeddedRollout(const CausalLM& policy, Backend& backend,
                                                           const EmbeddedRolloutOptions& options);

// Scores with `rules` in this process (RuleSet is thread-safe; items are scored in parallel).
std::unique_ptr<RewardScorer> MakeEmbeddedScorer(std::shared_ptr<const reward::RuleSet> rules);

// Scores through RewardService replicas.
absl::StatusOr<std::unique_ptr<RewardScorer>> MakeRemoteScorer(const std::vector<std::string>& endpoints);

}  // namespace grpo

#endif  // GRPO_LEARNER_ROLES_H_
