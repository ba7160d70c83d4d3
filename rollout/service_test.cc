// RolloutService over loopback (127.0.0.1, a picked port): Generate equals the engine's own
// samples, GenerateStream's message order, Health, UpdateWeights (accepted, stale, corrupted),
// Logprobs (equal to a Forward, its limits, refused without a scoring model or after a push),
// deadline expiry and cancellation freeing KV blocks, request limits, Drain.
#include "rollout/service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>
#include <thread>

#include "absl/time/clock.h"
#include "collective/gloo_collective.h"
#include "learner/weight_push.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"
#include "rollout/push_token.h"
#include "rollout/sample_proto.h"
#include "rollout/tool_settings.h"
#include "tokenizer/test_tokenizer.h"

namespace grpo {
namespace {

using grpo::v1::RolloutService;

std::unique_ptr<CausalLM> MakeModel(const std::string& preset, uint64_t seed) {
  auto config = PresetConfig(preset);
  EXPECT_TRUE(config.ok());
  auto m = CausalLM::Create(*config, InitParameters(*config, seed, 0.1), BackendForTests());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = RolloutEngine::Create(MakeModel(kPreset, 5), {});
    ASSERT_TRUE(e.ok());
    engine_ = std::move(e).value();
    RolloutServeOptions o;
    o.listen = "127.0.0.1:0";
    o.max_group_size = 8;
    o.max_prompt_tokens = 64;
    o.push_token = kToken;
    auto s = RolloutServer::Start(*engine_, nullptr, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    stub_ = RolloutService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_.reset();
    engine_.reset();
  }

  grpo::v1::GenerateRequest Request(uint32_t n, uint32_t max_new) {
    grpo::v1::GenerateRequest r;
    r.set_request_id("r1");
    r.set_group_id(77);
    r.set_prompt_index(3);
    for (int32_t t : {5, 9, 200, 31, 64, 7}) r.add_prompt_token_ids(t);
    r.set_group_size(n);
    r.mutable_sampling()->set_max_new_tokens(max_new);
    r.mutable_sampling()->set_seed(11);
    r.mutable_sampling()->set_return_routing(true);
    r.mutable_sampling()->set_return_raw_logprobs(true);
    return r;
  }

  grpo::v1::RolloutHealthResponse Health() {
    grpc::ClientContext ctx;
    grpo::v1::RolloutHealthResponse h;
    EXPECT_TRUE(stub_->Health(&ctx, {}, &h).ok());
    return h;
  }

  // A Generate call is served by weight `version`, and its logprobs are `model`'s (within the
  // engine's 1e-5 contract).
  void ExpectGeneratesWith(CausalLM& model, uint64_t version) {
    grpc::ClientContext ctx;
    grpo::v1::GenerateResponse resp;
    ASSERT_TRUE(stub_->Generate(&ctx, Request(1, 4), &resp).ok());
    const grpo::v1::Sample& s = resp.group().samples(0);
    EXPECT_EQ(s.weight_versions(0).version(), version);
    std::vector<int32_t> seq = {5, 9, 200, 31, 64, 7};
    seq.insert(seq.end(), s.token_ids().begin(), s.token_ids().end());
    auto scored = model.Forward(TokenBatch::FromSequences({seq}), {});
    ASSERT_TRUE(scored.ok());
    for (int t = 0; t < 4; ++t) EXPECT_NEAR(s.raw_logprobs(t), scored->logprobs[5 + t], 1e-5);
  }

  static constexpr const char* kPreset = "qwen3_moe-nano";
  static constexpr const char* kToken = "test-token-0123456789abcdef";
  std::unique_ptr<RolloutEngine> engine_;
  std::unique_ptr<RolloutServer> server_;
  std::unique_ptr<RolloutService::Stub> stub_;
};

TEST_F(ServiceTest, GenerateReturnsTheEnginesSamples) {
  grpc::ClientContext ctx;
  grpo::v1::GenerateResponse resp;
  grpc::Status st = stub_->Generate(&ctx, Request(3, 6), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.request_id(), "r1");
  const grpo::v1::Group& g = resp.group();
  EXPECT_EQ(g.group_id(), 77u);
  EXPECT_EQ(g.prompt_index(), 3u);
  ASSERT_EQ(g.samples_size(), 3);
  // The same request on the engine directly.
  GroupRequest direct;
  direct.prompt = {5, 9, 200, 31, 64, 7};
  direct.n = 3;
  direct.max_new_tokens = 6;
  direct.seed = 11;
  direct.return_routing = true;
  direct.return_raw_logprobs = true;
  auto want = engine_->GenerateGroups({direct});
  ASSERT_TRUE(want.ok());
  const int64_t L = engine_->config().NumMoeLayers(), K = engine_->config().num_experts_per_tok;
  EXPECT_EQ(g.prompt_routing().num_moe_layers(), L);
  EXPECT_EQ(g.prompt_routing().experts_size(), 5 * L * K);
  for (int i = 0; i < 3; ++i) {
    const grpo::v1::Sample& s = g.samples(i);
    const SampleResult& w = (*want)[0].samples[i];
    EXPECT_EQ(s.sample_index(), static_cast<uint32_t>(i));
    EXPECT_EQ(std::vector<int32_t>(s.token_ids().begin(), s.token_ids().end()), w.tokens);
    EXPECT_EQ(std::vector<float>(s.logprobs().begin(), s.logprobs().end()), w.logprobs);
    EXPECT_EQ(s.raw_logprobs_size(), 6);
    EXPECT_EQ(s.finish_reason(), grpo::v1::FINISH_REASON_LENGTH);
    ASSERT_EQ(s.weight_versions_size(), 1);
    EXPECT_EQ(s.weight_versions(0).version(), 0u);
    EXPECT_EQ(s.routing().experts_size(), 6 * L * K);
    EXPECT_EQ(s.seed(), 11u);
  }
  EXPECT_EQ(resp.timing().prompt_tokens(), 6u);
  EXPECT_EQ(resp.timing().completion_tokens(), 18u);
  EXPECT_GE(resp.timing().total_seconds(), resp.timing().decode_seconds());
}

TEST_F(ServiceTest, StreamSendsPromptThenSamplesThenTiming) {
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, Request(4, 5));
  std::vector<grpo::v1::GenerateStreamResponse> msgs;
  grpo::v1::GenerateStreamResponse m;
  while (reader->Read(&m)) msgs.push_back(m);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(msgs.size(), 6u);
  ASSERT_TRUE(msgs.front().has_prompt());
  EXPECT_EQ(msgs.front().prompt().prompt_token_ids_size(), 6);
  EXPECT_EQ(msgs.front().prompt().samples_size(), 0);
  EXPECT_GT(msgs.front().prompt().prompt_routing().experts_size(), 0);
  std::set<uint32_t> indices;
  for (size_t i = 1; i < 5; ++i) {
    ASSERT_TRUE(msgs[i].has_sample());
    EXPECT_EQ(msgs[i].request_id(), "r1");
    EXPECT_EQ(msgs[i].sample().token_ids_size(), 5);
    indices.insert(msgs[i].sample().sample_index());
  }
  EXPECT_EQ(indices, (std::set<uint32_t>{0, 1, 2, 3}));
  ASSERT_TRUE(msgs.back().has_timing());
  EXPECT_EQ(msgs.back().timing().completion_tokens(), 20u);
}

TEST_F(ServiceTest, HealthUpdateWeightsAndRejectedUpdates) {
  auto h = Health();
  EXPECT_EQ(h.status(), grpo::v1::RolloutHealthResponse::SERVING);
  EXPECT_FALSE(h.serves_tools());  // no tokenizer: it cannot run tool calls
  EXPECT_EQ(h.weight_version(), 0u);
  EXPECT_GT(h.total_kv_blocks(), 0u);
  EXPECT_EQ(h.free_kv_blocks(), h.total_kv_blocks());

  auto fresh = MakeModel(kPreset, 6);
  WeightPushOptions f32;
  f32.format = WeightFormat::kF32;
  f32.chunk_bytes = 4096;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  auto ack = PushWeights(*stub_, fresh->ReadParameters(), 1, f32, deadline, kToken);
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_TRUE(ack->accepted());
  EXPECT_EQ(ack->serving_version(), 1u);
  EXPECT_GT(ack->bytes_received(), 0u);
  EXPECT_EQ(Health().weight_version(), 1u);
  // Generation now runs on version 1, and its logprobs are the new weights'.
  ExpectGeneratesWith(*fresh, 1);

  // A stale version is refused; the serving version stays.
  auto stale = PushWeights(*stub_, fresh->ReadParameters(), 1, f32, deadline, kToken);
  ASSERT_FALSE(stale.ok());
  EXPECT_NE(stale.status().message().find("not newer"), std::string::npos) << stale.status().ToString();
  // A corrupted chunk: rejected with the assembler's reason.
  std::vector<grpo::v1::WeightUpdateChunk> chunks;
  ASSERT_TRUE(EncodeWeightUpdate(fresh->ReadParameters(), 2, f32, [&](const grpo::v1::WeightUpdateChunk& c) {
                chunks.push_back(c);
                return absl::OkStatus();
              }).ok());
  chunks[3].mutable_data()->at(0) ^= 0x5a;
  grpc::ClientContext uctx;
  uctx.AddMetadata(kPushTokenMetadataKey, kToken);
  grpo::v1::WeightUpdateAck bad;
  auto writer = stub_->UpdateWeights(&uctx, &bad);
  for (const auto& c : chunks) writer->Write(c);
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_FALSE(bad.accepted());
  EXPECT_NE(bad.reason().find("crc"), std::string::npos) << bad.reason();
  EXPECT_EQ(bad.serving_version(), 1u);
  EXPECT_EQ(Health().weight_version(), 1u);
}

// Weight sync at scale (issue 18): 2 data-parallel ranks (Gloo over loopback, one thread each)
// push their shards of a version in parallel; the server serves it only once both arrived, and
// then serves exactly the whole model's weights (f32: its logprobs are the model's own).
TEST_F(ServiceTest, ShardedPushFromTwoRanksServesTheWholeWeights) {
  auto fresh = MakeModel(kPreset, 6);
  const std::vector<Parameter> full = fresh->ReadParameters();
  WeightPushOptions f32;
  f32.format = WeightFormat::kF32;
  f32.chunk_bytes = 4096;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);

