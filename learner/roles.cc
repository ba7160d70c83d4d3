#include "learner/roles.h"

#include <algorithm>
#include <new>

#include "core/thread_pool.h"
#include "reward/client.h"
#include "reward/service.h"

namespace grpo {
namespace {

// ServingWeights made on the policy's backend: the f32 values an engine assembles from a push of
// the policy's masters, each tensor converted to its wire dtype (Backend::QuantizeWeight) and
// widened back (WidenWeightRows), bit-identical to the host encoder and decoder. Tensors the
// wire carries as F32 are the masters' own buffers.
struct DeviceServing {
  std::vector<Buffer> converted;      // per parameter; empty where the master is served as is
  std::vector<DeviceWeight> weights;  // every parameter's name and f32 values
};

absl::StatusOr<DeviceServing> ServingOnDevice(const CausalLM& policy, WeightFormat format) {
  Backend& be = policy.backend();
  WeightPushOptions options;
  options.format = format;
  const std::vector<ParameterSpec>& specs = policy.parameter_specs();
  DeviceServing out;
  out.converted.resize(specs.size());
  try {
    Buffer nonfinite = Upload(be, std::vector<int32_t>{0});
    for (size_t i = 0; i < specs.size(); ++i) {
      if (policy.parameter_dtype(i) != DType::kF32) {
        return absl::FailedPreconditionError("weight push: the policy holds '" + specs[i].name + "' as " +
                                          std::string(DTypeName(policy.parameter_dtype(i))) +
                                          "; pushes are made from f32 masters");
      }
      const DType wire = WireDType(specs[i], options);
      if (wire == DType::kF32) continue;
      const int64_t rows = specs[i].shape.size() == 2 ? specs[i].shape[0] : 1;
      const int64_t cols = NumElements(specs[i].shape) / std::max<int64_t>(rows, 1);
      const DeviceParameter sent =
          QuantizeOnDevice(be, policy.parameter_buffer(i), rows, cols, wire, nonfinite.i32());
      out.converted[i] = Buffer(&be, rows * cols, DType::kF32);
      const WeightView view{wire, sent.value.raw(),
                            sent.scale_inv.empty() ? DevicePtr<const float>() : sent.scale_inv.data(),
                            rows, cols, 0};
      be.WidenWeightRows(view, 0, rows, out.converted[i].data());
    }
    const int32_t bad = DownloadI32(be, nonfinite)[0];
    if (bad != 0) {
      return absl::InvalidArgumentError("weight push: the policy holds " + std::to_string(bad) +
                                     " non-finite values (NaN or infinite)");
    }
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("weight push: out of device memory on " + std::string(be.name()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const Buffer* values = out.converted[i].empty() ? &policy.parameter_buffer(i) : &out.converted[i];
    out.weights.push_back({specs[i].name, values});
  }
  return out;
}

// The dtype an engine serving `format` holds a parameter in (CausalLM::Create with
// ServeOptions{format}: ConvertMatrices).
DType HeldDType(const ParameterSpec& spec, WeightFormat format) {
  if (!ServedNarrow(spec) || format == WeightFormat::kF32) return DType::kF32;
  return format == WeightFormat::kBF16 ? DType::kBF16 : DType::kF8E4M3;
}

// The serving model made on the policy's backend from ServingOnDevice's values.
absl::StatusOr<std::unique_ptr<CausalLM>> ServingModelOnDevice(const CausalLM& policy, WeightFormat format) {
  GRPO_ASSIGN_OR_RETURN(DeviceServing serving, ServingOnDevice(policy, format));
  Backend& be = policy.backend();
  const std::vector<ParameterSpec>& specs = policy.parameter_specs();
  std::vector<DeviceParameter> held;
  try {
    for (size_t i = 0; i < specs.size(); ++i) {
      const int64_t rows = specs[i].shape.size() == 2 ? specs[i].shape[0] : 1;
      const int64_t cols = NumElements(specs[i].shape) / std::max<int64_t>(rows, 1);
      held.push_back(QuantizeOnDevice(be, *serving.weights[i].f32, rows, cols, HeldDType(specs[i], format),
                                      nullptr));  // ServingOnDevice checked the values
      serving.converted[i] = Buffer();  // keep at most one extra tensor alive
    }
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("serving copy: out of device memory on " + std::string(be.name()));
  }
  return CausalLM::CreateOnDevice(policy.config(), std::move(held), be);
}

class EmbeddedRollout final : public PolicyRollout {
 public:
  EmbeddedRollout(std::unique_ptr<RolloutEngine> engine, Backend& backend, WeightFormat format)
      : engine_(std::move(engine)), backend_(backend), format_(format) {}

  absl::StatusOr<std::vector<GroupResult>> Generate(const std::vector<GroupRequest>& requests) override {
    return engine_->GenerateGroups(requests);
  }

  absl::Status PushWeights(uint64_t version, const CausalLM& policy) override {
    if (&policy.backend() == &backend_) {
      // Device to device: the masters never leave the backend.
      GRPO_ASSIGN_OR_RETURN(DeviceServing serving, ServingOnDevice(policy, format_));
      GRPO_RETURN_IF_ERROR(engine_->StageWeights(version, serving.weights));
    } else {
      GRPO_ASSIGN_OR_RETURN(std::vector<Parameter> serving,
                            ServingWeights(engine_->config(), policy.ReadParameters(), format_));
      GRPO_RETURN_IF_ERROR(engine_->StageWeights(version, std::move(serving)));
    }
    engine_->WaitForStagedWeights();
    return absl::OkStatus();
  }

  uint64_t weight_version() const override { return engine_->weight_version(); }

 private:
  std::unique_ptr<RolloutEngine> engine_;
  Backend& backend_;  // the engine's
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

absl::StatusOr<std::unique_ptr<PolicyRollout>> MakeEmbeddedRollout(const CausalLM& policy, Backend& backend,
                                                           const EmbeddedRolloutOptions& options) {
  // The values a remote engine would assemble from a push in this format; the engine then holds
  // projection matrices as bf16 / FP8 blocks (served tile by tile), like a remote one.
  std::unique_ptr<CausalLM> model;
  if (&policy.backend() == &backend) {
    GRPO_ASSIGN_OR_RETURN(model, ServingModelOnDevice(policy, options.format));
  } else {
    GRPO_ASSIGN_OR_RETURN(std::vector<Parameter> serving,
                          ServingWeights(policy.config(), policy.ReadParameters(), options.format));
    ServeOptions so;
    so.serve_format = options.format;
    GRPO_ASSIGN_OR_RETURN(model, CausalLM::Create(policy.config(), std::move(serving), backend, so));
  }
  EngineOptions eo;
  eo.kv_memory_bytes = options.kv_memory_bytes;
  eo.tokenizer = options.tokenizer;
  eo.tool_call_threads = options.tool_call_threads;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<RolloutEngine> engine, RolloutEngine::Create(std::move(model), eo));
  auto rollout = std::make_unique<EmbeddedRollout>(std::move(engine), backend, options.format);
  if (options.initial_version > 0) {
    GRPO_RETURN_IF_ERROR(rollout->PushWeights(options.initial_version, policy));
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
