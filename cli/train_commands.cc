#include "cli/train_commands.h"

#include <csignal>
#include <cstdio>
#include <memory>

#include "cli/backend_flag.h"
#include "cli/local_ranks.h"
#include "cli/subcommand.h"
#include "learner/recipe.h"
#include "learner/report.h"
#include "learner/trainer.h"
#include "model/ops/registry.h"
#include "reward/rule_set.h"

namespace grpo::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void OnStopSignal(int) { g_stop.store(true); }

struct TrainArgs {
  std::string recipe;
  std::vector<std::string> overrides;
  std::string backend;  // wins over the recipe's `backend:` and any --set backend=
  bool resume = false;
  bool overwrite = false;
  bool quiet = false;
  bool check = false;
  int nproc = 1;
  double collective_timeout_s = 600;
  double failure_grace_s = 30;
};

void AddTrainFlags(CLI::App* cmd, TrainArgs* a) {
  cmd->add_option("recipe", a->recipe, "recipe YAML (see docs/recipes.md)")->required();
  cmd->add_option("--set", a->overrides, "override a recipe key: --set optimizer.lr=1e-6 (repeatable)");
  cmd->add_flag("--resume", a->resume, "continue the run from its latest checkpoint");
  cmd->add_flag("--overwrite", a->overwrite, "delete an existing run directory and start over");
  cmd->add_flag("--quiet", a->quiet, "no progress lines");
  AddBackendOption(cmd, &a->backend, "default: the recipe's backend, else cpu");
  cmd->add_option("--nproc", a->nproc,
                  "data-parallel learner ranks on this machine (Gloo over loopback; docs/scale_out.md)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--collective-timeout", a->collective_timeout_s,
                  "seconds any collective call of the ranks may wait (a rank that exits is noticed at once)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--failure-grace", a->failure_grace_s,
                  "with --nproc: seconds the other ranks get to end by themselves after one fails, before the "
                  "launcher stops them (SIGTERM, then SIGKILL 5 s later)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--check", a->check,
                "validate the recipe (keys, values, reward rules, the datasets, the model and its memory plan) and print "
                "the effective recipe; run nothing");
}

absl::Status RunTrain(const TrainArgs& a, bool sft) {
  // --backend is the last override, so it wins; the run's stored recipe records it.
  std::vector<std::string> overrides = a.overrides;
  if (!a.backend.empty()) overrides.push_back("backend=" + a.backend);
  GRPO_ASSIGN_OR_RETURN(TrainRecipe recipe, LoadRecipe(a.recipe, overrides));
  if (a.check) {
    // An unknown name fails; a backend this machine lacks is checked when training starts,
    // since the recipe may be for another machine.
    if (absl::StatusOr<Backend*> b = GetBackend(recipe.backend); !b.ok()) {
      if (!absl::IsFailedPrecondition(b.status())) return b.status();
      std::fprintf(stderr, "note: %s\n", std::string(b.status().message()).c_str());
    }
    GRPO_ASSIGN_OR_RETURN(reward::RuleSet rules, reward::RuleSet::FromConfig(recipe.rules, {}));
    // What training would run out of. A recipe written for another machine may name a model
    // directory that is not here: then the plan runs when training starts, there.
    const absl::Status memory = CheckTrainingMemory(recipe, sft);
    if (absl::IsNotFound(memory) && !recipe.model_path.empty()) {
      std::fprintf(stderr, "note: %s; the model and the memory plan are checked when training starts\n",
                   std::string(memory.message()).c_str());
    } else {
      GRPO_RETURN_IF_ERROR(memory);
    }
    if (sft || recipe.data_source == DataSource::kJsonl) {
      // Read as training reads them (data.max_bad_fraction applies): sft.train for `grpo sft`,
      // data.jsonl.* for `grpo train`. Like model.path, a dataset that is not on this machine
      // is checked when training starts, where it is.
      data::Dataset train, eval;
      const absl::Status datasets =
          sft ? LoadSftDataset(recipe).status() : LoadJsonlDatasets(recipe, &train, &eval);
      if (absl::IsNotFound(datasets)) {
        std::fprintf(stderr, "note: %s; the datasets are checked when training starts\n",
                     std::string(datasets.message()).c_str());
      } else {
        GRPO_RETURN_IF_ERROR(datasets);
      }
    }
    std::printf("%s", recipe.source.Dump().c_str());
    std::fprintf(stderr, "recipe %s is valid: run %s/%s, %zu reward rules\n", a.recipe.c_str(),
                 recipe.output_dir.c_str(), recipe.name.c_str(), rules.rules().size());
    return absl::OkStatus();
  }
  if (a.nproc > 1 && sft) return absl::InvalidArgumentError("--nproc: grpo sft runs as one process");
  if (a.nproc > 1) return RunLocalRanks(a.nproc, absl::Seconds(a.failure_grace_s));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<Collective> ranks,
                        JoinRanksFromEnvironment(absl::Seconds(a.collective_timeout_s)));
  const bool follower = ranks != nullptr && ranks->rank() != 0;
  TrainOptions o;
  o.collective = ranks.get();
  o.resume = a.resume;
  o.overwrite = a.overwrite;
  o.progress = !a.quiet && !follower;
  o.stop = &g_stop;
  auto old_term = std::signal(SIGTERM, OnStopSignal);
  auto old_int = std::signal(SIGINT, OnStopSignal);
  absl::StatusOr<TrainSummary> s = sft ? Sft(recipe, o) : Train(recipe, o);
  std::signal(SIGTERM, old_term);
  std::signal(SIGINT, old_int);
  GRPO_RETURN_IF_ERROR(s.status());
  if (follower) return absl::OkStatus();  // rank 0 reports
  if (s->stopped_early) {
    std::fprintf(stderr, "stopped after %s step %lld with a checkpoint; continue with --resume\n",
                 s->stage.c_str(), static_cast<long long>(s->steps_done));
  }
  if (s->first_eval_accuracy >= 0) {
    std::fprintf(stderr, "held-out accuracy %.3f -> %.3f, format %.3f\n", s->first_eval_accuracy,
                 s->last_eval_accuracy, s->last_eval_format);
  }
  std::printf("%s\n", s->run_dir.c_str());
  return absl::OkStatus();
}

}  // namespace

void AddTrainCommands(CLI::App& app) {
  auto train = std::make_shared<TrainArgs>();
  CLI::App* t = AddSubcommand(app, "train", "Run GRPO from a recipe: grpo train RECIPE.yaml",
                              [train] { return RunTrain(*train, false); });
  AddTrainFlags(t, train.get());
  auto sft = std::make_shared<TrainArgs>();
  CLI::App* s = AddSubcommand(app, "sft", "Supervised fine-tuning on exported JSONL: grpo sft RECIPE.yaml",
                              [sft] { return RunTrain(*sft, true); });
  AddTrainFlags(s, sft.get());
  auto run_dir = std::make_shared<std::string>();
  CLI::App* r = AddSubcommand(app, "report", "Write RUN_DIR/report.html from RUN_DIR/metrics.jsonl",
                              [run_dir] {
                                GRPO_RETURN_IF_ERROR(WriteReport(*run_dir + "/metrics.jsonl", *run_dir + "/report.html"));
                                std::printf("%s/report.html\n", run_dir->c_str());
                                return absl::OkStatus();
                              });
  r->add_option("run_dir", *run_dir, "run directory (runs/<name>)")->required();
}

}  // namespace grpo::cli
