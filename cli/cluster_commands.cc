#include "cli/cluster_commands.h"

#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/subcommand.h"
#include "core/file.h"
#include "deploy/slurm_job.h"
#include "learner/recipe.h"
#include "proto/reward.grpc.pb.h"
#include "proto/rollout.grpc.pb.h"

namespace grpo::cli {
namespace {

namespace fs = std::filesystem;

std::string Tool(const char* env, const char* name) {
  const char* v = std::getenv(env);
  return v != nullptr && *v != '\0' ? v : name;
}

// Runs argv through the shell (stdout captured, stderr passed through); fails naming the
// command when it cannot start or exits non-zero.
absl::StatusOr<std::string> Capture(const std::vector<std::string>& argv) {
  std::string cmd;
  for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + deploy::ShellQuote(a);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::UnknownError("cannot run " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    const int code = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 127) return absl::NotFoundError(argv[0] + " not found (is Slurm installed and on PATH?)");
    return absl::UnavailableError(cmd + " failed (exit " + std::to_string(code) + ")");
  }
  return out;
}

std::string SelfPath() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("grpo") : p.string();
}

// ---------------------------------------------------------------- submit

struct SubmitArgs {
  std::string cluster = "slurm", recipe;
  std::vector<std::string> sets;
  bool dry_run = false;
};

absl::Status RunSubmit(const SubmitArgs& a) {
  if (a.cluster != "slurm") return absl::InvalidArgumentError("--cluster: only 'slurm' is supported, got '" + a.cluster + "'");
  GRPO_ASSIGN_OR_RETURN(TrainRecipe recipe, LoadRecipe(a.recipe, a.sets));
  GRPO_ASSIGN_OR_RETURN(deploy::SlurmJobSpec spec, deploy::SlurmJobFromRecipe(recipe, SelfPath()));
  if (a.dry_run) {
    std::fputs(deploy::RenderSbatch(spec).c_str(), stdout);
    return absl::OkStatus();
  }
  if (fs::exists(spec.run_dir + "/checkpoints/latest")) {
    std::fprintf(stderr, "grpo submit: %s has a checkpoint: the job resumes from it\n", spec.run_dir.c_str());
  }
  GRPO_ASSIGN_OR_RETURN(std::string script, deploy::WriteJobFiles(spec, recipe));
  GRPO_ASSIGN_OR_RETURN(std::string out, Capture({Tool("SBATCH", "sbatch"), "--parsable", script}));
  std::string id = out.substr(0, out.find_first_of(";\n"));
  if (id.empty()) return absl::UnavailableError("sbatch printed no job id for " + script);
  std::fprintf(stderr, "grpo submit: %s submitted; job directory %s (logs in logs/)\n", script.c_str(),
               spec.job_dir.c_str());
  std::printf("%s\n", id.c_str());
  return absl::OkStatus();
}

// ---------------------------------------------------------------- jobs

std::string JobDirFromComment(const std::string& comment) {
  return absl::StartsWith(comment, "grpo:") ? comment.substr(5) : "";
}

