// ParseListenAddress accepts HOST:PORT with PORT in 0..65535 only; StartGrpcServer refuses a
// port another server listens on (no SO_REUSEPORT sharing) and names why it cannot listen.
#include "core/grpc_server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

namespace grpo {
namespace {

TEST(ParseListenAddress, AcceptsHostAndPort) {
  const std::vector<std::tuple<std::string, std::string, int>> good = {
      {"127.0.0.1:0", "127.0.0.1", 0},
      {"localhost:50051", "localhost", 50051},
      {"0.0.0.0:65535", "0.0.0.0", 65535},
      {"[::1]:8080", "[::1]", 8080},
      {"node07.cluster:00080", "node07.cluster", 80}};
  for (const auto& [text, host, port] : good) {
    auto a = ParseListenAddress(text);
    ASSERT_TRUE(a.ok()) << text << ": " << a.status();
    EXPECT_EQ(a->host, host) << text;
    EXPECT_EQ(a->port, port) << text;
  }
  EXPECT_EQ(ParseListenAddress("[::1]:8080")->ToString(), "[::1]:8080");
}

TEST(ParseListenAddress, RefusesWhatGrpcWouldMisread) {
  const std::vector<std::string> bad = {
      "localhost:-1", "127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:18446744073709551617", "nohost", ":50051",
      "127.0.0.1:",   "::1:50051",       "[::1:50051",      "::1]:50051", "[]:1", "a b:1", "host\n:1",
      "127.0.0.1:+5", "127.0.0.1:5x",    "127.0.0.1: 5",    "unix:/tmp/socket"};
  for (const std::string& text : bad) {
    auto a = ParseListenAddress(text);
    ASSERT_FALSE(a.ok()) << "accepted '" << text << "' as " << a->ToString();
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(a.status().message().find("'" + text + "'"), std::string::npos) << a.status();
  }
  EXPECT_NE(ParseListenAddress("127.0.0.1:99999").status().message().find("out of range 0..65535"),
            std::string::npos);
}

// A server with one generic service (it answers UNIMPLEMENTED; gRPC needs a service to start).
struct TestServer {
  std::unique_ptr<grpc::CallbackGenericService> service = std::make_unique<grpc::CallbackGenericService>();
  absl::StatusOr<StartedServer> started;  // destroyed before the service it serves
  bool ok() const { return started.ok(); }
  const absl::Status& status() const { return started.status(); }
};

std::unique_ptr<TestServer> Start(const std::string& listen) {
  auto t = std::make_unique<TestServer>();
  grpc::ServerBuilder b;
  b.RegisterCallbackGenericService(t->service.get());
  t->started = StartGrpcServer(b, listen, "the test server");
  return t;
}

TEST(StartGrpcServer, PortZeroPicksOneAndATakenPortIsAnError) {
  auto first = Start("127.0.0.1:0");
  ASSERT_TRUE(first->ok()) << first->status();
  const int port = first->started->port;
  ASSERT_GT(port, 0);
  const std::string addr = "127.0.0.1:" + std::to_string(port);

  // gRPC's default (SO_REUSEPORT) would let this one start and share the port.
  auto second = Start(addr);
  ASSERT_FALSE(second->ok()) << "a second server started on " << addr;
  EXPECT_EQ(second->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second->status().message().find("the test server cannot listen on " + addr), std::string::npos)
      << second->status();
  EXPECT_NE(second->status().message().find("already in use"), std::string::npos) << second->status();
  // "localhost" covers the same IPv4 port.
  EXPECT_FALSE(Start("localhost:" + std::to_string(port))->ok());

  // Once the first stops, the port can be taken again (what a restarted server does).
  first->started->server->Shutdown();
  first->started->server->Wait();
  first.reset();
  auto again = Start(addr);
  ASSERT_TRUE(again->ok()) << again->status();
  EXPECT_EQ(again->started->port, port);
}

TEST(StartGrpcServer, NamesWhyItCannotListen) {
  auto bad = Start("localhost:-1");
  ASSERT_FALSE(bad->ok());
  EXPECT_EQ(bad->status().code(), absl::StatusCode::kInvalidArgument);

  // 192.0.2.1 (TEST-NET-1, RFC 5737) is no address of this machine.
  auto foreign = Start("192.0.2.1:0");
  ASSERT_FALSE(foreign->ok());
  EXPECT_EQ(foreign->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(foreign->status().message().find("not an address of this machine"), std::string::npos)
      << foreign->status();

  auto unresolved = Start("no-such-host.invalid:0");
  ASSERT_FALSE(unresolved->ok());
  EXPECT_EQ(unresolved->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(unresolved->status().message().find("does not resolve"), std::string::npos) << unresolved->status();
}

}  // namespace
TEST(ToGrpcStatus, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status exhausted = ToGrpcStatus(absl::ResourceExhaustedError("batch of 9 items"));
  EXPECT_EQ(exhausted.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(exhausted.error_message(), "batch of 9 items");
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("late")).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("x")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace grpo
