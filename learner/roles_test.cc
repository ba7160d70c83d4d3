// The embedded rollout role: its serving copy and its weight pushes, made device to device on
// the policy's backend, serve exactly what the wire path serves (ServingWeights, the values a
// remote engine assembles: same greedy tokens, bit-identical logprobs) in every wire format; a
// push moves a few bytes between host and device whatever the model's size (TransferStats),
// where the host path moves the whole model; a non-finite master is refused.
#include "learner/roles.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"
#include "model/rope.h"

namespace grpo {
namespace {

std::unique_ptr<CausalLM> Policy(const std::string& preset, uint64_t seed) {
  auto config = PresetConfig(preset);
  EXPECT_TRUE(config.ok()) << preset;
  auto m = CausalLM::Create(*config, InitParameters(*config, seed, 0.1), BackendForTests());
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

std::vector<GroupRequest> Requests() {
  GroupRequest r;
  r.prompt = {3, 17, 42, 99, 7, 250, 11};
  r.n = 2;
  r.sampling.temperature = 0.0;
  r.max_new_tokens = 6;
  GroupRequest s = r;
  s.prompt = {5, 6, 7};
  s.sampling.temperature = 1.0;
  s.seed = 9;
  return {r, s};
}

// Tokens and logprobs of every sample, in order.
std::pair<std::vector<int32_t>, std::vector<float>> Flatten(const std::vector<GroupResult>& groups) {
  std::pair<std::vector<int32_t>, std::vector<float>> out;
  for (const GroupResult& g : groups) {
    for (const SampleResult& s : g.samples) {
      out.first.insert(out.first.end(), s.tokens.begin(), s.tokens.end());
      out.second.insert(out.second.end(), s.logprobs.begin(), s.logprobs.end());
    }
  }
  return out;
}

// The reference: an engine over ServingWeights computed on the host (the wire's encoder and
// decoder), as before the device path existed.
std::unique_ptr<RolloutEngine> WireEngine(const CausalLM& policy, WeightFormat format) {
  auto serving = ServingWeights(policy.config(), policy.ReadParameters(), format);
  EXPECT_TRUE(serving.ok()) << serving.status();
  ServeOptions so;
  so.serve_format = format;
  auto model = CausalLM::Create(policy.config(), std::move(serving).value(), BackendForTests(), so);
  EXPECT_TRUE(model.ok()) << model.status();
  auto engine = RolloutEngine::Create(std::move(model).value(), EngineOptions{});
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(engine).value();
}

void PushToWireEngine(RolloutEngine& engine, uint64_t version, const CausalLM& policy, WeightFormat format) {
  auto serving = ServingWeights(policy.config(), policy.ReadParameters(), format);
  ASSERT_TRUE(serving.ok()) << serving.status();
  ASSERT_TRUE(engine.StageWeights(version, std::move(serving).value()).ok());
  engine.WaitForStagedWeights();
}

TEST(EmbeddedRolloutTest, DeviceServingCopyAndPushMatchTheWirePath) {
  for (const char* preset : {"qwen2-tiny", "qwen3_moe-nano", "deepseek_v3-nano"}) {
    for (WeightFormat format : kWireWeightFormats) {
      SCOPED_TRACE(std::string(preset) + " " + WeightFormatName(format));
      std::unique_ptr<CausalLM> policy = Policy(preset, 1);
      EmbeddedRolloutOptions o;
      o.format = format;
      auto embedded = MakeEmbeddedRollout(*policy, BackendForTests(), o);
      ASSERT_TRUE(embedded.ok()) << embedded.status();
      std::unique_ptr<RolloutEngine> wire = WireEngine(*policy, format);
      auto a0 = (*embedded)->Generate(Requests());
      auto b0 = wire->GenerateGroups(Requests());
      ASSERT_TRUE(a0.ok() && b0.ok());
      EXPECT_EQ(Flatten(*a0), Flatten(*b0));

      std::unique_ptr<CausalLM> next = Policy(preset, 2);
      ASSERT_TRUE((*embedded)->PushWeights(1, *next).ok());
      EXPECT_EQ((*embedded)->weight_version(), 1u);
      PushToWireEngine(*wire, 1, *next, format);
      auto a1 = (*embedded)->Generate(Requests());
      auto b1 = wire->GenerateGroups(Requests());
      ASSERT_TRUE(a1.ok() && b1.ok());
      EXPECT_EQ(Flatten(*a1), Flatten(*b1));
      EXPECT_NE(Flatten(*a1).second, Flatten(*a0).second);  // the push changed what is served
    }
  }
}

// Host<->device bytes of one push of `preset`'s weights to an embedded engine, through the
// device path (the policy on the engine's backend) and, for comparison, the host path (a
// download of the masters, as a remote push does).
struct PushTraffic {
  int64_t serving_copy = 0, device_push = 0, host_push = 0, model_bytes = 0, rope_bytes = 0;
};

PushTraffic MeasurePush(const std::string& preset) {
  Backend& be = BackendForTests();
  std::unique_ptr<CausalLM> policy = Policy(preset, 1);
  PushTraffic t;
  t.model_bytes = policy->parameter_bytes();
  const ModelConfig& c = policy->config();
  const RopeTables rope = BuildRopeTables(c, std::min<int64_t>(c.max_position_embeddings, 4096));
  t.rope_bytes = static_cast<int64_t>((rope.cos.size() + rope.sin.size()) * sizeof(float));
  EmbeddedRolloutOptions o;
  o.format = WeightFormat::kFp8Block;
  be.ResetTransferStats();
  auto embedded = MakeEmbeddedRollout(*policy, be, o);
  EXPECT_TRUE(embedded.ok()) << embedded.status();
  t.serving_copy = be.transfer_stats().total_bytes();
  be.ResetTransferStats();
  EXPECT_TRUE((*embedded)->PushWeights(1, *policy).ok());
  t.device_push = be.transfer_stats().total_bytes();
  be.ResetTransferStats();
  const std::vector<Parameter> masters = policy->ReadParameters();
  t.host_push = be.transfer_stats().total_bytes();
  return t;
}

TEST(EmbeddedRolloutTest, APushMovesAFewBytesWhateverTheModelSize) {
  const PushTraffic small = MeasurePush("qwen2-nano");
  const PushTraffic large = MeasurePush("qwen2-tiny");
  ASSERT_GT(large.model_bytes, 20 * small.model_bytes);
  // Two 4-byte counters of non-finite values, each uploaded and downloaded once.
  EXPECT_EQ(small.device_push, 16);
  EXPECT_EQ(large.device_push, 16);
  // The serving copy: one counter, plus the serving model's RoPE tables (which depend on the
  // head size and the positions, not on the number or width of the layers).
  EXPECT_EQ(small.serving_copy, 8 + small.rope_bytes);
  EXPECT_EQ(large.serving_copy, 8 + large.rope_bytes);
  // The host path downloads the whole model.
  EXPECT_GE(small.host_push, small.model_bytes);
  EXPECT_GE(large.host_push, large.model_bytes);
}

TEST(EmbeddedRolloutTest, ANonFiniteMasterIsRefusedAndNothingChanges) {
  for (WeightFormat format : kWireWeightFormats) {
    SCOPED_TRACE(WeightFormatName(format));
    std::unique_ptr<CausalLM> policy = Policy("qwen2-nano", 1);
    EmbeddedRolloutOptions o;
    o.format = format;
    auto embedded = MakeEmbeddedRollout(*policy, BackendForTests(), o);
    ASSERT_TRUE(embedded.ok()) << embedded.status();
    auto before = (*embedded)->Generate(Requests());
    ASSERT_TRUE(before.ok());
    std::unique_ptr<CausalLM> bad = Policy("qwen2-nano", 2);
    Parameter p = bad->ReadParameter(1);  // a layer's first tensor
    p.value.mutable_data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
    ASSERT_TRUE(bad->WriteParameter(1, p.value).ok());
    const absl::Status s = (*embedded)->PushWeights(1, *bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(std::string(s.message()).find("non-finite"), std::string::npos) << s;
    EXPECT_EQ((*embedded)->weight_version(), 0u);
    auto after = (*embedded)->Generate(Requests());
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(Flatten(*after), Flatten(*before));
  }
}

}  // namespace
}  // namespace grpo
