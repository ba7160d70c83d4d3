// Sandboxed runs per second next to plain process starts of the same program, in one run:
//   plain   posix_spawn + waitpid of the program (no isolation; the peer)
//   cold    sandbox::Run: namespaces, file system and the program, per run
//   warm    sandbox::Pool::Run: the program in a pre-built sandbox (the pool refills behind)
// Usage: sandbox_bench [runs] [program args...]   (default: 50 runs of /usr/bin/python3 -I -c pass)
//        sandbox_bench --cpp [runs] [source.cpp]  (default: a small stdin-reading C++ program)
// --cpp measures a compiled C++ program the way the code rule runs it: compiled once (the time
// of g++ on the host and inside a sandbox is printed apart), then plain starts of the binary
// file against sandboxed runs that each get a sealed memfd of the binary with the job
// (descriptor 3; its creation is part of the run's time).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "sandbox/pool.h"
#include "sandbox/sandbox.h"

extern char** environ;

namespace {

namespace sb = grpo::sandbox;

constexpr char kDefaultCpp[] =
    "#include <iostream>\n"
    "int main() {\n"
    "  std::ios::sync_with_stdio(false);\n"
    "  long long a = 0, b = 0;\n"
    "  std::cin >> a >> b;\n"
    "  std::cout << a + b << '\\n';\n"
    "}\n";

double PerSecond(int runs, absl::Duration d) { return runs / absl::ToDoubleSeconds(d); }

// posix_spawn of argv with stdin and stdout on /dev/null (stderr kept); true when it exits 0.
bool Plain(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int err = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return false;
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

bool SandboxedOk(const absl::StatusOr<sb::Result>& r) {
  if (!r.ok()) std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
  else if (r->exit_code != 0) std::fprintf(stderr, "exit %d: %s\n", r->exit_code, r->stderr_data.c_str());
  return r.ok() && r->exit_code == 0;
}

// Runs the three ways interleaved, so that load changes hit all three alike, and prints them.
int Measure(const std::string& name, int runs, const std::function<bool()>& plain,
            const std::function<bool()>& cold, const std::function<bool()>& warm) {
  absl::Duration took[3];
  const std::function<bool()>* ways[3] = {&plain, &cold, &warm};
  const char* labels[3] = {"plain process start", "sandbox, cold", "sandbox, warm pool"};
  for (int i = 0; i < runs; ++i) {
    for (int w = 0; w < 3; ++w) {
      absl::Time t0 = absl::Now();
      if (!(*ways[w])()) return std::fprintf(stderr, "%s run failed\n", labels[w]), 1;
      took[w] += absl::Now() - t0;
    }
  }
  std::printf("program: %s (%d runs each, interleaved)\n", name.c_str(), runs);
  for (int w = 0; w < 3; ++w) {
    std::printf("%-20s: %7.1f runs/s  %8.2f ms/run\n", labels[w], PerSecond(runs, took[w]),
                absl::ToDoubleMilliseconds(took[w] / runs));
  }
  return 0;
}

int BenchProgram(int runs, const std::vector<std::string>& program) {
  sb::Job job;
  job.argv = program;
  sb::Config config;
  sb::Pool pool(config, 4);
  return Measure(
      program[0], runs, [&] { return Plain(program); },
      [&] { return SandboxedOk(sb::Run(config, job)); }, [&] { return SandboxedOk(pool.Run(job)); });
}

// Compiles `source` with g++ inside a sandbox as the code rule does; the binary, or "" on failure.
std::string CompileSandboxed(const std::string& source) {
  sb::Config config;
  config.scratch_bytes = uint64_t{256} << 20;
  sb::Job job;
  job.argv = {"/bin/sh", "-c", "cat > prog.cpp && g++ -std=c++17 -O2 -pipe -o prog prog.cpp 1>&2 && cat prog"};
  job.stdin_data = source;
  job.deadline = absl::Seconds(120);
  job.limits.cpu_seconds = 120;
  job.limits.address_space_bytes = uint64_t{2} << 30;
  job.limits.processes = 16;
  job.stdout_cap = size_t{64} << 20;
  absl::StatusOr<sb::Result> r = sb::Run(config, job);
  if (!SandboxedOk(r)) return "";
  return r->stdout_data;
}

int BenchCpp(int runs, const std::string& source) {
  char dir[] = "/tmp/sandbox-bench-XXXXXX";
  if (!mkdtemp(dir)) return std::perror("mkdtemp"), 1;
  const std::string src = std::string(dir) + "/prog.cpp", bin = std::string(dir) + "/prog";
  std::ofstream(src) << source;
  absl::Time t0 = absl::Now();
  if (!Plain({"/usr/bin/g++", "-std=c++17", "-O2", "-pipe", "-o", bin, src}))
    return std::fprintf(stderr, "g++ failed\n"), 1;
  absl::Time t1 = absl::Now();
  std::string binary = CompileSandboxed(source);
  absl::Time t2 = absl::Now();
  if (binary.empty()) return std::fprintf(stderr, "sandboxed g++ failed\n"), 1;
  std::printf("compile (g++ -std=c++17 -O2, once): plain %.0f ms, in a sandbox %.0f ms\n",
              absl::ToDoubleMilliseconds(t1 - t0), absl::ToDoubleMilliseconds(t2 - t1));

  // As the code rule: a sealed copy of the binary per run, descriptor 3 of the program.
  sb::Job job;
  job.argv = {"/proc/self/fd/3"};
  job.stdin_data = "1 2\n";
  auto run_sealed = [&](const std::function<absl::StatusOr<sb::Result>(sb::Job)>& run) {
    absl::StatusOr<int> memfd = sb::SealedMemfd(binary);
    if (!memfd.ok()) return false;
    sb::Job with_binary = job;
    with_binary.fds = {{*memfd, 3}};
    bool ok = SandboxedOk(run(with_binary));
    close(*memfd);
    return ok;
  };
  sb::Pool pool(sb::Config(), 4);
  int rc = Measure(
      "C++ binary (" + std::to_string(binary.size()) + " bytes)", runs, [&] { return Plain({bin}); },
      [&] { return run_sealed([](sb::Job j) { return sb::Run(sb::Config(), j); }); },
      [&] { return run_sealed([&](sb::Job j) { return pool.Run(j); }); });
  unlink(src.c_str());
  unlink(bin.c_str());
  rmdir(dir);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--cpp") == 0) {
    int runs = argc > 2 ? std::atoi(argv[2]) : 50;
    std::string source = kDefaultCpp;
    if (argc > 3) {
      std::stringstream text;
      text << std::ifstream(argv[3]).rdbuf();
      source = text.str();
    }
    return BenchCpp(runs, source);
  }
  int runs = argc > 1 ? std::atoi(argv[1]) : 50;
  std::vector<std::string> program = {"/usr/bin/python3", "-I", "-c", "pass"};
  if (argc > 2) program.assign(argv + 2, argv + argc);
  return BenchProgram(runs, program);
}