  // A half-arrived version is staged, acknowledged as such, and not served.
  auto shard1 = EncodeWeightShard(full, 1, f32, 1, 2);
  ASSERT_TRUE(shard1.ok());
  auto half = PushWeights(*stub_, *shard1, f32.chunk_bytes, deadline, kToken);
  ASSERT_TRUE(half.ok()) << half.status().ToString();
  EXPECT_TRUE(half->accepted());
  EXPECT_EQ(half->shards_missing(), 1u);
  EXPECT_EQ(half->serving_version(), 0u);
  EXPECT_EQ(Health().weight_version(), 0u);
  // A newer version's shard drops it (never served); a shard of the dropped version is stale.
  auto newer = PushWeights(*stub_, *EncodeWeightShard(full, 2, f32, 0, 2), f32.chunk_bytes, deadline, kToken);
  ASSERT_TRUE(newer.ok()) << newer.status().ToString();
  auto stale = PushWeights(*stub_, *EncodeWeightShard(full, 1, f32, 0, 2), f32.chunk_bytes, deadline, kToken);
  ASSERT_FALSE(stale.ok());
  EXPECT_NE(stale.status().message().find("is stale: version 2 is being assembled"), std::string::npos)
      << stale.status().ToString();
  EXPECT_EQ(Health().weight_version(), 0u);

