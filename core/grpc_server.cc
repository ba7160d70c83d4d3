#include "core/grpc_server.h"

#include <grpc/grpc.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace grpo {
namespace {

// Why `a` cannot be listened on, found by binding a probe socket as gRPC does (SO_REUSEADDR on,
// SO_REUSEPORT off); "" when the probe binds (the address was freed meanwhile, or gRPC failed
// for a reason of its own).
std::string WhyCannotListen(const ListenAddress& a) {
  std::string host = a.host;
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(a.port);
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::StrCat("host '", host, "' does not resolve (", gai_strerror(rc), ")");
  }
  std::string why;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const int rc = bind(fd, ai->ai_addr, ai->ai_addrlen);
    const int err = errno;
    close(fd);
    if (rc == 0) continue;
    if (err == EADDRINUSE) {
      why = absl::StrCat("port ", a.port, " is already in use (another server listens there; stop it or pick "
                         "another port, or port 0 for a free one)");
    } else if (err == EADDRNOTAVAIL) {
      why = absl::StrCat("'", host, "' is not an address of this machine (", std::strerror(err), ")");
    } else if (err == EACCES) {
      why = absl::StrCat("permission denied for port ", a.port, " (ports below 1024 need privileges)");
    } else {
      why = std::strerror(err);
    }
    break;
  }
  freeaddrinfo(found);
  return why;
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text) {
  const std::string quoted = absl::StrCat("'", text, "'");
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("listen address ", quoted, " is not HOST:PORT"));
  }
  ListenAddress a;
  a.host = std::string(text.substr(0, colon));
  const absl::string_view port = text.substr(colon + 1);
  if (a.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("listen address ", quoted, " has no host (use 127.0.0.1 for ",
                                                   "loopback, 0.0.0.0 for every interface)"));
  }
  const bool bracketed = a.host.front() == '[';
  if (bracketed != (a.host.back() == ']') || (bracketed && a.host.size() < 3) ||
      (!bracketed && a.host.find(':') != std::string::npos)) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address ", quoted, ": an IPv6 host goes in brackets, as in [::1]:50051"));
  }
  for (char c : a.host) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat("listen address ", quoted, ": the host has a space or a ",
                                                     "control character"));
    }
  }
  if (port.empty()) return absl::InvalidArgumentError(absl::StrCat("listen address ", quoted, " has no port"));
  int64_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address ", quoted, ": the port must be a number in 0..65535 (0 picks a free one)"));
    }
    value = value * 10 + (c - '0');
    if (value > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address ", quoted, ": port ", port, " is out of range 0..65535 (0 picks a free one)"));
    }
  }
  a.port = static_cast<int>(value);
  return a;
}

absl::StatusOr<StartedServer> StartGrpcServer(grpc::ServerBuilder& builder, absl::string_view listen,
                                              absl::string_view who) {
  GRPO_ASSIGN_OR_RETURN(const ListenAddress a, ParseListenAddress(listen));
  // One server per address: with SO_REUSEPORT (gRPC's default) a second server would start on a
  // port already served and the kernel would spread the connections over both.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  StartedServer s;
  builder.AddListeningPort(a.ToString(), grpc::InsecureServerCredentials(), &s.port);
  s.server = builder.BuildAndStart();
  if (s.server == nullptr || s.port == 0) {
    if (s.server != nullptr) s.server->Shutdown();
    const std::string why = WhyCannotListen(a);
    return absl::UnavailableError(absl::StrCat(who, " cannot listen on ", a.ToString(), ": ",
                                               why.empty() ? "gRPC could not start the server" : why));
  }
  if (a.port != 0 && s.port != a.port) {  // never expected: gRPC picked another port
    s.server->Shutdown();
    return absl::UnavailableError(
        absl::StrCat(who, " asked for port ", a.port, " of ", a.host, " but listens on ", s.port));
  }
  return s;
}

absl::StatusOr<StartedServer> StartLimitedGrpcServer(grpc::Service* service, const GrpcServerLimits& limits,
                                                     absl::string_view listen, absl::string_view who) {
  grpc::ServerBuilder builder;
  grpc::ResourceQuota quota{std::string(who)};
  quota.SetMaxThreads(limits.max_concurrent_requests + kExtraServerThreads);
  builder.SetResourceQuota(quota);
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(limits.max_request_mb << 20);
  builder.SetMaxSendMessageSize(limits.max_message_mb << 20);
  return StartGrpcServer(builder, listen, who);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace grpo
