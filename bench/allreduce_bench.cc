// All-reduce bandwidth on loopback: our collective layer (ConnectGloo + AllReduceSum) against
// the same Gloo call made directly (gloo::allreduce, ring, in place, on a context built the way
// Gloo's own examples do) and against memcpy of the same bytes, side by side in one run.
//   allreduce_bench [RANKS] [REPEATS]
// Forks RANKS processes (default 2); rank 0 prints one line per buffer size with the median
// time of each and the ratios. Bandwidth is the buffer's bytes over the time (algorithm
// bandwidth, as nccl-tests name it).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "collective/gloo_collective.h"
#include "gloo/allreduce.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/transport/tcp/device.h"

namespace grpo {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double Seconds(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::shared_ptr<gloo::Context> DirectGlooContext(const std::string& dir, int rank, int size) {
  gloo::rendezvous::FileStore store(dir);
  gloo::transport::tcp::attr attr;
  attr.hostname = "127.0.0.1";
  auto device = gloo::transport::tcp::CreateDevice(attr);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
  context->connectFullMesh(store, device);
  return context;
}

void DirectAllReduce(const std::shared_ptr<gloo::Context>& context, std::vector<float>& data,
                     uint32_t tag) {
  gloo::AllreduceOptions opts(context);
  opts.setOutput(data.data(), data.size());
  opts.setReduceFunction(
      static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
  opts.setTag(tag);
  gloo::allreduce(opts);
}

int RunRank(const std::string& dir, int rank, int size, int repeats) {
  CollectiveOptions o;
  o.rank = rank;
  o.size = size;
  o.rendezvous_dir = dir;
  o.group = "ours";
  o.host = "127.0.0.1";
  auto ours = ConnectGloo(o);
  if (!ours.ok()) {
    fprintf(stderr, "rank %d: %s\n", rank, std::string(ours.status().message()).c_str());
    return 1;
  }
  const std::string direct_dir = dir + "/direct";
  mkdir(direct_dir.c_str(), 0755);
  auto direct = DirectGlooContext(direct_dir, rank, size);
  if (rank == 0) {
    printf("%-10s %12s %12s %9s %12s %11s\n", "bytes", "ours GB/s", "gloo GB/s", "ours/gloo",
           "memcpy GB/s", "ours/memcpy");
  }
  uint32_t tag = 1;
  for (size_t n : {size_t{256}, size_t{16384}, size_t{262144}, size_t{4194304}, size_t{16777216}}) {
    std::vector<float> a(n, 1.0f), b(n, 1.0f), src(n, 2.0f);
    std::vector<double> t_ours, t_direct, t_memcpy;
    for (int r = 0; r < repeats + 1; ++r) {  // the first round warms up and is dropped
      // Alternate which of the two goes first, so neither always meets a warmer cache or a
      // peer that is already waiting.
      double to = 0, td = 0;
      auto run_ours = [&] {
        to = Seconds([&] {
          if (!(*ours)->AllReduceSum(absl::MakeSpan(a)).ok()) abort();
        });
      };
      auto run_direct = [&] { td = Seconds([&] { DirectAllReduce(direct, b, tag++); }); };
      if (r % 2 == 0) run_ours(), run_direct();
      else run_direct(), run_ours();
      double tm = Seconds([&] { std::memcpy(a.data(), src.data(), n * sizeof(float)); });
      if (r > 0) t_ours.push_back(to), t_direct.push_back(td), t_memcpy.push_back(tm);
    }
    const double bytes = n * sizeof(float);
    const double go = bytes / Median(t_ours) / 1e9, gd = bytes / Median(t_direct) / 1e9,
                 gm = bytes / Median(t_memcpy) / 1e9;
    if (rank == 0) {
      printf("%-10.0f %12.4f %12.4f %9.2f %12.3f %11.4f\n", bytes, go, gd, go / gd, gm, go / gm);
      fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace grpo

int main(int argc, char** argv) {
  const int ranks = argc > 1 ? std::atoi(argv[1]) : 2;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  if (ranks < 1 || ranks > 64 || repeats < 1) {
    fprintf(stderr, "usage: allreduce_bench [RANKS 1..64] [REPEATS >= 1]\n");
    return 2;
  }
  char tmpl[] = "/tmp/allreduce_bench.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  printf("all-reduce sum f32, %d ranks on loopback (gloo tcp), median of %d\n", ranks, repeats);
  fflush(stdout);
  std::vector<pid_t> pids;
  for (int r = 0; r < ranks; ++r) {
    pid_t pid = fork();
    if (pid == 0) _exit(grpo::RunRank(dir, r, ranks, repeats));
    pids.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::system(("rm -rf '" + dir + "'").c_str());
  return failed == 0 ? 0 : 1;
}
