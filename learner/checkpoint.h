// Training checkpoints: everything a run needs to continue bit for bit as if never stopped.
//
// Layout (one directory per checkpoint under <run_dir>/checkpoints/):
//   step-000020/config.json, model.safetensors   the policy, HF layout, f32 (loads in HF as is)
//   step-000020/tokenizer.json, tokenizer_config.json   when the run has them
//   step-000020/optimizer.safetensors            AdamW state (learner/optimizer.h)
//   step-000020/trainer_state.json               TrainerState below
//   step-000020/checksums.json                   size and CRC-32C of each file above
//                                                (core/checksum_manifest.h), written last
//   latest                                       the name of the newest complete checkpoint
// A checkpoint is written into "<name>.tmp", then put in place with its files and directory
// fsync'ed (core/file.h ReplaceDirectory); `latest` is replaced atomically last
// (WriteFileAtomic), so a crash at any moment leaves the previous checkpoint intact and `latest`
// naming a complete one. Older checkpoints beyond `keep` are deleted after the new one is in place.
//
// Random state: the trainer derives every random stream (prompt sampling, rollout seeds,
// pretraining batches) from (run seed, stage, step), so the state to save is the step counters
// and the dataset cursor, not generator internals.
#ifndef GRPO_LEARNER_CHECKPOINT_H_
#define GRPO_LEARNER_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "data/sampler.h"
#include "learner/optimizer.h"
#include "model/causal_lm.h"

namespace grpo {

struct TrainerState {
  std::string stage;            // "pretrain" or "rl" (or "sft")
  int64_t step = 0;             // steps of `stage` completed
  int64_t pretrain_steps_done = 0;
  uint64_t weight_version = 0;  // version of the weights the rollout engine serves
  data::Cursor data_cursor;     // next prompt of a JSONL dataset
  double elapsed_seconds = 0;   // wall time of the run so far
};

struct LoadedCheckpoint {
  std::string dir;
  TrainerState state;
  // Whether the checkpoint has a checksum manifest (and so was verified). Checkpoints written
  // before manifests existed have none; they load unverified.
  bool checksummed = false;
};

// Writes a checkpoint named `name` (e.g. "step-000020"); `tokenizer_dir` may be "" (no files to
// copy). The optimizer may be null (no optimizer state, e.g. an evaluation-only snapshot).
// `write_more`, when given, writes further files into the checkpoint's directory (its path is
// the argument) before the checksum manifest: the optimizer shards of data-parallel ranks.
absl::Status SaveCheckpoint(const std::string& run_dir, const std::string& name, const CausalLM& model,
                      const AdamW* optimizer, const TrainerState& state,
                      const std::string& tokenizer_dir, int keep,
                      const std::function<absl::Status(const std::string& dir)>& write_more = nullptr);

// The checkpoint `latest` names, or nullopt when the run has none. Every file its checksum
// manifest lists is verified first: a damaged, truncated or missing file is kDataLoss naming it
// and the mismatch. Corrupt or missing files are errors naming them.
absl::StatusOr<std::optional<LoadedCheckpoint>> FindLatestCheckpoint(const std::string& run_dir);

// Loads a checkpoint's optimizer state into `optimizer` (its parameters must match): the
// one-process optimizer.safetensors, or the shards data-parallel ranks wrote (any rank count).
absl::Status LoadOptimizerState(const LoadedCheckpoint& checkpoint, AdamW* optimizer);

std::string CheckpointName(const std::string& stage, int64_t step);

}  // namespace grpo

#endif  // GRPO_LEARNER_CHECKPOINT_H_