  // Two ranks push version 3 together (version 2 stays half-arrived and is dropped).
  const std::string rendezvous = std::string(std::getenv("TEST_TMPDIR")) + "/sharded-push";
  std::vector<std::vector<absl::Status>> results(2);
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ranks.emplace_back([&, rank] {
      CollectiveOptions o;
      o.rank = rank;
      o.size = 2;
      o.rendezvous_dir = rendezvous;
      o.host = "127.0.0.1";
      auto c = ConnectGloo(o);
      if (!c.ok()) {
        results[rank] = {c.status()};
        return;
      }
      results[rank] = PushWeightShards(**c, {stub_.get()}, full, 3, f32, deadline, kToken);
    });
  }
  for (auto& t : ranks) t.join();
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(results[rank].size(), 1u);
    EXPECT_TRUE(results[rank][0].ok()) << "rank " << rank << ": " << results[rank][0].ToString();
  }
  EXPECT_EQ(Health().weight_version(), 3u);
  ExpectGeneratesWith(*fresh, 3);
}

// Shards of one version from different ranks are received concurrently (issue 18): with the
// streams of shards 0 and 1 of three open and half sent (their writes interleaved), shard 2 is
// pushed whole and acknowledged at once (a server taking one update at a time would make it wait
// for the open streams, past its deadline); then shards 1 and 0 end, the last completes the
// version, and the server serves exactly the whole weights.
TEST_F(ServiceTest, ShardsOfOneVersionAreReceivedConcurrently) {
  auto fresh = MakeModel(kPreset, 7);
  const std::vector<Parameter> full = fresh->ReadParameters();
  WeightPushOptions f32;
  f32.format = WeightFormat::kF32;
  f32.chunk_bytes = 2048;
  std::vector<std::vector<grpo::v1::WeightUpdateChunk>> chunks(3);
  for (int k = 0; k < 3; ++k) {
    auto encoded = EncodeWeightShard(full, 1, f32, k, 3);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    ASSERT_TRUE(EmitWeightUpdate(*encoded, f32.chunk_bytes, [&](const grpo::v1::WeightUpdateChunk& c) {
                  chunks[k].push_back(c);
                  return absl::OkStatus();
                }).ok());
  }
  ASSERT_GE(chunks[0].size(), 4u);
  ASSERT_GE(chunks[1].size(), 4u);
  struct OpenStream {
    grpc::ClientContext ctx;
    grpo::v1::WeightUpdateAck ack;
    std::unique_ptr<grpc::ClientWriter<grpo::v1::WeightUpdateChunk>> writer;
  };
  OpenStream open[2];
  size_t half[2];
  for (int k = 0; k < 2; ++k) {
    open[k].ctx.AddMetadata(kPushTokenMetadataKey, kToken);
    open[k].ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    open[k].writer = stub_->UpdateWeights(&open[k].ctx, &open[k].ack);
    half[k] = chunks[k].size() / 2;
  }
  for (size_t i = 0; i < std::max(half[0], half[1]); ++i) {
    for (int k = 0; k < 2; ++k) {
      if (i < half[k]) {
        ASSERT_TRUE(open[k].writer->Write(chunks[k][i]));
      }
    }
  }
  auto third = EncodeWeightShard(full, 1, f32, 2, 3);
  ASSERT_TRUE(third.ok());
  auto whole = PushWeights(*stub_, *third, f32.chunk_bytes, absl::Now() + absl::Seconds(20), kToken);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_TRUE(whole->accepted()) << whole->reason();
  EXPECT_EQ(whole->shards_missing(), 2u);
  EXPECT_EQ(Health().weight_version(), 0u);
  for (int k : {1, 0}) {
    for (size_t i = half[k]; i < chunks[k].size(); ++i) ASSERT_TRUE(open[k].writer->Write(chunks[k][i]));
    ASSERT_TRUE(open[k].writer->WritesDone());
    ASSERT_TRUE(open[k].writer->Finish().ok());
    EXPECT_TRUE(open[k].ack.accepted()) << "shard " << k << ": " << open[k].ack.reason();
  }
  EXPECT_EQ(open[1].ack.shards_missing(), 1u);
  EXPECT_EQ(open[1].ack.serving_version(), 0u);
  EXPECT_EQ(open[0].ack.shards_missing(), 0u);
  EXPECT_EQ(open[0].ack.serving_version(), 1u);
  EXPECT_EQ(Health().weight_version(), 1u);
  ExpectGeneratesWith(*fresh, 1);
}

