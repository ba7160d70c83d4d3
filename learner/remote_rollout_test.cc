// RemoteRollout against rollout servers in this process: a push streamed while groups generate
// lands between the servers' decode steps (samples span two versions, none is dropped), and a
// server that comes back with its original weights is routed around, then revived with the
// newest version.
//
// MakeRemoteRollout's capability check: with tools on, a rollout server whose Health does not
// report serves_tools (one that predates GenerateRequest.tools, and would answer single-turn
// samples) is refused at start, naming the server; without tools it is used as before.
#include "learner/remote_rollout.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/engine.h"
#include "rollout/service.h"

namespace grpo {
namespace {

std::unique_ptr<CausalLM> MakeModel(uint64_t seed) {
  auto config = PresetConfig("llama-nano");
  EXPECT_TRUE(config.ok());
  auto m = CausalLM::Create(*config, InitParameters(*config, seed, 0.1), BackendForTests());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

// `grpo rollout serve` in this process, on its own random weights (version 0).
struct Served {
  std::unique_ptr<RolloutEngine> engine;
  std::unique_ptr<RolloutServer> server;
  std::string endpoint;

  explicit Served(const std::string& listen = "127.0.0.1:0") {
    auto e = RolloutEngine::Create(MakeModel(11), {});
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    engine = std::move(e).value();
    RolloutServeOptions o;
    o.listen = listen;
    o.allow_unauthenticated_push = true;
    auto s = RolloutServer::Start(*engine, nullptr, o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    server = std::move(s).value();
    endpoint = "127.0.0.1:" + std::to_string(server->port());
  }
  void Stop() {
    server->Shutdown(absl::ZeroDuration());
    server.reset();
  }
};

RemoteRolloutOptions Options(std::vector<std::string> endpoints) {
  RemoteRolloutOptions o;
  o.endpoints = std::move(endpoints);
  o.push.format = WeightFormat::kF32;
  o.group_timeout = absl::Seconds(60);
  o.push_timeout = absl::Seconds(60);
  return o;
}

std::vector<GroupRequest> Requests(int groups, int64_t max_new_tokens) {
  std::vector<GroupRequest> out(groups);
  for (int g = 0; g < groups; ++g) {
    out[g].prompt = {5, 9, 200, 31};
    out[g].n = 4;
    out[g].max_new_tokens = max_new_tokens;  // no stop tokens: every sample runs to the limit
    out[g].seed = 100 + g;
    out[g].return_raw_logprobs = true;
  }
  return out;
}

std::set<uint64_t> Versions(const SampleResult& s) {
  std::set<uint64_t> v;
  for (const VersionSpan& span : s.versions) v.insert(span.version);
  return v;
}

TEST(RemoteRollout, APushLandsWhileGroupsGenerateWithoutDroppingThem) {
  Served a, b;
  std::unique_ptr<CausalLM> policy = MakeModel(3);
  auto rollout = MakeRemoteRollout(Options({a.endpoint, b.endpoint}));
  ASSERT_TRUE(rollout.ok()) << rollout.status().ToString();
  ASSERT_TRUE((*rollout)->PushWeights(1, *policy).ok());

  absl::StatusOr<std::vector<GroupResult>> groups;
  std::atomic<bool> done{false};
  std::thread generate([&] {
    groups = (*rollout)->Generate(Requests(4, 200));
    done = true;
  });
  // Version 2 is pushed once both servers are decoding (the groups go round robin: 2 each).
  while (!done && (a.engine->stats().running_sequences == 0 || b.engine->stats().running_sequences == 0)) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  const absl::Status pushed = (*rollout)->PushWeights(2, *policy);
  generate.join();
  ASSERT_TRUE(pushed.ok()) << pushed.ToString();
  ASSERT_TRUE(groups.ok()) << groups.status().ToString();
  EXPECT_EQ((*rollout)->weight_version(), 2u);
  int spanning = 0;
  for (const GroupResult& g : *groups) {
    ASSERT_EQ(g.samples.size(), 4u);
    for (const SampleResult& s : g.samples) {
      EXPECT_EQ(s.tokens.size(), 200u);
      EXPECT_EQ(s.finish_reason, FinishReason::kLength);
      const std::set<uint64_t> v = Versions(s);
      const bool pushed_versions = v == std::set<uint64_t>{1} || v == std::set<uint64_t>({1, 2}) ||
                                   v == std::set<uint64_t>{2};
      EXPECT_TRUE(pushed_versions);
      spanning += v.size() == 2;
    }
  }
  EXPECT_GT(spanning, 0) << "the push did not land in the middle of a generation";
  // Without a push in flight every token is the newest version's.
  auto after = (*rollout)->Generate(Requests(2, 8));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  for (const GroupResult& g : *after) {
    for (const SampleResult& s : g.samples) EXPECT_EQ(Versions(s), std::set<uint64_t>{2});
  }
}

TEST(RemoteRollout, AServerBackWithItsOriginalWeightsIsRoutedAroundThenRevived) {
  Served a;
  auto b = std::make_unique<Served>();
  const std::string b_endpoint = b->endpoint;
  std::unique_ptr<CausalLM> policy = MakeModel(3);
  auto rollout = MakeRemoteRollout(Options({a.endpoint, b_endpoint}));
  ASSERT_TRUE(rollout.ok()) << rollout.status().ToString();
  ASSERT_TRUE((*rollout)->PushWeights(1, *policy).ok());
  ASSERT_TRUE((*rollout)->PushWeights(2, *policy).ok());
  b->Stop();
  b = std::make_unique<Served>(b_endpoint);  // restarted: version 0, the same address
  ASSERT_EQ(b->endpoint, b_endpoint);

  // Its groups fail (the channel is reconnecting) or come back with version-0 samples: either
  // way it is marked down and they are generated by a. A later Generate finds it answering
  // Health (after the channel's reconnect backoff) and pushes it version 2 before sending it work.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  int calls = 0;
  do {
    auto groups = (*rollout)->Generate(Requests(4, 8));
    ++calls;
    ASSERT_TRUE(groups.ok()) << groups.status().ToString();
    for (const GroupResult& g : *groups) {
      for (const SampleResult& s : g.samples) EXPECT_EQ(Versions(s), std::set<uint64_t>{2}) << "call " << calls;
    }
    if (b->engine->weight_version() == 2) break;
    absl::SleepFor(absl::Milliseconds(100));
  } while (absl::Now() < deadline);
  EXPECT_EQ(b->engine->weight_version(), 2u) << "not revived after " << calls << " calls";
  EXPECT_GT(calls, 1);  // the first call found it down or routed around it
  auto after = (*rollout)->Generate(Requests(4, 8));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  for (const GroupResult& g : *after) {
    for (const SampleResult& s : g.samples) EXPECT_EQ(Versions(s), std::set<uint64_t>{2});
  }
}

// A rollout server that answers Health only, as a server built before `serves_tools` does
// (serving, the field left unset) or, with `serves_tools`, as a current one.
class HealthOnlyServer final : public grpo::v1::RolloutService::Service {
 public:
  explicit HealthOnlyServer(bool serves_tools) : serves_tools_(serves_tools) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(this);
    server_ = b.BuildAndStart();
  }
  ~HealthOnlyServer() override { server_->Shutdown(); }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::Status Health(grpc::ServerContext*, const grpo::v1::RolloutHealthRequest*,
                      grpo::v1::RolloutHealthResponse* resp) override {
    resp->set_status(grpo::v1::RolloutHealthResponse::SERVING);
    if (serves_tools_) resp->set_serves_tools(true);
    return grpc::Status::OK;
  }

 private:
  bool serves_tools_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

RemoteRolloutOptions Options(const std::vector<std::string>& endpoints, const std::string& environment) {
  RemoteRolloutOptions o;
  o.endpoints = endpoints;
  o.tools.environment = environment;
  return o;
}

TEST(RemoteRollout, RefusesAServerWithoutToolUseWhenTheRecipeHasTools) {
  HealthOnlyServer current(true), old(false);
  ASSERT_NE(old.endpoint(), "127.0.0.1:0");
  auto refused = MakeRemoteRollout(Options({current.endpoint(), old.endpoint()}, "calculator"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(refused.status().message());
  EXPECT_NE(message.find("rollout server " + old.endpoint() + " does not serve tool use"), std::string::npos)
      << message;
  EXPECT_NE(message.find("tools.environment: calculator"), std::string::npos) << message;
  EXPECT_EQ(message.find(current.endpoint()), std::string::npos) << message;

  EXPECT_TRUE(MakeRemoteRollout(Options({current.endpoint()}, "calculator")).ok());
  EXPECT_TRUE(MakeRemoteRollout(Options({current.endpoint(), old.endpoint()}, "none")).ok());
  // A server that does not answer is not refused (it is checked when it comes back).
  EXPECT_TRUE(MakeRemoteRollout(Options({current.endpoint(), "127.0.0.1:1"}, "python")).ok());
}

}  // namespace
}  // namespace grpo
