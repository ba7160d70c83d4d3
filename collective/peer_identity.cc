#include "collective/peer_identity.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace grpo::collective_internal {
namespace {

std::string IdentityKey(int rank) { return absl::StrCat("identity_", rank); }

struct Identity {
  std::string host;  // host name
  std::string ip;    // the address this rank listens on, as Gloo prints it
  pid_t pid = 0;
};

bool ReadIdentity(gloo::rendezvous::Store& store, int rank, Identity* id) {
  std::vector<char> bytes;
  try {
    bytes = store.get(IdentityKey(rank));
  } catch (const std::exception&) {
    return false;
  }
  std::vector<std::string> fields = absl::StrSplit(std::string(bytes.begin(), bytes.end()), '\n');
  if (fields.size() != 3) return false;
  id->host = fields[0];
  id->ip = fields[1];
  id->pid = static_cast<pid_t>(std::atol(fields[2].c_str()));
  return true;
}

// True when process `pid` of this host has exited (gone, or a zombie not yet reaped).
bool ProcessGone(pid_t pid) {
  FILE* f = fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "r");
  if (f == nullptr) return true;
  char buf[512];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  const char* close_paren = strrchr(buf, ')');  // "pid (comm) S ..."
  return close_paren != nullptr && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

}  // namespace

std::string ThisHostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "127.0.0.1";
  return name;
}

std::string NumericAddress(const std::string& host) {
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return host;
  char buf[INET6_ADDRSTRLEN] = {};
  getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof(buf), nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  return buf;
}

void PublishIdentity(gloo::rendezvous::Store& store, int rank, const std::string& listen_ip) {
  const std::string text = absl::StrCat(ThisHostName(), "\n", listen_ip, "\n", getpid());
  store.set(IdentityKey(rank), std::vector<char>(text.begin(), text.end()));
}

namespace {

std::vector<int> FailedPeersNow(gloo::rendezvous::Store& store, int self, int size,
                                const std::string& engine_message) {
  const std::string host = ThisHostName();
  std::vector<int> gone, named;
  for (int r = 0; r < size; ++r) {
    Identity id;
    if (r == self || !ReadIdentity(store, r, &id)) continue;
    if (id.host == host && id.pid > 0 && ProcessGone(id.pid)) gone.push_back(r);
    if (!id.ip.empty() && engine_message.find("[" + id.ip + "]") != std::string::npos) {
      named.push_back(r);
    }
  }
  if (!gone.empty()) return gone;
  return named.size() == 1 ? named : std::vector<int>{};
}

}  // namespace

std::vector<int> FailedPeers(gloo::rendezvous::Store& store, int self, int size,
                             const std::string& engine_message) {
  // A peer that is exiting has closed its sockets a moment before its process is gone.
  for (int attempt = 0;; ++attempt) {
    std::vector<int> peers = FailedPeersNow(store, self, size, engine_message);
    if (!peers.empty() || attempt == 40) return peers;
    usleep(50 * 1000);
  }
}

std::string DescribeFailedPeers(const std::vector<int>& peers) {
  std::string who;
  for (int peer : peers) absl::StrAppend(&who, "peer rank ", peer, " is gone; ");
  return who.empty() ? "a peer rank failed or timed out; " : who;
}

}  // namespace grpo::collective_internal