// Issue 19, class 3: any local process could push weights. A push needs the job's token.
TEST_F(ServiceTest, WeightPushesNeedTheJobsToken) {
  auto fresh = MakeModel(kPreset, 6);
  WeightPushOptions f32;
  f32.format = WeightFormat::kF32;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  auto none = PushWeights(*stub_, fresh->ReadParameters(), 1, f32, deadline);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated) << none.status();
  EXPECT_NE(none.status().message().find("without a push token"), std::string::npos) << none.status();
  auto wrong = PushWeights(*stub_, fresh->ReadParameters(), 1, f32, deadline, std::string(kToken) + "x");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated) << wrong.status();
  EXPECT_NE(wrong.status().message().find("wrong push token"), std::string::npos) << wrong.status();
  EXPECT_EQ(wrong.status().message().find(kToken), std::string::npos) << "the token leaks into the error";
  EXPECT_EQ(Health().weight_version(), 0u);
  auto ok = PushWeights(*stub_, fresh->ReadParameters(), 1, f32, deadline, kToken);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Health().weight_version(), 1u);
}

// A server without a token takes no pushes, unless started to (local tests); both is an error.
TEST(RolloutServePushToken, WithoutATokenPushesAreRefusedUnlessAllowed) {
  auto fresh = MakeModel("qwen3-nano", 6);
  WeightPushOptions f32;
  f32.format = WeightFormat::kF32;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  RolloutServeOptions o;
  o.listen = "127.0.0.1:0";
  for (bool allow : {false, true}) {
    auto e = RolloutEngine::Create(MakeModel("qwen3-nano", 5), {});
    ASSERT_TRUE(e.ok());
    o.allow_unauthenticated_push = allow;
    auto server = RolloutServer::Start(**e, nullptr, o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = RolloutService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                                            grpc::InsecureChannelCredentials()));
    auto ack = PushWeights(*stub, fresh->ReadParameters(), 1, f32, deadline, "some-token-0123456789");
    if (allow) {
      ASSERT_TRUE(ack.ok()) << ack.status();
      EXPECT_EQ((*e)->weight_version(), 1u);
    } else {
      ASSERT_FALSE(ack.ok());
      EXPECT_EQ(ack.status().code(), absl::StatusCode::kPermissionDenied) << ack.status();
      EXPECT_NE(ack.status().message().find("--allow-unauthenticated-push"), std::string::npos) << ack.status();
      EXPECT_EQ((*e)->weight_version(), 0u);
      grpc::ClientContext dctx;
      grpo::v1::DrainResponse dresp;
      EXPECT_EQ(stub->Drain(&dctx, {}, &dresp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
    }
  }
  auto e = RolloutEngine::Create(MakeModel("qwen3-nano", 5), {});
  ASSERT_TRUE(e.ok());
  o.push_token = "some-token-0123456789";
  EXPECT_EQ(RolloutServer::Start(**e, nullptr, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.allow_unauthenticated_push = false;
  o.push_token = "short";
  EXPECT_EQ(RolloutServer::Start(**e, nullptr, o).status().code(), absl::StatusCode::kInvalidArgument);
}

// Issue 19: NaN weights were accepted and then served NaN logprobs as OK; version 2^64-1 was
// accepted and then every real push was stale.
TEST_F(ServiceTest, NonFiniteWeightsAndWildVersionsAreRejected) {
  auto fresh = MakeModel(kPreset, 6);
  WeightPushOptions f32;
  f32.format = WeightFormat::kF32;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::vector<Parameter> nan = fresh->ReadParameters();
  for (Parameter& p : nan) p.value = p.value.Clone();
  nan[2].value.mutable_data<float>()[7] = std::nanf("");
  auto bad = PushWeights(*stub_, nan, 1, f32, deadline, kToken);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition) << bad.status();
  EXPECT_NE(bad.status().message().find("'" + nan[2].spec.name + "' element 7 is NaN"), std::string::npos)
      << bad.status();
  // The same in bf16 on the wire, in another tensor, as +inf.
  nan[2].value = fresh->ReadParameters()[2].value;
  nan.back().value.mutable_data<float>()[0] = INFINITY;
  WeightPushOptions bf16 = f32;
  bf16.format = WeightFormat::kBF16;
  bad = PushWeights(*stub_, nan, 1, bf16, deadline, kToken);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'" + nan.back().spec.name + "' element 0 is +inf"), std::string::npos)
      << bad.status();
  EXPECT_EQ(Health().weight_version(), 0u);

  auto wild = PushWeights(*stub_, fresh->ReadParameters(), UINT64_MAX, f32, deadline, kToken);
  ASSERT_FALSE(wild.ok());
  EXPECT_NE(wild.status().message().find("max_version_step"), std::string::npos) << wild.status();
  EXPECT_EQ(Health().weight_version(), 0u);
  auto real = PushWeights(*stub_, fresh->ReadParameters(), 2, f32, deadline, kToken);
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(Health().weight_version(), 2u);
  // Generation still serves finite logprobs.
  grpc::ClientContext ctx;
  grpo::v1::GenerateResponse resp;
  ASSERT_TRUE(stub_->Generate(&ctx, Request(1, 4), &resp).ok());
  for (float lp : resp.group().samples(0).raw_logprobs()) EXPECT_TRUE(std::isfinite(lp));
}

// Issue 19: a second server on a taken port started silently; a failed start segfaulted in
// ~RolloutServer; --listen localhost:-1 crashed and 127.0.0.1:99999 listened on a random port.
TEST_F(ServiceTest, OwnsItsAddress) {
  auto other = RolloutEngine::Create(MakeModel(kPreset, 7), {});
  ASSERT_TRUE(other.ok());
  RolloutServeOptions o;
  o.listen = "127.0.0.1:" + std::to_string(server_->port());
  o.push_token = kToken;
  auto second = RolloutServer::Start(**other, nullptr, o);
  ASSERT_FALSE(second.ok()) << "a second rollout server started on " << o.listen;
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("the rollout server cannot listen on " + o.listen), std::string::npos)
      << second.status();
  EXPECT_NE(second.status().message().find("already in use"), std::string::npos) << second.status();
  EXPECT_EQ(Health().status(), grpo::v1::RolloutHealthResponse::SERVING);  // the first one, still
  for (const std::string& listen :
       std::vector<std::string>{"localhost:-1", "127.0.0.1:99999", "127.0.0.1:", "[::1]50061"}) {
    o.listen = listen;
    auto s = RolloutServer::Start(**other, nullptr, o);
    ASSERT_FALSE(s.ok()) << listen << " listened on port " << (*s)->port();
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << listen << ": " << s.status();
  }
}

TEST_F(ServiceTest, DeadlineExpiryAbortsAndFreesBlocks) {
  const uint64_t total = Health().total_kv_blocks();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  grpo::v1::GenerateResponse resp;
  grpc::Status st = stub_->Generate(&ctx, Request(4, 30000), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server notices within its 20 ms poll and cancels the group in the engine.
  bool freed = false;
  for (int i = 0; i < 250 && !freed; ++i) {
    auto h = Health();
    freed = h.free_kv_blocks() == total && h.running_sequences() == 0;
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(freed);
}

TEST_F(ServiceTest, OversizeAndMalformedRequestsAreInvalidArgument) {
  auto expect_invalid = [&](const grpo::v1::GenerateRequest& r, const std::string& words) {
    grpc::ClientContext ctx;
    grpo::v1::GenerateResponse resp;
    grpc::Status st = stub_->Generate(&ctx, r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << words;
    EXPECT_NE(st.error_message().find(words), std::string::npos) << st.error_message();
  };
  expect_invalid(Request(9, 4), "group_size 9 exceeds the limit of 8");
  expect_invalid(Request(0, 4), "group_size must be >= 1");
  expect_invalid(Request(1, 0), "max_new_tokens must be > 0");
  auto r = Request(1, 4);
  for (int i = 0; i < 70; ++i) r.add_prompt_token_ids(1);
  expect_invalid(r, "prompt has 76 tokens, the limit is 64");
  r = Request(1, 40000);
  expect_invalid(r, "max_position_embeddings");
  r = Request(1, 4);
  r.set_prompt_text("hello");
  expect_invalid(r, "exactly one of prompt_token_ids and prompt_text");
  r = Request(1, 4);
  r.mutable_sampling()->add_stop_strings("x");
  expect_invalid(r, "tokenizer");
  r = Request(1, 4);
  r.set_prompt_token_ids(0, 999);
  expect_invalid(r, "vocabulary");
}

TEST_F(ServiceTest, DrainAbortsWhatRunsAndRefusesNewWork) {
  grpc::ClientContext sctx;
  auto reader = stub_->GenerateStream(&sctx, Request(2, 30000));
  grpo::v1::GenerateStreamResponse first;
  ASSERT_TRUE(reader->Read(&first));  // the prompt: the group is running
  ASSERT_TRUE(first.has_prompt());
  grpo::v1::DrainRequest dr;
  dr.set_grace_seconds(0.05);
  grpo::v1::DrainResponse dresp;
  {  // Draining is a job's control call, like a weight push: it needs the token.
    grpc::ClientContext anyone;
    grpc::Status st = stub_->Drain(&anyone, dr, &dresp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    EXPECT_EQ(Health().status(), grpo::v1::RolloutHealthResponse::SERVING);
  }
  grpc::ClientContext dctx;
  dctx.AddMetadata(kPushTokenMetadataKey, kToken);
  ASSERT_TRUE(stub_->Drain(&dctx, dr, &dresp).ok());
  EXPECT_EQ(dresp.aborted_requests(), 1u);
  EXPECT_EQ(dresp.completed_requests(), 0u);
  int aborted = 0;
  grpo::v1::GenerateStreamResponse m;
  while (reader->Read(&m)) {
    if (m.has_sample()) aborted += m.sample().finish_reason() == grpo::v1::FINISH_REASON_ABORTED;
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(aborted, 2);
  EXPECT_EQ(Health().status(), grpo::v1::RolloutHealthResponse::NOT_SERVING);
  grpc::ClientContext ctx;
  grpo::v1::GenerateResponse resp;
  EXPECT_EQ(stub_->Generate(&ctx, Request(1, 4), &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// Issue 19: a 100 MB prompt_text was tokenized whole (5.3 GB) before its length was checked.
// The bytes are bounded first: an over-long text ending in invalid UTF-8 is refused for its
// size, not by the tokenizer.
// Tools (GenerateRequest.tools): the server runs the environment as the embedded engine does.
// The call marker is a 2-character piece of the model's greedy text, so the tiny random model
// makes calls; the calculator (no <tool_call> before the marker) answers with its error, a tool
// turn all the same. The samples, their environment spans (hence the loss mask) and logprobs
// equal the engine's own with the same environment.
// Logprobs of the same tokens computed in batches of other compositions: a tool result rejoins its
// sample when the call returns, so which rows share a forward (and so the last bits of an f32
// sum) depends on timing outside batch-invariant mode; the engine's contract is 1e-5.
void ExpectLogprobsNear(const std::vector<float>& got, const std::vector<float>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t t = 0; t < got.size(); ++t) EXPECT_NEAR(got[t], want[t], 1e-5) << what << " token " << t;
}

TEST(RolloutServeTools, ToolTurnsRunOnTheServerAsInTheEngine) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok());
  EngineOptions eo;
  eo.tokenizer = &*tok;
  // A vocabulary with the tiny tokenizer's merges (ids 256..265), which tokenize the calculator's
  // answers; every id it samples decodes.
  auto wide = [] {
    auto config = PresetConfig("qwen2-nano");
    EXPECT_TRUE(config.ok());
    config->vocab_size = 266;
    auto m = CausalLM::Create(*config, InitParameters(*config, 5, 0.1), BackendForTests());
    EXPECT_TRUE(m.ok()) << m.status();
    return std::move(m).value();
  };
  auto served = RolloutEngine::Create(wide(), eo);
  auto direct = RolloutEngine::Create(wide(), eo);
  ASSERT_TRUE(served.ok() && direct.ok());
  GroupRequest r;
  r.prompt = {5, 9, 20, 31, 64, 7};
  r.n = 3;
  r.max_new_tokens = 32;
  r.seed = 11;
  r.return_raw_logprobs = true;
  auto free_run = (*direct)->GenerateGroups({r});
  ASSERT_TRUE(free_run.ok());
  auto text = tok->Decode((*free_run)[0].samples[0].tokens);
  ASSERT_TRUE(text.ok());
  ASSERT_GT(text->size(), 4u) << "the sampled text is too short for this test";
  ToolSettings tools{.environment = "calculator", .max_calls = 2, .max_output_tokens = 6};
  // Two ASCII bytes from the middle on (a marker travels as a proto string: valid UTF-8).
  size_t at = text->size() / 2;
  while (at + 1 < text->size() && (static_cast<unsigned char>((*text)[at]) >= 0x80 ||
                                   static_cast<unsigned char>((*text)[at + 1]) >= 0x80)) {
    ++at;
  }
  ASSERT_LT(at + 1, text->size()) << "no two ASCII bytes in the second half of the sampled text";
  tools.tags.call_end = text->substr(at, 2);

  RolloutServeOptions o;
  o.listen = "127.0.0.1:0";
  auto server = RolloutServer::Start(**served, &*tok, o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = RolloutService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    grpo::v1::RolloutHealthResponse h;
    ASSERT_TRUE(stub->Health(&ctx, {}, &h).ok());
    EXPECT_TRUE(h.serves_tools());
  }
  grpo::v1::GenerateRequest p;
  for (int32_t t : r.prompt) p.add_prompt_token_ids(t);
  p.set_group_size(3);
  p.mutable_sampling()->set_max_new_tokens(32);
  p.mutable_sampling()->set_seed(11);
  p.mutable_sampling()->set_return_raw_logprobs(true);
  ToolSettingsToProto(tools, p.mutable_tools());
  grpc::ClientContext ctx;
  grpo::v1::GenerateResponse resp;
  grpc::Status st = stub->Generate(&ctx, p, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();

  r.environment = std::shared_ptr<Environment>(MakeCalculatorEnvironment(tools.tags));
  r.max_tool_calls = 2;
  r.max_tool_output_tokens = 6;
  auto want = (*direct)->GenerateGroups({r});
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_EQ(resp.group().samples_size(), 3);
  int64_t calls = 0;
  for (int i = 0; i < 3; ++i) {
    auto got = SampleResultFromProto(resp.group().samples(i));
    ASSERT_TRUE(got.ok()) << got.status();
    const SampleResult& w = (*want)[0].samples[i];
    EXPECT_EQ(got->tokens, w.tokens) << "sample " << i;
    ExpectLogprobsNear(got->logprobs, w.logprobs, "sample " + std::to_string(i));
    EXPECT_EQ(got->environment_spans, w.environment_spans) << "sample " << i;
    for (const EnvironmentSpan& e : got->environment_spans) {
      EXPECT_EQ(e.result.tool, "calculator");
      for (int64_t t = e.first_token; t < e.first_token + e.num_tokens; ++t) EXPECT_EQ(got->logprobs[t], 0.0f);
    }
    calls += static_cast<int64_t>(got->environment_spans.size());
  }
  EXPECT_GT(calls, 0) << "no tool turn happened";

  // A plugin the server was not started with is refused; bad settings name the key.
  grpc::ClientContext c2;
  p.mutable_tools()->set_environment("plugin");
  p.mutable_tools()->set_plugin("/tmp/libanything.so");
  EXPECT_EQ(stub->Generate(&c2, p, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext c3;
  p.mutable_tools()->set_environment("shell");
  p.mutable_tools()->clear_plugin();
  grpc::Status bad = stub->Generate(&c3, p, &resp);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("tools.environment"), std::string::npos) << bad.error_message();
}

TEST(RolloutServeLimits, PromptTextIsBoundedBeforeTokenizing) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const ModelConfig config = *PresetConfig("qwen3-nano");
  RolloutServeOptions o;
  o.max_prompt_tokens = 64;
  // Default: 64 tokens of at most 13 bytes ("<|endoftext|>") each.
  EXPECT_EQ(MaxPromptBytes(config, *tok, o), 64 * 13);
  grpo::v1::GenerateRequest r;
  r.set_group_size(1);
  r.mutable_sampling()->set_max_new_tokens(4);
  r.set_prompt_text(std::string(64 * 13, 'a') + "\xff");
  auto req = GroupRequestFromProto(r, config, &*tok, o, 1);
  ASSERT_FALSE(req.ok());
  EXPECT_EQ(req.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(req.status().message().find("prompt_text has 833 bytes, the limit is 832"), std::string::npos)
      << req.status().ToString();
  // Within the bound the tokenizer runs (and finds the bad byte).
  r.set_prompt_text("hello\xff");
  req = GroupRequestFromProto(r, config, &*tok, o, 1);
  ASSERT_FALSE(req.ok());
  EXPECT_EQ(req.status().message().find("bytes, the limit is"), std::string::npos) << req.status().ToString();
  // An explicit bound.
  o.max_prompt_bytes = 8;
  r.set_prompt_text("hello world");
  req = GroupRequestFromProto(r, config, &*tok, o, 1);
  ASSERT_FALSE(req.ok());
  EXPECT_NE(req.status().message().find("prompt_text has 11 bytes, the limit is 8"), std::string::npos);
  r.set_prompt_text("hello");
  EXPECT_TRUE(GroupRequestFromProto(r, config, &*tok, o, 1).ok());
}

// Issue 19: `reward serve` parsed 3 x 400 MB requests at once; the rollout server bounds its
// requests' size and how many run at once.
TEST(RolloutServeLimits, RequestSizeAndConcurrencyAreBounded) {
  auto e = RolloutEngine::Create(MakeModel("qwen3-nano", 5), {});
  ASSERT_TRUE(e.ok());
  RolloutServeOptions o;
  o.listen = "127.0.0.1:0";
  o.max_request_mb = 1;
  o.max_concurrent_requests = 1;
  auto server = RolloutServer::Start(**e, nullptr, o);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto stub = RolloutService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                                          grpc::InsecureChannelCredentials()));
  auto request = [](int prompt_tokens, uint32_t max_new) {
    grpo::v1::GenerateRequest r;
    for (int i = 0; i < prompt_tokens; ++i) r.add_prompt_token_ids(200);  // 2 bytes each
    r.set_group_size(1);
    r.mutable_sampling()->set_max_new_tokens(max_new);
    return r;
  };
  {  // about 1.2 MiB: refused by gRPC before it reaches the handler
    grpc::ClientContext ctx;
    grpo::v1::GenerateResponse resp;
    EXPECT_EQ(stub->Generate(&ctx, request(600000, 4), &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // One long generation in flight: a second call is refused at once, Health still answers.
  grpc::ClientContext sctx;
  auto reader = stub->GenerateStream(&sctx, request(4, 30000));
  grpo::v1::GenerateStreamResponse first;
  ASSERT_TRUE(reader->Read(&first));
  ASSERT_TRUE(first.has_prompt());
  {
    grpc::ClientContext ctx;
    grpo::v1::GenerateResponse resp;
    grpc::Status st = stub->Generate(&ctx, request(4, 2), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(st.error_message().find("requests in flight"), std::string::npos) << st.error_message();
    grpc::ClientContext hctx;
    grpo::v1::RolloutHealthResponse h;
    EXPECT_TRUE(stub->Health(&hctx, {}, &h).ok());
  }
  sctx.TryCancel();
  grpo::v1::GenerateStreamResponse m;
  while (reader->Read(&m)) {
  }
  reader->Finish();
  // Once the first call has ended its place is free again.
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    grpc::ClientContext ctx;
    grpo::v1::GenerateResponse resp;
    served = stub->Generate(&ctx, request(4, 2), &resp).ok();
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(served);
}

TEST(RolloutServeLimits, StartRefusesRequestsInFlightBeyondMemory) {
  auto e = RolloutEngine::Create(MakeModel("qwen3-nano", 5), {});
  ASSERT_TRUE(e.ok());
  RolloutServeOptions o;
  o.listen = "127.0.0.1:0";
  ::setenv("GRPO_MEMORY_LIMIT_MB", "100", 1);
  auto server = RolloutServer::Start(**e, nullptr, o);  // 16 MiB x 72
  ::unsetenv("GRPO_MEMORY_LIMIT_MB");
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(server.status().message().find("requests in flight (max_request_mb 16 x (max_concurrent_requests 64 + 8 server threads))"),
            std::string::npos)
      << server.status().ToString();
  o.max_request_mb = 0;
  EXPECT_EQ(RolloutServer::Start(**e, nullptr, o).status().code(), absl::StatusCode::kInvalidArgument);
}

// Logprobs (a teacher for on-policy distillation): equal to a Forward of the same weights, close
// to the engine's own sampled raw logprobs, request limits, refused once a push has landed.
TEST(RolloutServeLogprobs, ScoresSequencesWithinLimits) {
  auto e = RolloutEngine::Create(MakeModel("qwen3_moe-nano", 5), {});
  ASSERT_TRUE(e.ok());
  std::unique_ptr<CausalLM> scorer = MakeModel("qwen3_moe-nano", 5);  // the same weights
  std::unique_ptr<CausalLM> reference = MakeModel("qwen3_moe-nano", 5);
  RolloutServeOptions o;
  o.listen = "127.0.0.1:0";
  o.allow_unauthenticated_push = true;
  o.logprobs_model = scorer.get();
  o.max_logprobs_tokens = 40;
  auto server = RolloutServer::Start(**e, nullptr, o);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto stub = RolloutService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    grpo::v1::RolloutHealthResponse h;
    ASSERT_TRUE(stub->Health(&ctx, {}, &h).ok());
    EXPECT_TRUE(h.serves_logprobs());
    EXPECT_EQ(h.vocab_size(), static_cast<uint32_t>((*e)->config().vocab_size));
  }
  // A sampled group, then its sequences scored.
  GroupRequest g;
  g.prompt = {5, 9, 200, 31};
  g.n = 2;
  g.max_new_tokens = 6;
  g.seed = 3;
  g.return_raw_logprobs = true;
  auto sampled = (*e)->GenerateGroups({g});
  ASSERT_TRUE(sampled.ok());
  std::vector<std::vector<int32_t>> seqs;
  grpo::v1::LogprobsRequest req;
  req.set_request_id("score-1");
  for (const SampleResult& s : (*sampled)[0].samples) {
    seqs.push_back(g.prompt);
    seqs.back().insert(seqs.back().end(), s.tokens.begin(), s.tokens.end());
    req.add_sequences()->mutable_token_ids()->Add(seqs.back().begin(), seqs.back().end());
  }
  auto score = [&](const grpo::v1::LogprobsRequest& r, grpo::v1::LogprobsResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return stub->Logprobs(&ctx, r, resp);
  };
  grpo::v1::LogprobsResponse resp;
  grpc::Status st = score(req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.request_id(), "score-1");
  EXPECT_EQ(resp.weight_version(), 0u);
  auto want = reference->Forward(TokenBatch::FromSequences(seqs), {});
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(resp.sequences_size(), 2);
  size_t at = 0;
  for (int i = 0; i < 2; ++i) {
    const auto& got = resp.sequences(i).logprobs();
    ASSERT_EQ(got.size() + 1, static_cast<int>(seqs[i].size()));
    for (int t = 0; t < got.size(); ++t) EXPECT_EQ(got[t], want->logprobs[at + t]) << i << " " << t;
    const std::vector<float>& raw = (*sampled)[0].samples[i].raw_logprobs;
    for (size_t t = 0; t < raw.size(); ++t) EXPECT_NEAR(got[g.prompt.size() - 1 + t], raw[t], 1e-4) << i << " " << t;
    at += got.size();
  }
  // Limits, each INVALID_ARGUMENT naming what was wrong.
  auto refused = [&](const grpo::v1::LogprobsRequest& r, const std::string& needle) {
    grpo::v1::LogprobsResponse out;
    grpc::Status s = score(r, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << needle;
    EXPECT_NE(s.error_message().find(needle), std::string::npos) << s.error_message();
  };
  refused(grpo::v1::LogprobsRequest(), "at least one");
  grpo::v1::LogprobsRequest empty;
  empty.add_sequences();
  refused(empty, "sequences[0] has no tokens");
  grpo::v1::LogprobsRequest bad_id;
  bad_id.add_sequences()->add_token_ids((*e)->config().vocab_size);
  refused(bad_id, "outside the vocabulary");
  grpo::v1::LogprobsRequest too_many;
  for (int i = 0; i < 5; ++i) {  // 5 x 9 = 45 tokens, over the 40 allowed
    auto* ids = too_many.add_sequences()->mutable_token_ids();
    for (int t = 0; t < 9; ++t) ids->Add(5 + t);
  }
  refused(too_many, "the request has 45 tokens, the limit is max_logprobs_tokens 40");
  // After a weight push the copy is not the serving weights: refused.
  WeightPushOptions f32;
  f32.format = WeightFormat::kF32;
  auto ack = PushWeights(*stub, MakeModel("qwen3_moe-nano", 6)->ReadParameters(), 1, f32,
                         absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(ack.ok() && ack->accepted()) << ack.status().ToString();
  grpo::v1::LogprobsResponse after;
  EXPECT_EQ(score(req, &after).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServiceTest, LogprobsWithoutAScoringModelIsRefused) {
  EXPECT_FALSE(Health().serves_logprobs());
  grpc::ClientContext ctx;
  grpo::v1::LogprobsRequest req;
  req.add_sequences()->add_token_ids(5);
  grpo::v1::LogprobsResponse resp;
  grpc::Status st = stub_->Logprobs(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("--serve-logprobs"), std::string::npos) << st.error_message();
}

}  // namespace
}  // namespace grpo