absl::Status RunJobs(bool json) {
  GRPO_ASSIGN_OR_RETURN(std::string out,
                        Capture({Tool("SQUEUE", "squeue"), "--me", "--noheader", "--format=%i|%j|%T|%M|%D|%R|%k"}));
  nlohmann::json rows = nlohmann::json::array();
  std::stringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, '|');
    if (f.size() < 7 || !absl::StartsWith(f[1], "grpo-")) continue;
    rows.push_back({{"job_id", f[0]}, {"name", f[1]}, {"state", f[2]}, {"elapsed", f[3]}, {"nodes", f[4]},
                    {"reason", f[5]}, {"job_dir", JobDirFromComment(f[6])}});
  }
  if (json) {
    std::printf("%s\n", rows.dump(2).c_str());
    return absl::OkStatus();
  }
  std::printf("%-10s %-28s %-12s %-12s %-6s %s\n", "JOB", "NAME", "STATE", "ELAPSED", "NODES", "JOB DIR");
  for (const auto& r : rows) {
    std::printf("%-10s %-28s %-12s %-12s %-6s %s\n", r["job_id"].get<std::string>().c_str(),
                r["name"].get<std::string>().c_str(), r["state"].get<std::string>().c_str(),
                r["elapsed"].get<std::string>().c_str(), r["nodes"].get<std::string>().c_str(),
                r["job_dir"].get<std::string>().c_str());
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- logs

absl::StatusOr<std::string> FindJobDir(const std::string& job) {
  auto shown = Capture({Tool("SCONTROL", "scontrol"), "--oneliner", "show", "job", job});
  if (shown.ok()) {
    const size_t at = shown->find("Comment=grpo:");
    if (at != std::string::npos) {
      const size_t start = at + std::string("Comment=grpo:").size();
      return shown->substr(start, shown->find_first_of(" \n", start) - start);
    }
  }
  auto acct = Capture({Tool("SACCT", "sacct"), "-j", job, "-X", "-n", "-P", "-o", "Comment%1000"});
  if (acct.ok()) {
    std::string c = *acct;
    while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.pop_back();
    c = c.substr(0, c.find('\n'));
    if (!JobDirFromComment(c).empty()) return JobDirFromComment(c);
  }
  return absl::NotFoundError("job " + job + ": not a grpo job known to scontrol or sacct; pass --job-dir DIR");
}

struct LogsArgs {
  std::string job, role, job_dir;
};

absl::Status RunLogs(const LogsArgs& a) {
  std::string dir = a.job_dir;
  if (dir.empty()) {
    GRPO_ASSIGN_OR_RETURN(dir, FindJobDir(a.job));
  }
  const fs::path logs = fs::path(dir) / "logs";
  if (!fs::is_directory(logs)) return absl::NotFoundError("no logs directory in " + dir);
  if (!a.role.empty() && a.role != "learner" && a.role != "rollout" && a.role != "reward" && a.role != "job") {
    return absl::InvalidArgumentError("--role: learner, rollout, reward or job, got '" + a.role + "'");
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(logs)) {
    const std::string name = e.path().filename().string();
    const bool job_log = name == "job-" + a.job + ".out";
    const bool role_log = name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0;
    if (!job_log && !role_log) continue;
    if (!a.role.empty()) {
      if (a.role == "job" ? !job_log : name.rfind(a.role, 0) != 0) continue;
    }
    files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return absl::NotFoundError("no " + (a.role.empty() ? std::string() : a.role + " ") + "logs in " + logs.string());
  for (const fs::path& f : files) {
    GRPO_ASSIGN_OR_RETURN(const std::string text, ReadFile(f.string()));
    std::printf("==> %s <==\n", f.string().c_str());
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- cancel

struct CancelArgs {
  std::string job;
  double grace = 300;
  bool now = false;
};

// True while squeue still lists the job as running (or completing).
bool JobActive(const std::string& job) {
  auto out = Capture({Tool("SQUEUE", "squeue"), "--noheader", "--jobs=" + job, "--format=%T"});
  if (!out.ok()) return false;
  return out->find("RUNNING") != std::string::npos || out->find("COMPLETING") != std::string::npos ||
         out->find("PENDING") != std::string::npos || out->find("CONFIGURING") != std::string::npos;
}

// The id ("JOB.STEP") of the job's learner step, or "" when it has none (yet).
std::string LearnerStep(const std::string& job) {
  auto out = Capture({Tool("SQUEUE", "squeue"), "--noheader", "--steps", "--jobs=" + job, "--format=%i|%j"});
  if (!out.ok()) return "";
  std::stringstream lines(*out);
  std::string line;
  while (std::getline(lines, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, '|');
    if (f.size() == 2 && f[1] == "learner") return f[0];
  }
  return "";
}

absl::Status RunCancel(const CancelArgs& a) {
  const std::string scancel = Tool("SCANCEL", "scancel");
  const std::string learner = a.now ? "" : LearnerStep(a.job);
  if (!learner.empty()) {
    // SIGTERM to the learner step alone: the trainer finishes its step with the services still
    // up, checkpoints and exits 0; the batch script then stops the services and ends the job.
    GRPO_RETURN_IF_ERROR(Capture({scancel, "--signal=TERM", learner}).status());
    std::fprintf(stderr, "grpo cancel: SIGTERM sent to the learner (step %s); waiting up to %.0f s for job %s to end\n",
                 learner.c_str(), a.grace, a.job.c_str());
    const absl::Time deadline = absl::Now() + absl::Seconds(a.grace);
    while (JobActive(a.job) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(500));
  }
  if (JobActive(a.job)) GRPO_RETURN_IF_ERROR(Capture({scancel, a.job}).status());
  std::printf("job %s cancelled\n", a.job.c_str());
  return absl::OkStatus();
}

// ---------------------------------------------------------------- health

struct HealthArgs {
  std::string rollout, reward;
  double timeout = 30;
};

absl::Status RunHealth(const HealthArgs& a) {
  if (a.rollout.empty() == a.reward.empty()) return absl::InvalidArgumentError("give one of --rollout HOST:PORT or --reward HOST:PORT");
  const std::string target = a.rollout.empty() ? a.reward : a.rollout;
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto rollout = grpo::v1::RolloutService::NewStub(channel);
  auto reward = grpo::v1::RewardService::NewStub(channel);
  const absl::Time deadline = absl::Now() + absl::Seconds(a.timeout);
  std::string last = "no answer";
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    grpc::Status st;
    bool serving = false;
    if (!a.rollout.empty()) {
      grpo::v1::RolloutHealthResponse resp;
      st = rollout->Health(&ctx, grpo::v1::RolloutHealthRequest(), &resp);
      serving = st.ok() && resp.status() == grpo::v1::RolloutHealthResponse::SERVING;
      if (st.ok()) last = grpo::v1::RolloutHealthResponse::ServingStatus_Name(resp.status());
    } else {
      grpo::v1::RewardHealthResponse resp;
      st = reward->Health(&ctx, grpo::v1::RewardHealthRequest(), &resp);
      serving = st.ok() && resp.status() == grpo::v1::RewardHealthResponse::SERVING;
      if (st.ok()) last = grpo::v1::RewardHealthResponse::ServingStatus_Name(resp.status());
    }
    if (!st.ok()) last = st.error_message().empty() ? "unreachable" : st.error_message();
    if (serving) {
      std::printf("%s %s: SERVING\n", a.rollout.empty() ? "reward" : "rollout", target.c_str());
      return absl::OkStatus();
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  return absl::UnavailableError(std::string(a.rollout.empty() ? "reward" : "rollout") + " server " + target +
                             " is not serving after " + std::to_string(static_cast<int>(a.timeout)) + " s (" + last + ")");
}

}  // namespace

void AddClusterCommands(CLI::App& app) {
  auto s = std::make_shared<SubmitArgs>();
  CLI::App* submit = AddSubcommand(app, "submit", "Submit a recipe to a cluster (Slurm) as one batch job",
                                   [s] { return RunSubmit(*s); });
  submit->add_option("--cluster", s->cluster, "scheduler (slurm)")->required();
  submit->add_option("recipe", s->recipe, "RECIPE.yaml with a cluster: section")->required();
  submit->add_option("--set", s->sets, "override a recipe key (key=value), repeatable");
  submit->add_flag("--dry-run", s->dry_run, "print the sbatch script; write and submit nothing");

  auto json = std::make_shared<bool>(false);
  CLI::App* jobs = AddSubcommand(app, "jobs", "List your grpo cluster jobs (squeue)", [json] { return RunJobs(*json); });
  jobs->add_flag("--json", *json, "one JSON array of {job_id,name,state,elapsed,nodes,reason,job_dir}");

  auto l = std::make_shared<LogsArgs>();
  CLI::App* logs = AddSubcommand(app, "logs", "Show a cluster job's logs per role", [l] { return RunLogs(*l); });
  logs->add_option("job", l->job, "job id")->required();
  logs->add_option("--role", l->role, "learner, rollout, reward or job (the batch script's output)");
  logs->add_option("--job-dir", l->job_dir, "the job directory, for jobs Slurm no longer knows");

  auto c = std::make_shared<CancelArgs>();
  CLI::App* cancel = AddSubcommand(app, "cancel", "Cancel a cluster job (roles stop cleanly)", [c] { return RunCancel(*c); });
  cancel->add_option("job", c->job, "job id")->required();
  cancel->add_option("--grace", c->grace, "seconds the roles get to drain and checkpoint before scancel (default 300)");
  cancel->add_flag("--now", c->now, "plain scancel: no drain, no final checkpoint");

  auto h = std::make_shared<HealthArgs>();
  CLI::App* health = AddSubcommand(app, "health", "Wait until a rollout or reward server is SERVING",
                                   [h] { return RunHealth(*h); });
  health->add_option("--rollout", h->rollout, "HOST:PORT of a `grpo rollout serve`");
  health->add_option("--reward", h->reward, "HOST:PORT of a `grpo reward serve`");
  health->add_option("--timeout", h->timeout, "seconds to keep trying (default 30)");
}

}  // namespace grpo::cli
