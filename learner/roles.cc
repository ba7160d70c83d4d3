#include "learner/roles.h"

#include "core/thread_pool.h"
#include "reward/client.h"
#include "reward/service.h"

namespace grpo {
namespace {

class EmbeddedRollout final : public PolicyRollout {
 public:
  EmbeddedRollout(std::unique_ptr<RolloutEngine> engine, WeightFormat format)
      : engine_(std::move(engine)), format_(format) {}

  absl::StatusOr<std::vector<GroupResult>> Generate(const std::vector<GroupRequest>& requests) override {
    return engine_->GenerateGroups(requests);
  }

  absl::Status PushWeights(uint64_t version, const std::vector<Parameter>& masters) override {
    GRPO_ASSIGN_OR_RETURN(std::vector<Parameter> serving, ServingWeights(engine_->config(), masters, format_));
    GRPO_RETURN_IF_ERROR(engine_->StageWeights(version, std::move(serving)));
    engine_->WaitForStagedWeights();
    return absl::OkStatus();
  }

  uint64_t weight_version() const override { return engine_->weight_version(); }

 private:
  std::unique_ptr<RolloutEngine> engine_;
  WeightFormat format_;
};

class EmbeddedScorer final : public RewardScorer {
 public:
  explicit EmbeddedScorer(std::shared_ptr<const reward::RuleSet> rules) : rules_(std::move(rules)) {}

  absl::StatusOr<std::vector<grpo::v1::RewardResult>> Score(
      const std::vector<grpo::v1::RewardRequestItem>& items) override {
    std::vector<grpo::v1::RewardResult> out(items.size());
    ThreadPool::Default().ParallelFor(static_cast<int64_t>(items.size()), 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const auto& p = items[i];
        reward::RewardItem item;
        item.completion = p.completion();
        item.answer = p.answer();
        item.prompt = p.prompt();
        item.task = p.task();
        for (const auto& [k, v] : p.meta()) item.meta[k] = v;
        reward::ToRewardResult(p.id(), rules_->Score(item), &out[i]);
      }
    });
    return out;
  }

 private:
  std::shared_ptr<const reward::RuleSet> rules_;
};

class RemoteScorer final : public RewardScorer {
 public:
  explicit RemoteScorer(std::unique_ptr<reward::RewardClient> client) : client_(std::move(client)) {}
  absl::StatusOr<std::vector<grpo::v1::RewardResult>> Score(
      const std::vector<grpo::v1::RewardRequestItem>& items) override {
    return client_->Score(items);
  }

 private:
  std::unique_ptr<reward::RewardClient> client_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PolicyRollout>> MakeEmbeddedRollout(const ModelConfig& config,
                                                           const std::vector<Parameter>& masters,
                                                           const EmbeddedRolloutOptions& options) {
  // The values a remote engine would assemble from a push in this format; the engine then holds
  // projection matrices as bf16 / FP8 blocks (served tile by tile), like a remote one.
  GRPO_ASSIGN_OR_RETURN(std::vector<Parameter> serving, ServingWeights(config, masters, options.format));
  ServeOptions so;
  so.serve_format = options.format;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model,
                        CausalLM::Create(config, std::move(serving),
                                         options.backend != nullptr ? *options.backend : CpuBackend(), so));
  EngineOptions eo;
  eo.kv_memory_bytes = options.kv_memory_bytes;
  eo.tokenizer = options.tokenizer;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<RolloutEngine> engine, RolloutEngine::Create(std::move(model), eo));
  auto rollout = std::make_unique<EmbeddedRollout>(std::move(engine), options.format);
  if (options.initial_version > 0) {
    GRPO_RETURN_IF_ERROR(rollout->PushWeights(options.initial_version, masters));
  }
  return std::unique_ptr<PolicyRollout>(std::move(rollout));
}

std::unique_ptr<RewardScorer> MakeEmbeddedScorer(std::shared_ptr<const reward::RuleSet> rules) {
  return std::make_unique<EmbeddedScorer>(std::move(rules));
}

absl::StatusOr<std::unique_ptr<RewardScorer>> MakeRemoteScorer(const std::vector<std::string>& endpoints) {
  reward::ClientOptions co;
  co.targets = endpoints;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<reward::RewardClient> client, reward::RewardClient::Create(co));
  return std::unique_ptr<RewardScorer>(std::make_unique<RemoteScorer>(std::move(client)));
}

}  // namespace grpo
