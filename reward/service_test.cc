// RewardService over loopback: scoring, limits, deadlines, health, drain, and the client's
// failover across two replicas when one is stopped.
#include "reward/service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "reward/client.h"

namespace grpo::reward {
namespace {

std::shared_ptr<const RuleSet> Rules() {
  auto c = Config::Parse("rules:\n  - {type: math, name: acc}\n  - {type: format, mode: lenient, weight: 0.5}\n",
                         "rules.yaml");
  auto s = RuleSet::FromConfig(*c, {});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::make_shared<RuleSet>(std::move(s).value());
}

std::unique_ptr<RewardServer> StartServer(ServeOptions o = {}) {
  o.listen = "127.0.0.1:0";
  auto s = RewardServer::Start(Rules(), o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

grpo::v1::RewardRequestItem Item(const std::string& id, const std::string& completion,
                                 const std::string& answer) {
  RewardItem it;
  it.completion = completion;
  it.answer = answer;
  return ToProto(it, id);
}

std::string Target(const RewardServer& s) { return "127.0.0.1:" + std::to_string(s.port()); }

TEST(RewardService, ScoresInOrderWithBreakdown) {
  auto server = StartServer();
  auto client = RewardClient::Create({{Target(*server)}});
  ASSERT_TRUE(client.ok());
  auto r = (*client)->Score({Item("a", "<think>x</think><answer>4</answer>", "4"),
                             Item("b", "\\boxed{5}", "4"), Item("c", "\\boxed{5}", "\\frac{")});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].id(), "a");
  EXPECT_DOUBLE_EQ((*r)[0].reward(), 1.5);
  ASSERT_EQ((*r)[0].rules_size(), 2);
  EXPECT_EQ((*r)[0].rules(1).weight(), 0.5);
  EXPECT_DOUBLE_EQ((*r)[1].reward(), 0.0);
  EXPECT_FALSE((*r)[2].has_reward());
  EXPECT_FALSE((*r)[2].error().empty());

  auto rules = (*client)->ListRules();
  ASSERT_TRUE(rules.ok());
  ASSERT_EQ(rules->rules_size(), 2);
  EXPECT_EQ(rules->rules(0).name(), "acc");
  EXPECT_TRUE((*client)->AnyServing());
}

TEST(RewardService, LimitsAndDeadline) {
  ServeOptions o;
  o.max_batch_items = 2;
  o.max_item_bytes = 100;
  auto server = StartServer(o);
  auto channel = grpc::CreateChannel(Target(*server), grpc::InsecureChannelCredentials());
  auto stub = grpo::v1::RewardService::NewStub(channel);
  grpo::v1::ScoreRequest req;
  for (int i = 0; i < 3; ++i) *req.add_items() = Item("x", "\\boxed{1}", "1");
  grpo::v1::ScoreResponse resp;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->Score(&ctx, req, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  req.mutable_items()->RemoveLast();
  req.mutable_items(1)->set_completion(std::string(200, 'x'));
  {
    grpc::ClientContext ctx;
    resp.Clear();
    ASSERT_TRUE(stub->Score(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.results(0).has_reward());
    EXPECT_FALSE(resp.results(1).has_reward());
    EXPECT_NE(resp.results(1).error().find("exceeds"), std::string::npos);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() - std::chrono::milliseconds(1));
    EXPECT_EQ(stub->Score(&ctx, req, &resp).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
}

// A rule's detail quotes the completion cut at a byte count, which can split a character; the
// result must still be a message that parses again (a trajectory holding it is stored, then read).
TEST(RewardService, ResultTextIsValidUtf8SoTheMessageParsesAgain) {
  ItemResult r;
  r.reward = 1.0;
  RuleResult rr;
  rr.rule = "math";
  rr.score = 1.0;
  rr.weight = 1.0;
  rr.detail = "answer \xE4\xBD";      // the first two bytes of a three-byte character
  rr.error = "bad \xFF byte";
  r.rules.push_back(rr);
  r.error = "";
  grpo::v1::RewardResult proto;
  ToRewardResult("id-1", r, &proto);
  std::string wire;
  ASSERT_TRUE(proto.SerializeToString(&wire));
  grpo::v1::RewardResult back;
  ASSERT_TRUE(back.ParseFromString(wire));
  ASSERT_EQ(back.rules_size(), 1);
  EXPECT_EQ(back.rules(0).detail(), "answer \xEF\xBF\xBD");
  EXPECT_EQ(back.rules(0).error(), "bad \xEF\xBF\xBD byte");
  EXPECT_EQ(back.rules(0).score(), 1.0);
}

TEST(RewardService, EmptyBatch) {
  auto server = StartServer();
  auto client = RewardClient::Create({{Target(*server)}});
  auto r = (*client)->Score({});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(RewardClient, FailsOverWhenAReplicaStops) {
  auto a = StartServer();
  auto b = StartServer();
  ClientOptions o;
  o.targets = {Target(*a), Target(*b)};
  o.timeout = absl::Seconds(2);
  o.backoff = absl::Milliseconds(10);
  auto client = RewardClient::Create(o);
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*client)->Score({Item("i", "\\boxed{1}", "1")}).ok());
  a->Shutdown(absl::Milliseconds(100));
  for (int i = 0; i < 6; ++i) {
    auto r = (*client)->Score({Item("i", "\\boxed{1}", "1")});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_DOUBLE_EQ((*r)[0].reward(), 1.0);
  }
  EXPECT_TRUE((*client)->AnyServing());
  b->Shutdown(absl::Milliseconds(100));
  auto down = (*client)->Score({Item("i", "\\boxed{1}", "1")});
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE((*client)->AnyServing());
}

TEST(RewardService, HealthThenShutdownStopsServing) {
  auto server = StartServer();
  auto channel = grpc::CreateChannel(Target(*server), grpc::InsecureChannelCredentials());
  auto stub = grpo::v1::RewardService::NewStub(channel);
  grpc::ClientContext ctx;
  grpo::v1::RewardHealthResponse h;
  ASSERT_TRUE(stub->Health(&ctx, {}, &h).ok());
  EXPECT_EQ(h.status(), grpo::v1::RewardHealthResponse::SERVING);
  server->Shutdown(absl::Milliseconds(100));
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  EXPECT_FALSE(stub->Health(&ctx2, {}, &h).ok());
}

TEST(ServeOptions, DefaultIsLoopback) {
  EXPECT_EQ(ServeOptions().listen.rfind("127.0.0.1:", 0), 0u);
}

// Issue 19: 3 x 400 MB requests were parsed at once. A request above max_request_mb is refused
// by gRPC (RESOURCE_EXHAUSTED) and the server keeps serving; requests in flight
// (max_request_mb x max_concurrent_requests) must fit in memory for the server to start.
TEST(RewardService, RequestBytesAreBounded) {
  ServeOptions o;
  o.max_request_mb = 1;
  o.max_item_bytes = 4u << 20;
  auto server = StartServer(o);
  auto stub = grpo::v1::RewardService::NewStub(grpc::CreateChannel(Target(*server), grpc::InsecureChannelCredentials()));
  grpo::v1::ScoreRequest req;
  *req.add_items() = Item("big", std::string(2u << 20, 'x'), "1");
  grpo::v1::ScoreResponse resp;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->Score(&ctx, req, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  req.mutable_items(0)->set_completion("\\boxed{1}");
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->Score(&ctx, req, &resp).ok());
  EXPECT_DOUBLE_EQ(resp.results(0).reward(), 1.0);
}

TEST(RewardService, StartRefusesRequestsInFlightBeyondMemory) {
  ServeOptions o;
  o.listen = "127.0.0.1:0";
  o.max_request_mb = 64;
  o.max_concurrent_requests = 8;
  ::setenv("GRPO_MEMORY_LIMIT_MB", "256", 1);
  auto s = RewardServer::Start(Rules(), o);
  ::unsetenv("GRPO_MEMORY_LIMIT_MB");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.status().message().find("requests in flight (max_request_mb 64 x (max_concurrent_requests 8 + 8 server threads))"),
            std::string::npos)
      << s.status().ToString();
  o.max_concurrent_requests = 0;
  EXPECT_EQ(RewardServer::Start(Rules(), o).status().code(), absl::StatusCode::kInvalidArgument);
}

// Issue 19, class 3: a second server on a taken port started silently (gRPC's SO_REUSEPORT) and
// clients were served by either; a failed start then crashed in ~RewardServer (Shutdown on no
// server). Now the second start is an error naming the port, and the first keeps serving.
TEST(RewardService, ASecondServerOnATakenPortFailsAndTheFirstKeepsServing) {
  auto first = StartServer();
  ServeOptions o;
  o.listen = Target(*first);
  auto second = RewardServer::Start(Rules(), o);
  ASSERT_FALSE(second.ok()) << "a second reward server started on " << o.listen;
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("the reward server cannot listen on " + o.listen), std::string::npos)
      << second.status();
  EXPECT_NE(second.status().message().find("already in use"), std::string::npos) << second.status();
  auto client = RewardClient::Create({{Target(*first)}});
  ASSERT_TRUE(client.ok());
  auto r = (*client)->Score({Item("a", "\\boxed{4}", "4")});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].id(), "a");
}

// --listen localhost:-1 crashed (exit 139) and 127.0.0.1:99999 listened on a random port.
TEST(RewardService, ListenAddressIsValidated) {
  const std::vector<std::string> bad = {"localhost:-1", "127.0.0.1:99999", "127.0.0.1",
                                        ":50051",       "::1:50051",       "127.0.0.1:5e3"};
  for (const std::string& listen : bad) {
    ServeOptions o;
    o.listen = listen;
    auto s = RewardServer::Start(Rules(), o);
    ASSERT_FALSE(s.ok()) << listen << " listened on port " << (*s)->port();
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << listen << ": " << s.status();
    EXPECT_NE(s.status().message().find("'" + listen + "'"), std::string::npos) << s.status();
  }
  // An address of another machine: Unavailable, and no crash tearing the half-built server down.
  ServeOptions o;
  o.listen = "192.0.2.1:0";
  auto s = RewardServer::Start(Rules(), o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
}

}  // namespace
}  // namespace grpo::reward
