// TrainRecipe: a `grpo train` / `grpo sft` recipe (YAML, read with core/config.h), validated into
// typed options. Every key is documented in docs/recipes.md; unknown keys are errors naming
// file:line with a suggestion. The sections:
//   run        name, output_dir, seed
//   backend    the backend the models run on (model/ops/registry.h), default cpu; `--backend`
//              on the command line wins
//   tokenizer  builtin (tokenizer/builtin.h) | path (a directory with tokenizer.json)
//   model      path (HF directory) | init {preset, config (HF config.json keys over the
//              preset), seed, std}
//   data       source: addition (generated, data/addition.h) | jsonl {train, eval, format};
//              prompt_template; addition {digits, held_out_fraction}
//   pretrain   optional next-token stage before RL (steps, batch_size, lr, warmup_steps,
//              min_lr_ratio, teacher_mix {careful, guess, plain, tool})
//   sft        the `grpo sft` stage (data, steps, batch_size, lr, ...)
//   rollout    prompts_per_step, group_size, max_new_tokens, temperature, top_p, top_k, min_p,
//              stop_strings, serve_format (f32|bf16|fp8), kv_memory_mb, routing_replay,
//              overlap (one-step off-policy), max_staleness (asynchronous), endpoints (remote
//              mode), batch_invariant
//   tools      multi-turn tool use in rollouts (rollout/environment.h): environment
//              (none|calculator|python|plugin), max_calls, max_output_tokens, call_start,
//              call_end, result_start, result_end, plugin (a tool plugin's library),
//              plugin_config (a mapping given to it), timeout_ms (per python or plugin call),
//              call_threads (the embedded engine's tool-call threads, 0..256)
//   reward     rules (the rules-file schema, reward/rule_set.h), endpoints (remote mode)
//   algorithm  objective (grpo|dr_grpo|dapo|gspo|cispo|sapo|gmpo) and overrides of its preset:
//              clip_eps_low, clip_eps_high, ratio_level, aggregation, norm_length, kl_beta,
//              kl_estimator, is_correction, is_cap, icepop_low, icepop_high, sapo_tau_pos,
//              sapo_tau_neg, advantage_scale (std|none), advantage_estimator (group_norm|rloo|
//              reinforce_pp|reinforce_pp_baseline), dynamic_sampling, max_sampling_rounds
//   learner    precision (f32|bf16): the policy's compute weights (CausalLM::SetComputeDType);
//              bucket_mb, overlap_grad_reduce: data-parallel gradient buckets (gradient_reducer.h)
//   optimizer  lr, betas, eps, weight_decay, warmup_steps, schedule, min_lr_ratio,
//              max_grad_norm, mini_batches, epochs
//   train      steps, eval_every, eval_size, eval_samples, eval_temperature, checkpoint_every
//   distill    teacher (HF model directory) or teacher_server (HOST:PORT of `grpo rollout serve
//              --serve-logprobs`, or a list of them), coef, rule_rewards, divergence
//              (sampled | reverse_kl | forward_kl): on-policy distillation
//   cluster    read by `grpo submit` (deploy/), ignored here
#ifndef GRPO_LEARNER_RECIPE_H_
#define GRPO_LEARNER_RECIPE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/memory_plan.h"
#include "core/status.h"
#include "data/addition.h"
#include "learner/advantage.h"
#include "learner/objective.h"
#include "learner/optimizer.h"
#include "learner/policy_loss.h"
#include "learner/schedule.h"
#include "learner/weight_push.h"
#include "model/model_config.h"
#include "model/parameters.h"
#include "rollout/environment.h"
#include "rollout/sampler.h"

namespace grpo {

struct LmStageRecipe {
  int64_t steps = 0;
  int64_t batch_size = 32;
  LrScheduleOptions schedule;  // lr, warmup, decay, min_lr_ratio (total_steps = steps)
  double max_grad_norm = 1.0;
  data::TeacherMix teacher_mix;  // pretrain on the addition task
  std::string train_path;        // sft: JSONL exported by `grpo export`
  std::string format;            // sft: prompt-completion | openai | sharegpt
};

// Where RL prompts come from (`data.source`).
enum class DataSource {
  kAddition,  // "addition": generated (data/addition.h)
  kJsonl,     // "jsonl": data.jsonl.train / eval
};

struct TrainRecipe {
  Config source;  // the recipe after --set overrides (stored with the run)

  std::string name;
  std::string output_dir = "runs";
  uint64_t seed = 0;

  // Which backend the policy, the reference and the embedded rollout engine run on, by
  // registry name (model/ops/registry.h). Checked to be a name here; whether this machine has
  // it, when training starts (a recipe may be written for another machine).
  std::string backend = "cpu";

  std::string tokenizer_builtin;
  std::string tokenizer_path;

  std::string model_path;
  std::string model_preset;
  nlohmann::json model_config = nlohmann::json::object();
  uint64_t init_seed = 0;
  double init_std = 0.02;

  DataSource data_source = DataSource::kAddition;
  data::AdditionOptions addition;
  std::string train_path, eval_path, dataset_format = "generic";
  // The most bad rows a dataset file (data.jsonl.train / .eval, sft.train) may have, as a fraction
  // of its rows; more fails the run (docs/data.md).
  double max_bad_fraction = 0.1;
  std::string prompt_template = "{question}";

  LmStageRecipe pretrain;
  LmStageRecipe sft;

