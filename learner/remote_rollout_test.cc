// MakeRemoteRollout's capability check: with tools on, a rollout server whose Health does not
// report serves_tools (one that predates GenerateRequest.tools, and would answer single-turn
// samples) is refused at start, naming the server; without tools it is used as before.
#include "learner/remote_rollout.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "proto/rollout.grpc.pb.h"

namespace grpo {
namespace {

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
