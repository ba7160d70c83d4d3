// Weight push: the encoded stream assembles (rollout/weight_stream.h) to exactly ServingWeights
// in every format, FP8 equals the CPU quantize+dequantize, random chunk sizes change nothing,
// and PushWeights over loopback gRPC reports acceptance, rejections and unreachable engines.
#include "learner/weight_push.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <random>

#include "absl/time/clock.h"
#include "core/fp8_block.h"
#include "model/presets.h"

namespace grpo {
namespace {

using Chunk = grpo::v1::WeightUpdateChunk;

ModelConfig Config(const std::string& preset, int64_t hidden = 0) {
  auto c = PresetConfig(preset);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (hidden > 0) c->hidden_size = hidden;
  return *c;
}

WeightPushOptions Options(WeightFormat f, size_t chunk = 1000, DType other = DType::kBF16) {
  WeightPushOptions o;
  o.format = f;
  o.chunk_bytes = chunk;
  o.fp8_other_dtype = other;
  return o;
}

std::vector<Chunk> Encode(const std::vector<Parameter>& p, uint64_t v, const WeightPushOptions& o) {
  std::vector<Chunk> out;
  absl::Status s = EncodeWeightUpdate(p, v, o, [&](const Chunk& c) {
    out.push_back(c);
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

absl::StatusOr<StagedWeights> Assemble(const ModelConfig& config, const std::vector<Chunk>& chunks) {
  GRPO_ASSIGN_OR_RETURN(WeightAssembler a, WeightAssembler::Create(config));
  for (const Chunk& c : chunks) GRPO_RETURN_IF_ERROR(a.Add(c));
  return a.Finish();
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

struct Case {
  std::string preset;
  int64_t hidden;
  WeightFormat format;
  DType other;
};

TEST(WeightPush, RoundTripMatchesServingWeightsBitForBit) {
  const std::vector<Case> cases = {
      {"deepseek_v3-nano", 0, WeightFormat::kFp8Block, DType::kBF16},
      {"deepseek_v3-nano", 160, WeightFormat::kFp8Block, DType::kF32},
      {"llama-nano", 0, WeightFormat::kFp8Block, DType::kBF16},
      {"llama-nano", 200, WeightFormat::kBF16, DType::kBF16},
      {"deepseek_v3-nano", 0, WeightFormat::kF32, DType::kBF16},
      {"llama-nano", 0, WeightFormat::kF32, DType::kBF16},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.preset + " hidden " + std::to_string(c.hidden) + " format " +
                 std::to_string(static_cast<int>(c.format)));
    const ModelConfig config = Config(c.preset, c.hidden);
    const std::vector<Parameter> masters = InitParameters(config, 5);
    const WeightPushOptions o = Options(c.format, 4096, c.other);
    const std::vector<Chunk> chunks = Encode(masters, 3, o);
    auto staged = Assemble(config, chunks);
    ASSERT_TRUE(staged.ok()) << staged.status().ToString();
    EXPECT_EQ(staged->version, 3u);
    auto serving = ServingWeights(config, masters, o);
    ASSERT_TRUE(serving.ok()) << serving.status().ToString();
    ASSERT_EQ(serving->size(), masters.size());
    ASSERT_EQ(staged->params.size(), masters.size());
    int fp8 = 0;
    for (size_t i = 0; i < masters.size(); ++i) {
      const Parameter& m = masters[i];
      SCOPED_TRACE(m.spec.name);
      ASSERT_EQ((*serving)[i].spec.name, m.spec.name);
      EXPECT_TRUE(SameBits(staged->params[i].value, (*serving)[i].value));
      EXPECT_TRUE(staged->params[i].value.writable());
      EXPECT_TRUE((*serving)[i].value.writable());
      EXPECT_NE((*serving)[i].value.raw_data(), m.value.raw_data()) << "must not alias the master";
      Tensor want;
      if (c.format == WeightFormat::kFp8Block && m.spec.is_matrix) {
        auto q = QuantizeFp8Block(m.value);
        want = *DequantizeFp8Block(q->weight, q->scale_inv);
        ++fp8;
      } else if (c.format == WeightFormat::kBF16 ||
                 (c.format == WeightFormat::kFp8Block && c.other == DType::kBF16)) {
        want = m.value.CastTo(DType::kBF16)->ToF32();
      } else {
        want = m.value;
      }
      EXPECT_TRUE(SameBits((*serving)[i].value, want));
    }
    if (c.format == WeightFormat::kFp8Block) {
      EXPECT_GT(fp8, 5);
    }
  }
}

TEST(WeightPush, StreamLayoutAndDeterminism) {
  const ModelConfig config = Config("deepseek_v3-nano", 160);
  const std::vector<Parameter> masters = InitParameters(config, 9);
  const std::vector<Chunk> a = Encode(masters, 12, Options(WeightFormat::kFp8Block, 777));
  const std::vector<Chunk> b = Encode(masters, 12, Options(WeightFormat::kFp8Block, 777));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString());

  // Tensors in ExpectedParameters order, each FP8 weight followed by its scale.
  std::vector<std::string> order;
  for (const Chunk& c : a) {
    EXPECT_EQ(c.version(), 12u);
    EXPECT_LE(c.data().size(), 777u);
    if (!c.tensor_name().empty() && (order.empty() || order.back() != c.tensor_name())) {
      order.push_back(c.tensor_name());
    }
  }
  std::vector<std::string> want;
  for (const ParameterSpec& s : ExpectedParameters(config)) {
    want.push_back(s.name);
    if (s.is_matrix) want.push_back(s.name + "_scale_inv");
  }
  EXPECT_EQ(order, want);
  ASSERT_TRUE(a.back().has_summary());
  EXPECT_TRUE(a.back().tensor_name().empty());
  EXPECT_EQ(a.back().summary().num_tensors(), want.size());
  EXPECT_EQ(a[0].tensor_name(), "model.embed_tokens.weight");
  EXPECT_EQ(a[0].dtype(), grpo::v1::DTYPE_BF16);
  const std::string q = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";
  for (const Chunk& c : a) {
    if (c.tensor_name() == q) {
      EXPECT_EQ(c.dtype(), grpo::v1::DTYPE_F8_E4M3);
      EXPECT_EQ(c.fp8().scale_tensor_name(), q + "_scale_inv");
    }
    if (c.tensor_name() == q + "_scale_inv") {
      EXPECT_EQ(c.dtype(), grpo::v1::DTYPE_F32);
      EXPECT_EQ(std::vector<uint64_t>(c.shape().begin(), c.shape().end()),
                (std::vector<uint64_t>{1, 2}));
    }
  }
  EXPECT_FALSE(EncodeWeightUpdate(masters, 0, {}, [](const Chunk&) { return absl::OkStatus(); }).ok());
  EXPECT_FALSE(EncodeWeightUpdate(masters, 1, Options(WeightFormat::kF32, 0),
                                  [](const Chunk&) { return absl::OkStatus(); }).ok());
  auto stored = EncodeWeights(masters, 1, Options(WeightFormat::kStored));
  ASSERT_FALSE(stored.ok());
  EXPECT_EQ(stored.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WeightPush, RandomChunkSizesGiveIdenticalWeights) {
  const ModelConfig config = Config("deepseek_v3-nano", 160);
  const std::vector<Parameter> masters = InitParameters(config, 21);
  auto want = ServingWeights(config, masters, WeightFormat::kFp8Block);
  ASSERT_TRUE(want.ok());
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 12; ++trial) {
    const size_t chunk = 1 + rng() % (trial < 6 ? 64 : 70000);
    auto staged = Assemble(config, Encode(masters, 1 + trial, Options(WeightFormat::kFp8Block, chunk)));
    ASSERT_TRUE(staged.ok()) << chunk << ": " << staged.status().ToString();
    for (size_t i = 0; i < masters.size(); ++i) {
      ASSERT_TRUE(SameBits(staged->params[i].value, (*want)[i].value)) << chunk << " " << i;
    }
  }
}

TEST(WeightPush, ServingWeightsChecksTheMasters) {
  const ModelConfig config = Config("llama-nano");
  std::vector<Parameter> masters = InitParameters(config, 1);
  masters.pop_back();
  EXPECT_FALSE(ServingWeights(config, masters, WeightFormat::kF32).ok());
  masters = InitParameters(config, 1);
  std::swap(masters[1], masters[2]);
  auto r = ServingWeights(config, masters, WeightFormat::kF32);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected 'model.layers.0.input_layernorm.weight'"), std::string::npos)
      << r.status().ToString();
}

std::vector<Chunk> EncodeShard(const std::vector<Parameter>& p, uint64_t v, const WeightPushOptions& o, int shard,
                               int num_shards) {
  std::vector<Chunk> out;
  auto w = EncodeWeightShard(p, v, o, shard, num_shards);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  if (!w.ok()) return out;
  absl::Status s = EmitWeightUpdate(*w, o.chunk_bytes, [&](const Chunk& c) {
    out.push_back(c);
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

absl::Status AddStream(WeightAssembler& a, const std::vector<Chunk>& chunks) {
  for (const Chunk& c : chunks) GRPO_RETURN_IF_ERROR(a.Add(c));
  return a.EndStream();
}

// Data-parallel ranks push a version as shards: every tensor is in exactly one shard, the shards
// assemble (in any order) to exactly the weights of one whole push, and the assembler refuses
// stale, mismatched and repeated shards without losing the shards it has.
TEST(WeightPush, ShardsAssembleToTheWholeUpdate) {
  const ModelConfig config = Config("deepseek_v3-nano", 160);
  const std::vector<Parameter> masters = InitParameters(config, 3);
  const WeightPushOptions o = Options(WeightFormat::kFp8Block, 4096);
  std::vector<std::string> names;
  for (int k = 0; k < 3; ++k) {
    for (const Parameter& p : ParametersOfShard(masters, k, 3)) names.push_back(p.spec.name);
  }
  ASSERT_EQ(names.size(), masters.size());
  for (size_t i = 0; i < masters.size(); ++i) EXPECT_EQ(names[i], masters[i].spec.name);
  EXPECT_FALSE(ParametersOfShard(masters, 2, 3).empty());

  std::vector<std::vector<Chunk>> shards;
  for (int k = 0; k < 3; ++k) shards.push_back(EncodeShard(masters, 5, o, k, 3));
  for (const Chunk& c : shards[1]) ASSERT_TRUE(c.shard_index() == 1 && c.shard_count() == 3);
  auto a = WeightAssembler::Create(config);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(AddStream(*a, shards[2]).ok());
  EXPECT_EQ(a->shards_missing(), 2u);
  // Refused at the first message, leaving the two shards to come intact:
  auto stale = AddStream(*a, EncodeShard(masters, 4, o, 0, 3));
  EXPECT_NE(stale.ToString().find("shard 0 of 3 of version 4 arrived while version 5 is being assembled"),
            std::string::npos) << stale.ToString();
  auto count = AddStream(*a, EncodeShard(masters, 5, o, 0, 2));
  EXPECT_NE(count.ToString().find("assembled from 3 shards"), std::string::npos) << count.ToString();
  auto twice = AddStream(*a, shards[2]);
  EXPECT_NE(twice.ToString().find("shard 2 of 3 arrived twice"), std::string::npos) << twice.ToString();
  EXPECT_FALSE(a->failed());
  ASSERT_TRUE(AddStream(*a, shards[0]).ok());
  EXPECT_EQ(a->shards_missing(), 1u);
  ASSERT_TRUE(AddStream(*a, shards[1]).ok());
  auto staged = a->Finish();
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  auto want = ServingWeights(config, masters, o);
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(staged->params.size(), want->size());
  for (size_t i = 0; i < want->size(); ++i) EXPECT_TRUE(SameBits(staged->params[i].value, (*want)[i].value)) << i;

  // The same shards received by assemblers of their own (concurrently, on a server) and merged,
  // in another order: the same weights; a repeated shard is refused without harm.
  auto one_shard = [&](int k, uint64_t version) {
    auto own = WeightAssembler::Create(config);
    EXPECT_TRUE(own.ok());
    EXPECT_TRUE(AddStream(*own, EncodeShard(masters, version, o, k, 3)).ok());
    return std::move(*own);
  };
  auto merged = WeightAssembler::Create(config);
  ASSERT_TRUE(merged.ok());
  ASSERT_TRUE(merged->Merge(one_shard(1, 5)).ok());
  auto again = merged->Merge(one_shard(1, 5));
  EXPECT_NE(again.ToString().find("shard 1 of 3 arrived twice"), std::string::npos) << again.ToString();
  auto older = merged->Merge(one_shard(0, 4));
  EXPECT_NE(older.ToString().find("of version 4 arrived while version 5"), std::string::npos) << older.ToString();
  EXPECT_FALSE(merged->failed());
  ASSERT_TRUE(merged->Merge(one_shard(0, 5)).ok());
  EXPECT_EQ(merged->shards_missing(), 1u);
  ASSERT_TRUE(merged->Merge(one_shard(2, 5)).ok());
  auto merged_weights = merged->Finish();
  ASSERT_TRUE(merged_weights.ok()) << merged_weights.status().ToString();
  for (size_t i = 0; i < want->size(); ++i) {
    EXPECT_TRUE(SameBits(merged_weights->params[i].value, (*want)[i].value)) << i;
  }

  // A version whose shards did not all arrive never yields weights, naming what is missing.
  auto half = WeightAssembler::Create(config);
  ASSERT_TRUE(half.ok());
  ASSERT_TRUE(AddStream(*half, EncodeShard(masters, 6, o, 1, 3)).ok());
  auto partial = half->Finish();
  ASSERT_FALSE(partial.ok());
  EXPECT_NE(partial.status().ToString().find("1 of 3 shards arrived (missing shard 0, 2)"), std::string::npos)
      << partial.status().ToString();
  EXPECT_FALSE(EncodeWeightShard(masters, 6, o, 3, 3).ok());
}

// A minimal engine: assembles each update with WeightAssembler and installs it if newer.
class TestEngine final : public grpo::v1::RolloutService::Service {
 public:
  explicit TestEngine(ModelConfig config) : config_(std::move(config)) {}

  grpc::Status UpdateWeights(grpc::ServerContext*, grpc::ServerReader<Chunk>* reader,
                             grpo::v1::WeightUpdateAck* ack) override {
    std::lock_guard<std::mutex> lock(mu_);
    ack->set_serving_version(version_);
    auto a = WeightAssembler::Create(config_);
    if (!a.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, a.status().ToString());
    Chunk c;
    absl::Status s;
    while (s.ok() && reader->Read(&c)) s = a->Add(c);  // stops reading at the first error
    ack->set_bytes_received(a->bytes_received());
    absl::StatusOr<StagedWeights> staged = s.ok() ? a->Finish() : absl::StatusOr<StagedWeights>(s);
    if (!staged.ok()) {
      ack->set_reason(staged.status().ToString());
    } else if (staged->version <= version_) {
      ack->set_reason("stale version " + std::to_string(staged->version) + " (serving " +
                      std::to_string(version_) + ")");
    } else {
      version_ = staged->version;
      weights_ = std::move(staged->params);
      ack->set_accepted(true);
      ack->set_serving_version(version_);
    }
    return grpc::Status::OK;
  }

  std::vector<Parameter> weights() {
    std::lock_guard<std::mutex> lock(mu_);
    return weights_;
  }

 private:
  const ModelConfig config_;
  std::mutex mu_;
  uint64_t version_ = 0;
  std::vector<Parameter> weights_;
};

struct Server {
  std::unique_ptr<TestEngine> engine;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::unique_ptr<grpo::v1::RolloutService::Stub> stub;
};

Server Start(const ModelConfig& config) {
  Server s;
  s.engine = std::make_unique<TestEngine>(config);
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &s.port);
  b.RegisterService(s.engine.get());
  s.server = b.BuildAndStart();
  EXPECT_NE(s.port, 0);
  s.stub = grpo::v1::RolloutService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(s.port), grpc::InsecureChannelCredentials()));
  return s;
}

absl::Time In(int seconds) { return absl::Now() + absl::Seconds(seconds); }

TEST(WeightPushGrpc, PushInstallsServingWeightsAndReportsRejections) {
  const ModelConfig config = Config("deepseek_v3-nano", 160);
  const std::vector<Parameter> masters = InitParameters(config, 3);
  const WeightPushOptions o = Options(WeightFormat::kFp8Block, 64 << 10);
  Server s = Start(config);

  auto ack = PushWeights(*s.stub, masters, 1, o, In(30));
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_TRUE(ack->accepted());
  EXPECT_EQ(ack->serving_version(), 1u);
  auto encoded = EncodeWeights(masters, 1, o);
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(ack->bytes_received(), encoded->total_bytes);
  auto want = ServingWeights(config, masters, o);
  ASSERT_TRUE(want.ok());
  const std::vector<Parameter> got = s.engine->weights();
  ASSERT_EQ(got.size(), want->size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(SameBits(got[i].value, (*want)[i].value)) << i;

  // The same version again is stale: the engine's reason comes back in the error.
  auto stale = PushWeights(*s.stub, masters, 1, o, In(30));
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.status().message().find("stale version 1"), std::string::npos)
      << stale.status().ToString();

  // An engine serving another model stops reading at the first mismatching tensor.
  Server other = Start(Config("llama-nano"));
  auto wrong = PushWeights(*other.stub, masters, 2, o, In(30));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find(
                "'model.embed_tokens.weight' chunk at offset 0: shape [256, 160], the model's is [256, 64]"),
            std::string::npos)
      << wrong.status().ToString();
  EXPECT_TRUE(other.engine->weights().empty());
}

TEST(WeightPushGrpc, OneEngineDownDoesNotBlockTheOthers) {
  const ModelConfig config = Config("llama-nano");
  const std::vector<Parameter> masters = InitParameters(config, 4);
  Server up = Start(config);
  Server down = Start(config);
  down.server->Shutdown(absl::ToChronoTime(In(0)));
  down.server->Wait();
  auto encoded = EncodeWeights(masters, 5, Options(WeightFormat::kBF16));
  ASSERT_TRUE(encoded.ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto results = PushWeightsToAll({down.stub.get(), up.stub.get()}, *encoded, 1 << 20, In(20));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(results.size(), 2u);
  ASSERT_FALSE(results[0].ok());
  EXPECT_EQ(results[0].status().code(), absl::StatusCode::kUnavailable) << results[0].status().ToString();
  EXPECT_NE(results[0].status().message().find("engine 0"), std::string::npos);
  ASSERT_TRUE(results[1].ok()) << results[1].status().ToString();
  EXPECT_EQ(results[1]->serving_version(), 5u);
  EXPECT_LT(seconds, 15.0);
  auto want = ServingWeights(config, masters, WeightFormat::kBF16);
  const std::vector<Parameter> got = up.engine->weights();
  ASSERT_EQ(got.size(), want->size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(SameBits(got[i].value, (*want)[i].value)) << i;
}

}  // namespace
}  // namespace grpo
