#include "collective/gloo_collective.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>

#include <chrono>
#include <map>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "gloo/allgatherv.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/transport/tcp/device.h"

namespace grpo {
namespace {

std::chrono::milliseconds ToChrono(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

std::string ThisHostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "127.0.0.1";
  return name;
}

std::vector<char> ToBytes(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

// The numeric address `host` resolves to, as Gloo prints peers ("127.0.0.1").
std::string ListenIp(const std::string& host) {
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return host;
  char buf[INET6_ADDRSTRLEN] = {};
  getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof(buf), nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  return buf;
}

// What each rank publishes about itself so that a peer can name it after a failure: its host,
// process id and the address of its end of every pair.
std::string IdentityKey(int rank) { return absl::StrCat("identity/", rank); }

class GlooCollective : public Collective {
 public:
  GlooCollective(const CollectiveOptions& options, std::shared_ptr<gloo::rendezvous::FileStore> store,
                 std::shared_ptr<gloo::Context> context)
      : options_(options), store_(std::move(store)), context_(std::move(context)) {}

  int rank() const override { return options_.rank; }
  int size() const override { return options_.size; }
  Memory memory() const override { return Memory::kHost; }
  std::string engine() const override { return "gloo"; }

  absl::Status AllReduceSum(absl::Span<float> data) override { return AllReduceT(data); }
  absl::Status AllReduceSum(absl::Span<double> data) override { return AllReduceT(data); }

  absl::Status ReduceScatterSum(absl::Span<float> data, absl::Span<const size_t> counts) override {
    GRPO_RETURN_IF_ERROR(CheckCounts("reduce_scatter", data.size(), counts));
    // Gloo 0.5's reduce-scatter (ReduceScatterHalvingDoubling) returns wrong sums for short
    // buffers (seen with 7 elements on 3 and 4 ranks), so this is Gloo's ring all-reduce: the
    // same shard values, with twice the traffic of a true reduce-scatter.
    return AllReduceT(data);
  }

  absl::Status AllGather(absl::Span<float> data, absl::Span<const size_t> counts) override {
    GRPO_RETURN_IF_ERROR(CheckCounts("all_gather", data.size(), counts));
    if (size() == 1 || data.empty()) return Run("all_gather", [] {});
    return Run("all_gather", [&] {
      gloo::AllgathervOptions opts(context_);
      opts.setOutput(data.data(), std::vector<size_t>(counts.begin(), counts.end()));
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::allgatherv(opts);  // no input given: in place, this rank's shard is already there
    });
  }

  absl::Status Broadcast(absl::Span<float> data, int root) override { return BroadcastT(data, root); }
  absl::Status Broadcast(absl::Span<uint8_t> data, int root) override {
    return BroadcastT(data, root);
  }

  absl::Status Barrier() override {
    return Run("barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::barrier(opts);
    });
  }

 private:
  template <class T>
  absl::Status AllReduceT(absl::Span<T> data) {
    if (size() == 1 || data.empty()) return Run("all_reduce", [] {});
    return Run("all_reduce", [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data.data(), data.size());  // in place
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::allreduce(opts);
    });
  }

  template <class T>
  absl::Status BroadcastT(absl::Span<T> data, int root) {
    if (root < 0 || root >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("collective broadcast: root ", root, " outside 0..", size() - 1));
    }
    if (size() == 1 || data.empty()) return Run("broadcast", [] {});
    return Run("broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(data.data(), data.size());
      opts.setRoot(root);
      opts.setTag(NextTag());
      opts.setTimeout(ToChrono(options_.timeout));
      gloo::broadcast(opts);
    });
  }

  absl::Status CheckCounts(const char* op, size_t n, absl::Span<const size_t> counts) const {
    if (counts.size() != static_cast<size_t>(size())) {
      return absl::InvalidArgumentError(absl::StrCat("collective ", op, ": ", counts.size(),
                                                     " shard counts for ", size(), " ranks"));
    }
    size_t total = 0;
    for (size_t c : counts) total += c;
    if (total != n) {
      return absl::InvalidArgumentError(absl::StrCat("collective ", op, ": shard counts sum to ",
                                                     total, " but the buffer has ", n));
    }
    if (n > static_cast<size_t>(INT32_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat("collective ", op, ": ", n, " elements exceed 2^31-1; split the call"));
    }
    return absl::OkStatus();
  }

  uint32_t NextTag() { return next_tag_++; }

  // Runs one Gloo call, turning its exceptions into a Status that names the peer that failed.
  template <class F>
  absl::Status Run(const char* op, F&& call) {
    if (!broken_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("collective ", op, ": group already failed: ", broken_.message()));
    }
    try {
      call();
      return absl::OkStatus();
    } catch (const gloo::Exception& e) {
      broken_ = Failure(op, e.what());
      return broken_;
    }
  }

  absl::Status Failure(const char* op, const std::string& what) const;

  CollectiveOptions options_;
  std::shared_ptr<gloo::rendezvous::FileStore> store_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t next_tag_ = 1;
  absl::Status broken_;
};

