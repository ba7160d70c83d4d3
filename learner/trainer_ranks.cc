// Data-parallel ranks of `grpo train`: what rank 0 sends and what every other rank runs.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "learner/checkpoint.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "learner/data_parallel.h"
#include "learner/remote_rollout.h"
#include "learner/sharded_optimizer.h"
#include "learner/trainer_internal.h"
#include "model/ops/registry.h"
#include "model/presets.h"
#include "rollout/push_token.h"

namespace grpo::trainer_internal {
namespace {

// Rank 0's messages: one kind byte, then the payload.
enum Message : char { kStart = 'S', kStep = 'T', kSave = 'C', kPush = 'P', kDone = 'D' };

absl::Status Send(Collective& c, Message kind, const std::string& payload) {
  std::string bytes(1, kind);
  bytes += payload;
  return BroadcastBytes(c, &bytes, 0);
}

absl::StatusOr<std::pair<Message, std::string>> Receive(Collective& c) {
  std::string bytes;
  GRPO_RETURN_IF_ERROR(BroadcastBytes(c, &bytes, 0));
  if (bytes.empty()) return absl::DataLossError("data parallel: empty message from rank 0");
  return std::make_pair(static_cast<Message>(bytes[0]), bytes.substr(1));
}

// The model whose shape rank 0 trains; its values come from rank 0 (SendStart).
absl::StatusOr<std::unique_ptr<CausalLM>> ModelOfTheRun(const TrainRecipe& r, Backend& backend) {
  if (!r.model_path.empty()) return CausalLM::Load(r.model_path, backend);
  GRPO_ASSIGN_OR_RETURN(ModelConfig config, RecipeModelConfig(r));
  return CausalLM::Create(config, InitParameters(config, r.init_seed, r.init_std), backend);
}

// This rank's part of a sharded weight push (SendPush): its shard of the version to the
// servers rank 0 marked up. The verdicts are rank 0's to act on; a failed collective ends the
// run at the next message.
absl::Status PushOwnShard(const TrainRecipe& r, const CausalLM& policy, const std::string& payload,
                          std::vector<std::unique_ptr<grpo::v1::RolloutService::Stub>>* stubs,
                          Collective& c) {
  const size_t space = payload.find(' ');
  uint64_t version = 0;
  if (space == std::string::npos || !absl::SimpleAtoi(payload.substr(0, space), &version) ||
      payload.size() - space - 1 != r.rollout_endpoints.size()) {
    return absl::DataLossError("data parallel: a malformed weight push message from rank 0");
  }
  if (stubs->empty()) *stubs = RolloutStubs(r.rollout_endpoints, RemoteRolloutOptions{}.max_message_mb);
  std::vector<grpo::v1::RolloutService::StubInterface*> targets;
  for (size_t i = 0; i < stubs->size(); ++i) targets.push_back(payload[space + 1 + i] == '1' ? (*stubs)[i].get() : nullptr);
  GRPO_ASSIGN_OR_RETURN(const std::string token, PushTokenFromFileOrEnv(""));
  PushWeightShards(c, targets, policy.ReadParameters(), version, PushOptions(r),
                   absl::Now() + RemoteRolloutOptions{}.push_timeout, token);
  return absl::OkStatus();
}

}  // namespace

bool Distributed(const TrainOptions& o) { return o.collective != nullptr && o.collective->size() > 1; }

absl::Status SendStart(Collective& c, CausalLM& policy, const std::string& optimizer_checkpoint) {
  GRPO_RETURN_IF_ERROR(Send(c, kStart, optimizer_checkpoint));
  return BroadcastParameters(c, policy);
}

absl::Status SendStep(Collective& c, const std::vector<RlGroup>& groups) {
  return Send(c, kStep, SerializeGroups(groups));
}

absl::Status SendDone(Collective& c) { return Send(c, kDone, ""); }

// kPush's payload: the version in decimal, a space, then one '1' (up) or '0' per server.
absl::Status SendPush(Collective& c, uint64_t version, const std::vector<bool>& up) {
  std::string payload = std::to_string(version) + " ";
  for (bool u : up) payload += u ? '1' : '0';
  return Send(c, kPush, payload);
}

WeightPushOptions PushOptions(const TrainRecipe& r) {
  WeightPushOptions o;
  o.format = r.serve_format;
  return o;
}

absl::Status SaveShards(Collective& c, const ShardedAdamW& zero, const std::string& dir) {
  GRPO_RETURN_IF_ERROR(Send(c, kSave, dir));
  GRPO_RETURN_IF_ERROR(zero.SaveShard(dir));
  return c.Barrier();
}

std::string ShardingSummary(const Collective& c, const ShardedAdamW& zero, const GradientReducer& reducer) {
  const double mib = 4.0 / (1 << 20);
  // the reducer's own vector and bucket images (lent to the optimizer's all-gather), and the
  // receive buffer of one bucket's reduce-scatter inside the collective
  const int64_t staging = reducer.host_elements() + zero.layout().max_bucket_elements();
  char line[240];
  std::snprintf(line, sizeof(line),
                "ranks: %d (%s), AdamW state on rank 0: %.2f MiB of %.2f MiB (ZeRO-1), host staging: %.2f MiB",
                c.size(), c.engine().c_str(), zero.state_elements() * mib, 2.0 * zero.layout().total_elements() * mib,
                staging * mib);
  return line;
}

absl::Status OpenZero(const TrainRecipe& r, const CausalLM& policy, Collective& c, std::optional<ShardedAdamW>* zero,
                      std::unique_ptr<GradientReducer>* reducer) {
  const int64_t bucket_elements = std::max<int64_t>(1, static_cast<int64_t>(r.bucket_mb * (1 << 20) / sizeof(float)));
  GRPO_ASSIGN_OR_RETURN(GradientBuckets layout, GradientBuckets::Create(policy.parameter_specs(), policy.gradient_ready_order(),
                                                                        bucket_elements, c.size(), c.rank()));
  GRPO_ASSIGN_OR_RETURN(*zero, ShardedAdamW::Create(policy.backend(), policy.parameter_specs(), layout, r.adamw, c));
  GRPO_ASSIGN_OR_RETURN(*reducer, GradientReducer::Create(c, policy.backend(), layout, {.overlap = r.overlap_grad_reduce}));
  return absl::OkStatus();
}

absl::StatusOr<TrainSummary> FollowRank0(const TrainRecipe& r, const TrainOptions& o) {
  Collective& c = *o.collective;
  TrainSummary summary;
  summary.run_dir = (std::filesystem::path(r.output_dir) / r.name).string();
  summary.stage = "rl";
  GRPO_ASSIGN_OR_RETURN(Backend * backend, GetBackend(r.backend));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> policy, ModelOfTheRun(r, *backend));
  GRPO_RETURN_IF_ERROR(WithContext(policy->SetComputeDType(r.learner_precision), "learner.precision"));
  // Rank 0 sets the run up, pretrains, and loads its checkpoint meanwhile.
  GRPO_ASSIGN_OR_RETURN(auto start, Receive(c));
  if (start.first == kDone) return summary;  // stopped before RL
  if (start.first != kStart) return absl::DataLossError("data parallel: expected the start message");
  GRPO_RETURN_IF_ERROR(BroadcastParameters(c, *policy));
  GRPO_ASSIGN_OR_RETURN(AdamW noop, AdamW::Create(*backend, {}, r.adamw));
  std::optional<ShardedAdamW> zero;
  std::unique_ptr<GradientReducer> reducer;
  GRPO_RETURN_IF_ERROR(OpenZero(r, *policy, c, &zero, &reducer));
  if (!start.second.empty()) GRPO_RETURN_IF_ERROR(zero->LoadShard(start.second));
  std::unique_ptr<CausalLM> reference;
  if (r.loss.kl_beta > 0) {  // rank 0 wrote it before starting
    GRPO_ASSIGN_OR_RETURN(reference, CausalLM::Load(summary.run_dir + "/checkpoints/reference", *backend));
    GRPO_RETURN_IF_ERROR(reference->SetComputeDType(r.learner_precision));
  }
  const bool routing = policy->config().NumMoeLayers() > 0 && r.routing_replay;
  std::vector<Buffer> grads;
  std::vector<std::unique_ptr<grpo::v1::RolloutService::Stub>> stubs;  // made at the first push
  while (true) {
    GRPO_ASSIGN_OR_RETURN(auto message, Receive(c));
    if (message.first == kDone) return summary;
    if (message.first == kPush) {
      GRPO_RETURN_IF_ERROR(PushOwnShard(r, *policy, message.second, &stubs, c));
      continue;
    }
    if (message.first == kSave) {
      GRPO_RETURN_IF_ERROR(zero->SaveShard(message.second));
      GRPO_RETURN_IF_ERROR(c.Barrier());
      continue;
    }
    if (message.first != kStep) return absl::DataLossError("data parallel: unexpected message from rank 0");
    GRPO_ASSIGN_OR_RETURN(std::vector<RlGroup> groups, ParseGroups(message.second));
    GRPO_RETURN_IF_ERROR(
        RlUpdate(*policy, reference.get(), noop, groups, UpdateOptions(r, routing, &c, &*zero, reducer.get()), &grads).status());
    ++summary.steps_done;
  }
}

}  // namespace grpo::trainer_internal
