// Cluster subcommands (Slurm): submit a recipe as one batch job, list, show logs, cancel, and
// the health probe the job's launcher uses. deploy/README.md is the user guide.
//
//   grpo submit --cluster slurm RECIPE.yaml [--set k=v]... [--dry-run]
//       renders <job dir>/cluster/job.sbatch from the recipe's `cluster:` section
//       (deploy/slurm_job.h); --dry-run prints the script and writes nothing; otherwise writes
//       the job directory and runs `sbatch`, printing the job id as the last line of stdout.
//   grpo jobs [--json]
//       this user's grpo jobs (squeue): id, name, state, elapsed time, nodes, reason, job dir.
//   grpo logs JOB [--role R] [--job-dir DIR]
//       the job's per-role logs (logs/<role>-<i>.log, learner.log, job-<id>.out); the job
//       directory comes from the job's comment (scontrol, then sacct) unless --job-dir is given.
//   grpo cancel JOB [--grace S] [--now]
//       SIGTERM to the job's learner step (scancel --signal=TERM JOB.STEP): the trainer
//       finishes its step, checkpoints and exits 0, then the job stops its services and ends;
//       after S seconds (default 300), or at once with --now, a plain `scancel JOB`.
//   grpo health --rollout HOST:PORT | --reward HOST:PORT [--timeout S]
//       calls the service's Health RPC until it reports SERVING (exit 0) or S seconds pass
//       (exit 1, naming the endpoint and its last state).
// The Slurm commands are found on PATH (SBATCH, SQUEUE, SCONTROL, SACCT, SCANCEL environment
// variables override them, for tests).
#ifndef GRPO_CLI_CLUSTER_COMMANDS_H_
#define GRPO_CLI_CLUSTER_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

// Adds submit, jobs, logs, cancel and health to `app`.
void AddClusterCommands(CLI::App& app);

}  // namespace grpo::cli

#endif  // GRPO_CLI_CLUSTER_COMMANDS_H_