struct Identity {
  std::string host;  // host name
  std::string ip;    // the address this rank listens on, as Gloo prints it
  pid_t pid = 0;
};

Identity ParseIdentity(const std::vector<char>& bytes) {
  Identity id;
  std::vector<std::string> fields = absl::StrSplit(std::string(bytes.begin(), bytes.end()), '\n');
  if (fields.size() == 3) {
    id.host = fields[0];
    id.ip = fields[1];
    id.pid = static_cast<pid_t>(std::atol(fields[2].c_str()));
  }
  return id;
}

// True when process `pid` of this host has exited (gone, or a zombie not yet reaped).
bool ProcessGone(pid_t pid) {
  std::string stat;
  FILE* f = fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "r");
  if (f == nullptr) return true;
  char buf[512];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  const char* close_paren = strrchr(buf, ')');  // "pid (comm) S ..."
  return close_paren != nullptr && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

// Which peers failed: those on this host whose process has exited; failing that, the peer on
// another host whose address appears in Gloo's message (when only one rank lives there).
std::vector<int> FailedPeers(gloo::rendezvous::FileStore& store, int self, int size,
                             const std::string& what) {
  const std::string host = ThisHostName();
  std::vector<int> gone, named;
  std::map<std::string, int> ranks_at_ip;
  for (int r = 0; r < size; ++r) {
    if (r == self) continue;
    Identity id;
    try {
      id = ParseIdentity(store.get(IdentityKey(r)));
    } catch (const std::exception&) {
      continue;
    }
    if (id.host == host && id.pid > 0 && ProcessGone(id.pid)) gone.push_back(r);
    if (!id.ip.empty() && what.find("[" + id.ip + "]") != std::string::npos) named.push_back(r);
  }
  if (!gone.empty()) return gone;
  return named.size() == 1 ? named : std::vector<int>{};
}

absl::Status GlooCollective::Failure(const char* op, const std::string& what) const {
  std::string who;
  for (int peer : FailedPeers(*store_, rank(), size(), what)) {
    absl::StrAppend(&who, "peer rank ", peer, " is gone; ");
  }
  if (who.empty()) who = "a peer rank failed or timed out; ";
  const std::string msg = absl::StrCat("collective ", op, " on rank ", rank(), " of ", size(),
                                       " (gloo, timeout ", absl::FormatDuration(options_.timeout),
                                       "): ", who, what);
  if (what.find("imed out") != std::string::npos) return absl::DeadlineExceededError(msg);
  return absl::UnavailableError(msg);
}

absl::Status EnsureDirectory(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + path, errno);
  return absl::OkStatus();
}

// "host\nip\npid": what peers need to name this rank after a failure.
std::string DescribeIdentity(const std::string& listen_host) {
  return absl::StrCat(ThisHostName(), "\n", listen_host, "\n", getpid());
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> ConnectGloo(const CollectiveOptions& options) {
  GRPO_RETURN_IF_ERROR(ValidateCollectiveOptions(options));
  const std::string dir = options.rendezvous_dir + "/" + options.group;
  GRPO_RETURN_IF_ERROR(EnsureDirectory(options.rendezvous_dir));
  GRPO_RETURN_IF_ERROR(EnsureDirectory(dir));
  const std::string where = absl::StrCat("collective: rank ", options.rank, " of ", options.size,
                                         " joining gloo group in ", dir);
  try {
    auto store = std::make_shared<gloo::rendezvous::FileStore>(dir);
    gloo::transport::tcp::attr attr;
    attr.hostname = options.host.empty() ? ThisHostName() : options.host;
    const std::string listen_ip = ListenIp(attr.hostname);
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.size);
    context->setTimeout(ToChrono(options.timeout));
    context->connectFullMesh(*store, device);
    store->set(IdentityKey(options.rank), ToBytes(DescribeIdentity(listen_ip)));
    return std::unique_ptr<Collective>(new GlooCollective(options, store, context));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(where, ": ", e.what()));
  }
}

}  // namespace grpo
