// Slurm job rendering for `grpo submit --cluster slurm` (deploy/README.md has the user guide).
//
// Contract:
//  - SlurmJobFromRecipe reads the recipe's `cluster:` section (schema in deploy/README.md) and
//    the recipe itself (run name, model, tokenizer, rules) into a SlurmJobSpec. Every key has a
//    default; a recipe without a `cluster:` section is a one-node job whose learner embeds the
//    rollout and reward roles (rollout.tasks and reward.tasks default to 0 there, 1 otherwise).
//    The rollout model and tokenizer are set only when rollout servers run. Unknown keys
//    under `cluster` are errors naming file:line; impossible layouts (a role with more nodes
//    than tasks, a learner of more than one process, no nodes at all) are errors naming the key.
//  - The job directory is `<cluster.output_dir>/<run.name>` (cluster.output_dir defaults to
//    run.output_dir; made absolute against the current directory). It holds cluster/ (the
//    script, launcher, effective recipe, rules, rollout model), logs/ (one log per role task
//    and job-<id>.out), rendezvous/ and the trainer's run directory `<job dir>/<run.name>`.
//  - RenderSbatch is a pure function of the spec: the same spec gives the same bytes (golden
//    tests compare it), with no timestamps, user names or host names in it.
//  - WriteJobFiles creates the job directory and writes cluster/job.sbatch, cluster/launch.sh,
//    cluster/recipe.yaml (the effective recipe), cluster/rules.yaml (reward services),
//    cluster/model_config.json and cluster/tokenizer/ (rollout services, when the recipe
//    initializes its model / uses a built-in tokenizer). It returns the script's path.
#ifndef GRPO_DEPLOY_SLURM_JOB_H_
#define GRPO_DEPLOY_SLURM_JOB_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "learner/recipe.h"

namespace grpo::deploy {

// One role's share of the allocation. Services run one server per task.
struct SlurmRole {
  int64_t nodes = 1;
  int64_t tasks = 1;
  int64_t gpus_per_task = 0;
  int64_t cpus_per_task = 1;
  std::string mem;   // per node, Slurm syntax ("64G"); empty: not requested per step
  std::string args;  // extra arguments of the role's command (`grpo rollout serve ...`)
};

struct SlurmJobSpec {
  std::string job_name;                     // grpo-<run.name>
  std::string partition, account, qos, time, constraint;
  std::vector<std::string> sbatch_extra;    // verbatim options ("--reservation=r1")
  std::string job_dir, run_dir, grpo_bin;
  bool colocate = false;                    // every role on the same nodes (one-node clusters)
  bool exclusive = true;                    // whole nodes (--exclusive --mem=0)
  std::string cpu_bind = "cores";
  int64_t max_requeues = 2;
  int64_t service_restarts = 5;
  int64_t rendezvous_timeout_s = 600;
  int64_t health_timeout_s = 60;
  int64_t stop_grace_s = 300;               // USR1 this long before the time limit
  std::map<std::string, std::string> env;   // exported to every role (NCCL_*, user's)
  SlurmRole learner, rollout, reward;
  std::string rollout_model;                // directory the rollout servers load
  std::string rollout_init_config;          // non-empty: create rollout_model from this config
  std::string rollout_tokenizer;            // empty: the model directory's
  std::string backend = "cpu";              // the recipe's backend: the rollout servers' --backend
  std::string reward_rules;
  std::string recipe;                       // cluster/recipe.yaml
  std::string train_args;                   // extra `grpo train` arguments

  int64_t TotalNodes() const;
  int64_t GpusPerNode() const;
};

// `default_grpo_bin` is used when cluster.grpo is not set (the running binary's path).
absl::StatusOr<SlurmJobSpec> SlurmJobFromRecipe(const TrainRecipe& recipe, const std::string& default_grpo_bin);

std::string RenderSbatch(const SlurmJobSpec& spec);

absl::StatusOr<std::string> WriteJobFiles(const SlurmJobSpec& spec, const TrainRecipe& recipe);

// `s` quoted for bash when it holds anything but [A-Za-z0-9_./:,=@%+-].
std::string ShellQuote(const std::string& s);

// The template files compiled in (deploy/slurm/*, embedded by deploy/BUILD.bazel).
extern const char kSbatchTemplate[];
extern const char kLaunchScript[];

}  // namespace grpo::deploy

#endif  // GRPO_DEPLOY_SLURM_JOB_H_
