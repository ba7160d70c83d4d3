// Starting a gRPC server that owns its address (what `grpo rollout serve` and `grpo reward serve`
// listen with; docs/security.md).
//
// ParseListenAddress("HOST:PORT"): HOST is a host name, an IPv4 address or a bracketed IPv6
// address ("[::1]"), never empty; PORT is decimal digits only, 0..65535. Port 0 means "pick a
// free one" (the server reports the port it got). Anything else is InvalidArgument quoting the
// text: "localhost:-1" and "127.0.0.1:99999" are refused, not passed to gRPC (which would take
// the first as a parse failure and the second as a random port).
//
// StartGrpcServer(builder, listen, who): adds the listening port with SO_REUSEPORT off (gRPC
// turns it on by default, which lets a second server start on a port another one serves, the
// clients then served by either), builds and starts the server and checks that it listens on
// the port asked for. Errors: InvalidArgument for a bad address (above); Unavailable when the
// server cannot listen, naming `who`, the address and the reason found by binding a probe
// socket the way gRPC does ("address already in use: another server listens there", "cannot
// assign requested address: HOST is not an address of this machine", a host that does not
// resolve, ...). On error nothing is left listening.
#ifndef GRPO_CORE_GRPC_SERVER_H_
#define GRPO_CORE_GRPC_SERVER_H_

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace grpo {

// Server threads beyond a service's admitted calls (health, drain, weight updates, gRPC's
// pollers). gRPC reads and parses a call's request on its thread before the handler admits it,
// so a server may hold max_concurrent_requests + kExtraServerThreads received requests at once;
// the services' start-up memory checks count that many.
inline constexpr int kExtraServerThreads = 8;

struct ListenAddress {
  std::string host;  // as given: "[::1]" keeps its brackets
  int port = 0;      // 0: pick a free port
  std::string ToString() const { return host + ":" + std::to_string(port); }
};

absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text);

struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the port it listens on (the one asked for, or the picked one)
};

// `builder` has its services and options set; `who` names the server in errors ("the rollout
// server").
absl::StatusOr<StartedServer> StartGrpcServer(grpc::ServerBuilder& builder, absl::string_view listen,
                                              absl::string_view who);

// The limits our services start with (reward and rollout serve): gRPC threads for the admitted
// calls plus kExtraServerThreads (a resource quota named `who`), and the largest message
// received and sent, in MiB.
struct GrpcServerLimits {
  int max_concurrent_requests = 0;
  int max_request_mb = 0;
  int max_message_mb = 0;
};

// StartGrpcServer for `service` alone under `limits`; `service` must outlive the server.
absl::StatusOr<StartedServer> StartLimitedGrpcServer(grpc::Service* service, const GrpcServerLimits& limits,
                                                     absl::string_view listen, absl::string_view who);

// The gRPC status of an absl::Status: the same canonical code (the two enums share their
// numbers) and message. For service handlers that call functions returning absl::Status.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace grpo

#endif  // GRPO_CORE_GRPC_SERVER_H_