  int64_t prompts_per_step = 8;
  int64_t group_size = 8;
  int64_t max_new_tokens = 256;
  SamplingOptions sampling;
  std::vector<std::string> stop_strings;
  WeightFormat serve_format = WeightFormat::kF32;  // one of kWireWeightFormats
  int64_t kv_memory_mb = 256;
  bool routing_replay = true;
  bool overlap = false;  // one-step off-policy: next rollout during this update
  // How many weight versions a trained sample's oldest token may lag the learner (0..8).
  // 0: synchronous; 1: rollout.overlap; >= 2: asynchronous (rollout runs up to this many steps
  // ahead, weights pushed live mid-generation; older samples are dropped from the loss).
  // rollout.overlap: true is max_staleness 1.
  int64_t max_staleness = 0;
  // Rollout logprobs bit-identical to the learner's (Backend::SetBatchInvariant); needs f32 serving.
  bool batch_invariant = false;
  std::vector<std::string> rollout_endpoints;

  // tools: the environment of multi-turn rollouts ("none": single turn), its markers, the calls
  // per sample and the tokens per result.
  std::string tool_environment = "none";
  ToolTags tool_tags;
  int64_t max_tool_calls = 2;
  int64_t max_tool_output_tokens = 32;
  std::string tool_plugin;              // the library of tools.environment plugin
  std::string tool_plugin_config = "{}";  // tools.plugin_config as a JSON object text
  int64_t tool_timeout_ms = 5000;       // per call of the python tool or a plugin
  int64_t tool_call_threads = 4;        // the embedded engine's tool-call threads (0: its loop thread)

  Config rules;  // reward.rules as a rules-file tree
  std::vector<std::string> reward_endpoints;

  // On-policy distillation (distill.*): a teacher model scores the student's samples; each
  // token's advantage gets coef * -(log pi_student - log pi_teacher) (policy_loss.h
  // DistillationAdvantages), added to the rule-reward advantages when distill_rule_rewards.
  std::string distill_teacher;  // HF model directory; empty: none
  // HOST:PORT (port 1..65535) of each rollout server serving Logprobs (distill.teacher_server:
  // one address or a list, used round robin with failover, learner/teacher.h); exclusive with
  // distill_teacher; both empty: no distillation.
  std::vector<std::string> distill_teacher_servers;
  double distill_coef = 1.0;
  bool distill_rule_rewards = true;
  // distill.divergence: "sampled" (nullopt, the default) gives the per-token advantage above, from
  // the teacher's logprob of each sampled token; "reverse_kl" / "forward_kl" instead add
  // coef * KL over the whole vocabulary at every completion token to the loss (policy_loss.h's
  // divergence_coef, CausalLM's DivergenceTargets), from the embedded teacher's logits.
  std::optional<Divergence> distill_divergence;

  Objective objective = Objective::kGrpo;
  PolicyLossOptions loss;
  AdvantageOptions advantage;
  bool dynamic_sampling = false;
  int64_t max_sampling_rounds = 3;

  // learner.precision: the dtype the policy computes with (F32, or BF16 compute copies of the f32
  // masters, CausalLM::SetComputeDType); gradients, AdamW state and checkpoints stay f32.
  DType learner_precision = DType::kF32;
  // learner.bucket_mb: the data-parallel gradient buckets' size (MiB of f32 gradients, > 0, at
  // most 8191: one collective call holds < 2^31 floats); learner.overlap_grad_reduce: reduce each
  // bucket during the backward (true) or all after it (false). Same sums either way.
  double bucket_mb = 25;
  bool overlap_grad_reduce = true;

  LrScheduleOptions schedule;
  AdamWOptions adamw;
  double max_grad_norm = 1.0;
  int64_t mini_batches = 1;
  int64_t epochs = 1;

  int64_t steps = 10;
  int64_t eval_every = 0;  // 0: only before and after training
  int64_t eval_size = 100;
  int64_t eval_samples = 1;
  double eval_temperature = 1.0;
  int64_t checkpoint_every = 0;  // 0: only at the end (and on SIGTERM)
};

// Reads and validates; errors name file:line and the key.
absl::StatusOr<TrainRecipe> ParseRecipe(const Config& config);
absl::StatusOr<TrainRecipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides);

// The architecture the recipe trains: model.path's config.json, or model.init.preset with the
// keys of model.init.config over it; validated (model/model_config.h), nothing allocated.
absl::StatusOr<ModelConfig> RecipeModelConfig(const TrainRecipe& recipe);

// What `grpo train` (with `sft`: `grpo sft`) will hold in memory for this recipe and model, at
// the least (core/memory_plan.h): the policy's f32 weights, gradients and AdamW moments; the
// reference model (algorithm.kl_beta > 0); the embedded rollout engine's weights and KV cache
// (rollout.kv_memory_mb; none with rollout.endpoints); one step's samples at full length
// (rollout.prompts_per_step x rollout.group_size, times algorithm.max_sampling_rounds with
// dynamic sampling, each up to rollout.max_new_tokens) and the learner's activations for one
// optimizer.mini_batches share of them; the evaluation samples (train.eval_size x
// train.eval_samples); the pretrain / sft batch's activations. Each part names its keys.
// InvalidArgument when rollout.max_new_tokens leaves no room for a prompt within the model's
// max_position_embeddings.
absl::StatusOr<MemoryPlan> PlanTrainingMemory(const TrainRecipe& recipe, const ModelConfig& model, bool sft);

// RecipeModelConfig, then PlanTrainingMemory checked against the memory available now: what
// `grpo train --check` runs, and what training runs before it allocates anything.
absl::Status CheckTrainingMemory(const TrainRecipe& recipe, bool sft);

}  // namespace grpo

#endif  // GRPO_LEARNER_RECIPE_H_
