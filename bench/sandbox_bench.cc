// Sandboxed runs per second next to plain process starts of the same program, in one run:
//   plain   posix_spawn + waitpid of the program (no isolation; the peer)
//   cold    sandbox::Run: namespaces, file system and the program, per run
//   warm    sandbox::Pool::Run: the program in a pre-built sandbox (the pool refills behind)
// Usage: sandbox_bench [runs] [program args...]   (default: 50 runs of /usr/bin/python3 -I -c pass)
#include <spawn.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "sandbox/pool.h"
#include "sandbox/sandbox.h"

extern char** environ;

namespace {

double PerSecond(int runs, absl::Duration d) { return runs / absl::ToDoubleSeconds(d); }

bool Plain(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return false;
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::atoi(argv[1]) : 50;
  std::vector<std::string> program = {"/usr/bin/python3", "-I", "-c", "pass"};
  if (argc > 2) program.assign(argv + 2, argv + argc);
  grpo::sandbox::Job job;
  job.argv = program;
  grpo::sandbox::Config config;
  grpo::sandbox::Pool pool(config, 4);

  absl::Duration plain, cold, warm;
  for (int i = 0; i < runs; ++i) {  // interleaved, so load changes hit all three alike
    absl::Time t0 = absl::Now();
    if (!Plain(program)) return std::fprintf(stderr, "plain run failed\n"), 1;
    absl::Time t1 = absl::Now();
    auto c = grpo::sandbox::Run(config, job);
    absl::Time t2 = absl::Now();
    if (!c.ok() || c->exit_code != 0) return std::fprintf(stderr, "cold run failed\n"), 1;
    auto w = pool.Run(job);
    absl::Time t3 = absl::Now();
    if (!w.ok() || w->exit_code != 0) return std::fprintf(stderr, "warm run failed\n"), 1;
    plain += t1 - t0;
    cold += t2 - t1;
    warm += t3 - t2;
  }
  std::printf("program: %s (%d runs each, interleaved)\n", program[0].c_str(), runs);
  std::printf("plain process start : %7.1f runs/s  %8.2f ms/run\n", PerSecond(runs, plain), absl::ToDoubleMilliseconds(plain / runs));
  std::printf("sandbox, cold       : %7.1f runs/s  %8.2f ms/run\n", PerSecond(runs, cold), absl::ToDoubleMilliseconds(cold / runs));
  std::printf("sandbox, warm pool  : %7.1f runs/s  %8.2f ms/run\n", PerSecond(runs, warm), absl::ToDoubleMilliseconds(warm / runs));
  return 0;
}
