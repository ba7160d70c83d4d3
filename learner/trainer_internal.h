// Internals shared by the trainer's files (trainer.cc: setup and pretraining; trainer_rl.cc: the
// GRPO loop and evaluation). Not a public interface.
#ifndef GRPO_LEARNER_TRAINER_INTERNAL_H_
#define GRPO_LEARNER_TRAINER_INTERNAL_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/example.h"
#include "data/sampler.h"
#include "learner/checkpoint.h"
#include "learner/gradient_reducer.h"
#include "learner/sharded_optimizer.h"
#include "learner/recipe.h"
#include "learner/rl_update.h"
#include "learner/trainer.h"
#include "learner/weight_push.h"
#include "model/causal_lm.h"
#include "rollout/environment.h"
#include "tokenizer/prompt_template.h"
#include "tokenizer/tokenizer.h"

namespace grpo::trainer_internal {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Independent random streams: (seed, stage, step) -> a 64-bit seed.
enum Stream : uint64_t { kPretrainBatch = 1, kPrompts = 2, kRollout = 3, kEval = 4, kEvalSampling = 5 };
inline uint64_t StreamSeed(uint64_t seed, Stream stream, uint64_t step) {
  data::SplitMix64 a(seed ^ (static_cast<uint64_t>(stream) << 56));
  data::SplitMix64 b(a.Next() ^ (step * 0x9E3779B97F4A7C15ull));
  return b.Next();
}

// Everything a stage needs, set up once per invocation.
struct Run {
  const TrainRecipe* recipe = nullptr;
  std::string dir, tokenizer_dir;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::unique_ptr<tokenizer::PromptTemplate> prompt;
  int32_t eos = -1;
  Backend* backend = nullptr;  // recipe.backend, from the registry
  std::unique_ptr<CausalLM> policy;
  // tools.environment in the embedded rollout; null: single-turn rollouts, or remote rollout
  // servers run it (ToolsOn says whether rollouts use tools).
  std::shared_ptr<Environment> environment;
  std::optional<LoadedCheckpoint> checkpoint;
  data::Dataset train_set, eval_set;  // jsonl source
  Clock::time_point started = Clock::now();
  double elapsed_before = 0;  // from the checkpoint
  double Elapsed() const { return elapsed_before + Seconds(started, Clock::now()); }
};

// Whether rollouts call tools (the recipe's tools.environment), embedded or on remote servers.
inline bool ToolsOn(const Run& run) { return run.recipe->tool_environment != "none"; }

inline void Progress(const TrainOptions& o, const std::string& line) {
  if (o.progress) std::fprintf(stderr, "%s\n", line.c_str());
}

absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Run& run, const data::Example& e);

absl::StatusOr<TrainSummary> RunRl(Run& run, const TrainOptions& o);

// The policy update's options for a step of this recipe (the same on every rank).
RlUpdateOptions UpdateOptions(const TrainRecipe& r, bool routing, Collective* collective,
                              ShardedAdamW* sharded, GradientReducer* reducer);
// ZeRO-1 on a data-parallel rank: the sharded AdamW and the gradient reducer over `policy`'s
// bucket layout (learner.bucket_mb, learner.overlap_grad_reduce).
absl::Status OpenZero(const TrainRecipe& r, const CausalLM& policy, Collective& c, std::optional<ShardedAdamW>* zero,
                      std::unique_ptr<GradientReducer>* reducer);

// Data-parallel ranks (trainer_ranks.cc). Rank 0 tells the others, once RL is about to start,
// which checkpoint its optimizer state came from ("" for none) and sends its parameters; then
// before each update the step's training groups; at the end "done".
bool Distributed(const TrainOptions& o);
absl::Status SendStart(Collective& c, CausalLM& policy, const std::string& optimizer_checkpoint);
absl::Status SendStep(Collective& c, const std::vector<RlGroup>& groups);
absl::Status SendDone(Collective& c);
// Every rank pushes its shard of weight version `version` to the rollout servers marked in `up`
// (learner/weight_push.h PushWeightShards); rank 0 calls this, then pushes its own shard.
absl::Status SendPush(Collective& c, uint64_t version, const std::vector<bool>& up);
// The wire format of weight pushes, the same on every rank.
WeightPushOptions PushOptions(const TrainRecipe& r);
// Every rank writes its optimizer shard into the checkpoint directory `dir` (rank 0's included);
// returns once all have.
absl::Status SaveShards(Collective& c, const ShardedAdamW& zero, const std::string& dir);
// "ranks: N (gloo), AdamW state on rank 0: X MiB of Y MiB (ZeRO-1), host staging: Z MiB".
std::string ShardingSummary(const Collective& c, const ShardedAdamW& zero, const GradientReducer& reducer);
// What every rank but 0 runs instead of Train.
absl::StatusOr<TrainSummary> FollowRank0(const TrainRecipe& r, const TrainOptions& o);

// Saves the run's checkpoint of `state.stage` after `state.step` steps (the name
// CheckpointName(stage, step), the policy, the optimizer and the tokenizer files), with the run's
// elapsed time filled in; keeps the newest `keep` checkpoints.
// `opt` may be null (data-parallel ranks write optimizer shards through `write_more` instead).
absl::Status SaveRunCheckpoint(const Run& run, TrainerState state, const AdamW* opt, int keep,
                               const std::function<absl::Status(const std::string& dir)>& write_more = nullptr);

// Whether the step that has just finished ends with a checkpoint: the last one, one after a
// stop request, or every `every` steps (0: only the last and on stop).
inline bool CheckpointDue(int64_t steps_done, bool last, bool stop, int64_t every) {
  return last || stop || (every > 0 && steps_done % every == 0);
}

}  // namespace grpo::trainer_internal

#endif  // GRPO_LEARNER_TRAINER_INTERNAL_H_
