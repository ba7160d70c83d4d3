#include "collective/collective_test_lib.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace grpo::testing_collective {
namespace {

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

float IntPattern(int rank, size_t i) { return static_cast<float>((rank + 1) * (i % 101 + 1)); }
double FractionPattern(int rank, size_t i) {
  return (rank + 1) * 0.125 * (static_cast<double>(i % 37) - 18.0);
}

std::string Mismatch(const char* op, size_t len, size_t i, double got, double want) {
  return absl::StrCat(op, " length ", len, " element ", i, ": got ", got, " want ", want);
}

std::string CheckAllReduce(Collective& c, size_t len) {
  const int n = c.size();
  std::vector<float> f(len);
  std::vector<double> d(len);
  for (size_t i = 0; i < len; ++i) f[i] = IntPattern(c.rank(), i), d[i] = FractionPattern(c.rank(), i);
  if (auto s = c.AllReduceSum(absl::MakeSpan(f)); !s.ok()) return std::string(s.message());
  if (auto s = c.AllReduceSum(absl::MakeSpan(d)); !s.ok()) return std::string(s.message());
  for (size_t i = 0; i < len; ++i) {
    const double want_f = n * (n + 1) / 2.0 * (i % 101 + 1);
    const double want_d = n * (n + 1) / 2.0 * 0.125 * (static_cast<double>(i % 37) - 18.0);
    if (f[i] != want_f) return Mismatch("all_reduce f32", len, i, f[i], want_f);
    if (d[i] != want_d) return Mismatch("all_reduce f64", len, i, d[i], want_d);
  }
  return "";
}

std::string CheckReduceScatter(Collective& c, size_t len, const std::vector<size_t>& counts) {
  const int n = c.size();
  std::vector<float> f(len);
  for (size_t i = 0; i < len; ++i) f[i] = IntPattern(c.rank(), i);
  if (auto s = c.ReduceScatterSum(absl::MakeSpan(f), counts); !s.ok()) return std::string(s.message());
  const size_t begin = ShardOffset(counts, c.rank());
  for (size_t i = begin; i < begin + counts[c.rank()]; ++i) {
    const double want = n * (n + 1) / 2.0 * (i % 101 + 1);
    if (f[i] != want) return Mismatch("reduce_scatter", len, i, f[i], want);
  }
  return "";
}

std::string CheckAllGather(Collective& c, size_t len, const std::vector<size_t>& counts) {
  std::vector<float> f(len, -1.0f);
  const size_t begin = ShardOffset(counts, c.rank());
  for (size_t i = begin; i < begin + counts[c.rank()]; ++i) f[i] = IntPattern(c.rank(), i);
  if (auto s = c.AllGather(absl::MakeSpan(f), counts); !s.ok()) return std::string(s.message());
  for (int r = 0; r < c.size(); ++r) {
    const size_t b = ShardOffset(counts, r);
    for (size_t i = b; i < b + counts[r]; ++i) {
      if (f[i] != IntPattern(r, i)) return Mismatch("all_gather", len, i, f[i], IntPattern(r, i));
    }
  }
  return "";
}

std::string CheckBroadcast(Collective& c, size_t len) {
  const int root = c.size() - 1;
  std::vector<float> f(len);
  std::vector<uint8_t> b(len);
  for (size_t i = 0; i < len; ++i) {
    f[i] = IntPattern(c.rank(), i);
    b[i] = static_cast<uint8_t>(c.rank() == 0 ? i * 7 : 0);
  }
  if (auto s = c.Broadcast(absl::MakeSpan(f), root); !s.ok()) return std::string(s.message());
  if (auto s = c.Broadcast(absl::MakeSpan(b), 0); !s.ok()) return std::string(s.message());
  for (size_t i = 0; i < len; ++i) {
    if (f[i] != IntPattern(root, i)) return Mismatch("broadcast f32", len, i, f[i], IntPattern(root, i));
    if (b[i] != static_cast<uint8_t>(i * 7)) return Mismatch("broadcast u8", len, i, b[i], i * 7 % 256);
  }
  return "";
}

// Shards where the last rank owns nothing and the first owns the rest of the odd remainder.
std::vector<size_t> SkewedShards(size_t len, int n) {
  std::vector<size_t> counts = EvenShards(len, n);
  if (n > 1) counts[0] += counts[n - 1], counts[n - 1] = 0;
  return counts;
}

}  // namespace

std::vector<RankResult> RunRanks(int size, const std::function<std::string(int rank)>& body) {
  std::vector<pid_t> pids(size);
  std::vector<int> pipes(size);
  for (int r = 0; r < size; ++r) {
    int fds[2];
    if (pipe(fds) != 0) abort();
    pids[r] = fork();
    if (pids[r] == 0) {
      close(fds[0]);
      const std::string error = body(r);
      if (!error.empty() && write(fds[1], error.data(), error.size()) < 0) _exit(2);
      _exit(error.empty() ? 0 : 1);
    }
    close(fds[1]);
    pipes[r] = fds[0];
  }
  std::vector<RankResult> results(size);
  for (int r = 0; r < size; ++r) {
    results[r].output = ReadAll(pipes[r]);
    close(pipes[r]);
    int status = 0;
    waitpid(pids[r], &status, 0);
    results[r].exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return results;
}

CollectiveOptions LoopbackOptions(const std::string& rendezvous_dir, int rank, int size) {
  CollectiveOptions o;
  o.rank = rank;
  o.size = size;
  o.rendezvous_dir = rendezvous_dir;
  o.host = "127.0.0.1";
  return o;
}

std::string FreshDirectory(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/", name, "-", getpid());
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) abort();
  mkdir(dir.c_str(), 0755);
  return dir;
}

std::string CheckEveryCollective(Collective& c) {
  for (size_t len : {1, 7, 1001, 300007}) {
    std::string e = CheckAllReduce(c, len);
    if (e.empty()) e = CheckReduceScatter(c, len, EvenShards(len, c.size()));
    if (e.empty()) e = CheckReduceScatter(c, len, SkewedShards(len, c.size()));
    if (e.empty()) e = CheckAllGather(c, len, EvenShards(len, c.size()));
    if (e.empty()) e = CheckAllGather(c, len, SkewedShards(len, c.size()));
    if (e.empty()) e = CheckBroadcast(c, len);
    if (e.empty() && !c.Barrier().ok()) e = "barrier failed";
    if (!e.empty()) return absl::StrCat("rank ", c.rank(), " of ", c.size(), ": ", e);
  }
  return "";
}

std::string ExpectPeerFailure(Collective& c, int peer) {
  std::vector<float> f(1024, 1.0f);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    absl::Status s = c.AllReduceSum(absl::MakeSpan(f));
    if (s.ok()) continue;
    const std::string msg(s.message());
    if (msg.find(absl::StrCat("peer rank ", peer)) == std::string::npos) {
      return "failure does not name peer rank " + std::to_string(peer) + ": " + msg;
    }
    if (c.Barrier().code() != absl::StatusCode::kFailedPrecondition) {
      return "a call after the failure did not report the broken group";
    }
    return "";
  }
  return "1000 all-reduces succeeded with a peer gone";
}

}  // namespace grpo::testing_collective
