// RewardService over loopback: scoring, limits, deadlines, health, drain, and the client's
// failover across two replicas when one is stopped.
#include "reward/service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

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
  o.timeout_ms = 2000;
  o.backoff_ms = 10;
  auto client = RewardClient::Create(o);
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*client)->Score({Item("i", "\\boxed{1}", "1")}).ok());
  a->Shutdown(std::chrono::milliseconds(100));
  for (int i = 0; i < 6; ++i) {
    auto r = (*client)->Score({Item("i", "\\boxed{1}", "1")});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_DOUBLE_EQ((*r)[0].reward(), 1.0);
  }
  EXPECT_TRUE((*client)->AnyServing());
  b->Shutdown(std::chrono::milliseconds(100));
  auto down = (*client)->Score({Item("i", "\\boxed{1}", "1")});
  EXPECT_EQ(down.status().code(), StatusCode::kUnavailable);
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
  server->Shutdown(std::chrono::milliseconds(100));
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  EXPECT_FALSE(stub->Health(&ctx2, {}, &h).ok());
}

TEST(ServeOptions, DefaultIsLoopback) {
  EXPECT_EQ(ServeOptions().listen.rfind("127.0.0.1:", 0), 0u);
}

}  // namespace
}  // namespace grpo::reward
