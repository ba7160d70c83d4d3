#include "cli/local_ranks.h"

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "collective/gloo_collective.h"
#include "core/status.h"

namespace grpo::cli {
namespace {

std::vector<pid_t> g_ranks;  // for the signal handler

extern "C" void ForwardSignal(int sig) {
  for (pid_t pid : g_ranks) kill(pid, sig);
}

// This process's argv without --nproc N / --nproc=N.
absl::StatusOr<std::vector<std::string>> ArgvWithoutNproc() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (all.empty()) return absl::InternalError("cannot read /proc/self/cmdline");
  std::vector<std::string> args;
  size_t at = 0;
  while (at < all.size()) {
    const size_t end = all.find('\0', at);
    args.push_back(all.substr(at, end - at));
    at = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

pid_t StartRank(const std::vector<std::string>& args, int rank, int nproc, const std::string& dir) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  setenv("GRPO_RANK", std::to_string(rank).c_str(), 1);
  setenv("GRPO_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
  setenv("GRPO_RENDEZVOUS_DIR", dir.c_str(), 1);
  setenv("GRPO_COLLECTIVE_HOST", "127.0.0.1", 1);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "rank %d: exec failed\n", rank);
  _exit(127);
}

std::string Describe(int status) {
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("exited with status ", WEXITSTATUS(status));
}

absl::StatusOr<int> EnvInt(const char* name) {
  const char* v = std::getenv(name);
  int out = 0;
  if (v == nullptr || !absl::SimpleAtoi(v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "='", v ? v : "", "' is not an integer"));
  }
  return out;
}

// The ranks still running after one has failed: SIGTERM once `grace` has passed since the
// failure, SIGKILL 5 s after that. Returns when all have been reaped, with a note in `stopped`
// for each rank it signalled.
void StopSurvivors(absl::Time failed_at, absl::Duration grace, std::vector<int>* status,
                   std::vector<bool>* running, std::vector<std::string>* stopped) {
  constexpr absl::Duration kKillAfterTerm = absl::Seconds(5);
  bool termed = false, killed = false;
  for (;;) {
    bool any = false;
    for (size_t r = 0; r < g_ranks.size(); ++r) {
      if (!(*running)[r]) continue;
      int st = 0;
      const pid_t got = waitpid(g_ranks[r], &st, WNOHANG);
      if (got == g_ranks[r]) {
        (*running)[r] = false;
        (*status)[r] = st;
      } else {
        any = true;
      }
    }
    if (!any) return;
    const absl::Duration since = absl::Now() - failed_at;
    int sig = 0;
    if (!termed && since >= grace) sig = SIGTERM;
    if (termed && !killed && since >= grace + kKillAfterTerm) sig = SIGKILL;
    if (sig != 0) {
      for (size_t r = 0; r < g_ranks.size(); ++r) {
        if (!(*running)[r]) continue;
        kill(g_ranks[r], sig);
        (*stopped)[r] = absl::StrCat(" (the launcher sent it ", sig == SIGTERM ? "SIGTERM" : "SIGKILL", " ",
                                     absl::FormatDuration(absl::Trunc(since, absl::Milliseconds(100))),
                                     " after the first rank failed)");
      }
      (sig == SIGTERM ? termed : killed) = true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace

absl::Status RunLocalRanks(int nproc, absl::Duration failure_grace) {
  if (nproc < 1 || nproc > 256) return absl::InvalidArgumentError("--nproc must be in 1..256");
  GRPO_ASSIGN_OR_RETURN(std::vector<std::string> args, ArgvWithoutNproc());
  std::string tmpl = (std::filesystem::temp_directory_path() / "grpo-ranks.XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return ErrnoError("mkdtemp " + tmpl, errno);
  const std::string dir = tmpl;
  for (int r = 0; r < nproc; ++r) g_ranks.push_back(StartRank(args, r, nproc, dir));
  auto old_term = std::signal(SIGTERM, ForwardSignal);
  auto old_int = std::signal(SIGINT, ForwardSignal);
  std::vector<int> status(nproc, 0);
  std::vector<bool> running(nproc, true);
  std::vector<std::string> stopped(nproc);
  // Until a rank fails, block on whichever rank ends next; then the others get `failure_grace`
  // to end by themselves before they are stopped.
  for (int left = nproc; left > 0;) {
    int st = 0;
    const pid_t pid = waitpid(-1, &st, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: no child left
    }
    const auto it = std::find(g_ranks.begin(), g_ranks.end(), pid);
    if (it == g_ranks.end()) continue;
    const size_t r = it - g_ranks.begin();
    running[r] = false;
    status[r] = st;
    --left;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      StopSurvivors(absl::Now(), failure_grace, &status, &running, &stopped);
      break;
    }
  }
  std::vector<std::string> failures;
  for (int r = 0; r < nproc; ++r) {
    if (!WIFEXITED(status[r]) || WEXITSTATUS(status[r]) != 0) {
      failures.push_back(absl::StrCat("rank ", r, " ", Describe(status[r]), stopped[r]));
    }
  }
  std::signal(SIGTERM, old_term);
  std::signal(SIGINT, old_int);
  g_ranks.clear();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (failures.empty()) return absl::OkStatus();
  return absl::AbortedError(absl::StrCat(nproc, " local ranks: ", absl::StrJoin(failures, "; ")));
}

absl::StatusOr<std::unique_ptr<Collective>> JoinRanksFromEnvironment(absl::Duration timeout) {
  if (std::getenv("GRPO_WORLD_SIZE") == nullptr) return std::unique_ptr<Collective>();
  GRPO_ASSIGN_OR_RETURN(int size, EnvInt("GRPO_WORLD_SIZE"));
  if (size == 1) return std::unique_ptr<Collective>();
  CollectiveOptions o;
  o.size = size;
  GRPO_ASSIGN_OR_RETURN(o.rank, EnvInt("GRPO_RANK"));
  const char* dir = std::getenv("GRPO_RENDEZVOUS_DIR");
  if (dir == nullptr || *dir == 0) {
    return absl::InvalidArgumentError("GRPO_WORLD_SIZE is set but GRPO_RENDEZVOUS_DIR is not");
  }
  o.rendezvous_dir = dir;
  if (const char* host = std::getenv("GRPO_COLLECTIVE_HOST")) o.host = host;
  o.timeout = timeout;
  return ConnectGloo(o);
}

}  // namespace grpo::cli
