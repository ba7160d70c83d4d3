// The trainer: `grpo train RECIPE.yaml` and `grpo sft RECIPE.yaml` (learner/recipe.h).
//
// `grpo train` runs, in <output_dir>/<name>/ (the run directory):
//   1. setup: recipe.yaml (the effective recipe), tokenizer/, the initial model;
//   2. the optional pretraining stage (next-token training on the recipe's corpus), whose
//      result is checkpointed as "pretrain-NNNNNN" before RL starts;
//   3. GRPO steps: prompts -> rollout groups (RolloutEngine, continuous batching) -> rewards
//      (RuleSet) -> advantages -> trajectories stored durably (store/, RocksDB) -> policy update
//      (rl_update.h) -> the new weights pushed to the engine with version step+1 -> one line of
//      metrics.jsonl (+ TensorBoard event) and a progress line on stderr;
//      held-out evaluation before the first step, every eval_every steps and after the last;
//      checkpoints every checkpoint_every steps, after the last step and on SIGTERM/SIGINT;
//   4. report.html from metrics.jsonl.
// With resume, the run continues from checkpoints/latest bit for bit as if never stopped: every
// random stream is derived from (seed, stage, step), the policy and AdamW state are restored
// exactly (after the checkpoint's checksums are verified; a damaged file is an error naming it,
// before anything of the run is touched), metrics.jsonl rows after the checkpoint are dropped,
// and the steps the store holds from the checkpoint's step on (an attempt that did not reach its
// next checkpoint wrote them) are removed and generated again (TrajectoryStore::DeleteStepsFrom).
#ifndef GRPO_LEARNER_TRAINER_H_
#define GRPO_LEARNER_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "collective/collective.h"
#include "core/status.h"
#include "data/dataset.h"
#include "learner/recipe.h"

namespace grpo {

struct TrainOptions {
  bool resume = false;        // continue from checkpoints/latest (error if the run has none)
  bool overwrite = false;     // delete an existing run directory first
  bool progress = true;       // a progress line per step on stderr
  // Set (e.g. from a signal handler) to stop after the current step with a checkpoint.
  const std::atomic<bool>* stop = nullptr;
  // For tests: stop after this many RL steps of this invocation (as if stop were set), 0 = off.
  int64_t max_steps_this_run = 0;
  // Data-parallel ranks (docs/scale_out.md): with a group of size > 1, rank 0 runs the whole
  // run as above and every other rank only joins each step's policy update (its share of the
  // samples; gradients summed across ranks), writing nothing. Null: one process.
  Collective* collective = nullptr;
};

struct TrainSummary {
  std::string run_dir;
  int64_t steps_done = 0;
  bool stopped_early = false;
  std::string stage;  // the stage the run ended in: "pretrain", "rl" or "sft"
  double first_eval_accuracy = -1, last_eval_accuracy = -1, last_eval_format = -1;
};

absl::StatusOr<TrainSummary> Train(const TrainRecipe& recipe, const TrainOptions& options);

// Loads the recipe's JSONL datasets (data.jsonl.train, and data.jsonl.eval when set) as training
// does: bad rows are skipped with a warning on stderr (counts by reason); more than
// data.max_bad_fraction of them, an unreadable file or a train set without a usable row is an
// error naming the key and path. `grpo train --check` calls it, so a dataset training would
// refuse is refused before anything runs.
absl::Status LoadJsonlDatasets(const TrainRecipe& recipe, data::Dataset* train, data::Dataset* eval);

// An SFT dataset (sft.train, format prompt-completion): its usable rows and how many were bad.
struct SftRow {
  std::string prompt, completion;
};
struct SftDataset {
  std::vector<SftRow> rows;
  int64_t bad_rows = 0;
};

// Reads sft.train as `grpo sft` does: rows {"prompt": string, "completion": string}; bad rows are
// reported on stderr (the first five), counted by reason and skipped; more than
// data.max_bad_fraction of them, no usable row, an unset key or an unreadable file is an error
// naming sft.train and the path (a missing file keeps its NotFound code). `grpo sft --check`
// calls it, so a dataset training would refuse is refused before anything runs.
absl::StatusOr<SftDataset> LoadSftDataset(const TrainRecipe& recipe);

// `grpo sft`: next-token training on recipe.sft.train (JSONL from `grpo export`), prompt tokens
// masked; writes checkpoints/ and metrics.jsonl in the run directory.
absl::StatusOr<TrainSummary> Sft(const TrainRecipe& recipe, const TrainOptions& options);

}  // namespace grpo

#endif  // GRPO_LEARNER_TRAINER_H_
