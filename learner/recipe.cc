#include "learner/recipe.h"

#include <cmath>

#include "core/checked_math.h"
#include "core/grpc_server.h"
#include "model/model_memory.h"
#include "model/ops/registry.h"
#include "model/presets.h"
#include "rollout/python_tool.h"

namespace grpo {
namespace {

const std::vector<std::string>& KnownKeys() {
  static const std::vector<std::string> keys = {
      "run.name", "run.output_dir", "run.seed", "backend",
      "tokenizer.builtin", "tokenizer.path",
      "model.path", "model.init.preset", "model.init.config", "model.init.seed", "model.init.std",
      "data.source", "data.prompt_template", "data.addition.digits",
      "data.addition.held_out_fraction", "data.jsonl.train", "data.jsonl.eval", "data.jsonl.format",
      "data.max_bad_fraction",
      "pretrain.steps", "pretrain.batch_size", "pretrain.lr", "pretrain.warmup_steps",
      "pretrain.schedule", "pretrain.min_lr_ratio", "pretrain.max_grad_norm",
      "pretrain.teacher_mix.careful", "pretrain.teacher_mix.guess", "pretrain.teacher_mix.plain",
      "pretrain.teacher_mix.tool",
      "sft.steps", "sft.batch_size", "sft.lr", "sft.warmup_steps", "sft.schedule",
      "sft.min_lr_ratio", "sft.max_grad_norm", "sft.train", "sft.format",
      "rollout.prompts_per_step", "rollout.group_size", "rollout.max_new_tokens",
      "rollout.temperature", "rollout.top_p", "rollout.top_k", "rollout.min_p",
      "rollout.stop_strings", "rollout.serve_format", "rollout.kv_memory_mb",
      "rollout.routing_replay", "rollout.overlap", "rollout.max_staleness", "rollout.endpoints", "rollout.batch_invariant",
      "tools.environment", "tools.max_calls", "tools.max_output_tokens", "tools.call_start",
      "tools.call_end", "tools.result_start", "tools.result_end", "tools.plugin",
      "tools.plugin_config", "tools.timeout_ms", "tools.call_threads",
      "reward.rules", "reward.endpoints", "distill.teacher", "distill.teacher_server", "distill.coef", "distill.rule_rewards", "distill.divergence",
      "algorithm.objective", "algorithm.clip_eps_low", "algorithm.clip_eps_high",
      "algorithm.ratio_level", "algorithm.aggregation", "algorithm.norm_length",
      "algorithm.kl_beta", "algorithm.kl_estimator", "algorithm.is_correction", "algorithm.is_cap",
      "algorithm.sapo_tau_pos", "algorithm.sapo_tau_neg", "algorithm.icepop_low", "algorithm.icepop_high",
      "algorithm.advantage_scale", "algorithm.advantage_estimator", "algorithm.dynamic_sampling",
      "algorithm.max_sampling_rounds",
      "learner.precision", "learner.bucket_mb", "learner.overlap_grad_reduce",
      "optimizer.lr", "optimizer.betas", "optimizer.eps", "optimizer.weight_decay",
      "optimizer.warmup_steps", "optimizer.schedule", "optimizer.min_lr_ratio",
      "optimizer.max_grad_norm", "optimizer.mini_batches", "optimizer.epochs",
      "train.steps", "train.eval_every", "train.eval_size", "train.eval_samples",
      "train.eval_temperature", "train.checkpoint_every",
      "cluster"};
  return keys;
}

// Counts and lengths that go over the wire as 32-bit numbers (and index 32-bit arrays);
// whether they fit in memory is PlanTrainingMemory's question.
constexpr int64_t kMaxCount = 2147483647;

absl::Status Positive(const Config& c, const char* key, int64_t v) {
  if (v <= 0) return c.Error(key, "must be > 0");
  if (v > kMaxCount) return c.Error(key, "must be at most " + std::to_string(kMaxCount) + ", got " + std::to_string(v));
  return absl::OkStatus();
}

absl::Status ParseLmStage(const Config& c, const std::string& prefix, LmStageRecipe* s) {
  const auto key = [&](const char* k) { return prefix + "." + k; };
  GRPO_ASSIGN_OR_RETURN(s->steps, c.GetIntOr(key("steps"), 0));
  if (s->steps < 0) return c.Error(key("steps"), "must be >= 0");
  GRPO_ASSIGN_OR_RETURN(s->batch_size, c.GetIntOr(key("batch_size"), 32));
  GRPO_RETURN_IF_ERROR(Positive(c, key("batch_size").c_str(), s->batch_size));
  GRPO_ASSIGN_OR_RETURN(s->schedule.lr, c.GetDoubleOr(key("lr"), 1e-3));
  GRPO_ASSIGN_OR_RETURN(s->schedule.warmup_steps, c.GetIntOr(key("warmup_steps"), 0));
  GRPO_ASSIGN_OR_RETURN(std::string decay, c.GetStringOr(key("schedule"), "cosine"));
  auto d = ParseLrDecay(decay);
  if (!d.ok()) return c.Error(key("schedule"), std::string(d.status().message()));
  s->schedule.decay = *d;
  GRPO_ASSIGN_OR_RETURN(s->schedule.min_lr_ratio, c.GetDoubleOr(key("min_lr_ratio"), 0.1));
  s->schedule.total_steps = std::max<int64_t>(s->steps, s->schedule.warmup_steps);
  if (s->steps > 0) {
    absl::Status v = ValidateLrSchedule(s->schedule);
    if (!v.ok()) return c.Error(prefix, std::string(v.message()));
  }
  GRPO_ASSIGN_OR_RETURN(s->max_grad_norm, c.GetDoubleOr(key("max_grad_norm"), 1.0));
  GRPO_ASSIGN_OR_RETURN(s->teacher_mix.careful, c.GetDoubleOr(key("teacher_mix.careful"), 0.4));
  GRPO_ASSIGN_OR_RETURN(s->teacher_mix.guess, c.GetDoubleOr(key("teacher_mix.guess"), 0.3));
  GRPO_ASSIGN_OR_RETURN(s->teacher_mix.plain, c.GetDoubleOr(key("teacher_mix.plain"), 0.3));
  GRPO_ASSIGN_OR_RETURN(s->teacher_mix.tool, c.GetDoubleOr(key("teacher_mix.tool"), 0.0));
  if (absl::Status v = data::Validate(s->teacher_mix); !v.ok()) return c.Error(key("teacher_mix"), std::string(v.message()));
  GRPO_ASSIGN_OR_RETURN(s->train_path, c.GetStringOr(key("train"), ""));
  GRPO_ASSIGN_OR_RETURN(s->format, c.GetStringOr(key("format"), "prompt-completion"));
  return absl::OkStatus();
}

absl::StatusOr<DataSource> ParseDataSource(std::string_view name) {
  if (name == "addition") return DataSource::kAddition;
  if (name == "jsonl") return DataSource::kJsonl;
  return absl::InvalidArgumentError("must be 'addition' or 'jsonl'");
}

absl::StatusOr<DType> ParsePrecision(std::string_view name) {
  if (name == "f32") return DType::kF32;
  if (name == "bf16") return DType::kBF16;
  return absl::InvalidArgumentError("unknown precision \"" + std::string(name) + "\" (expected f32 or bf16)");
}

absl::StatusOr<WeightFormat> ParseServeFormat(std::string_view name) {
  return ParseWeightFormat(name, kWireWeightFormats);
}

template <typename T, typename F>
absl::Status ParseEnum(const Config& c, const char* key, F parse, T* out) {
  if (!c.Has(key)) return absl::OkStatus();
  GRPO_ASSIGN_OR_RETURN(std::string name, c.GetString(key));
  auto v = parse(name);
  if (!v.ok()) return c.Error(key, std::string(v.status().message()));
  *out = *v;
  return absl::OkStatus();
}

// tools.plugin, tools.plugin_config and tools.timeout_ms, which only a plugin (and, for the
// timeout, the python tool) reads.
absl::Status ParseToolPlugin(const Config& c, TrainRecipe* r) {
  const bool plugin = r->tool_environment == "plugin";
  GRPO_ASSIGN_OR_RETURN(r->tool_plugin, c.GetStringOr("tools.plugin", ""));
  if (plugin && r->tool_plugin.empty()) {
    return c.Error("tools.plugin", "tools.environment plugin needs the path of the plugin's shared library");
  }
  if (!plugin && (c.Has("tools.plugin") || c.Has("tools.plugin_config"))) {
    return c.Error(c.Has("tools.plugin") ? "tools.plugin" : "tools.plugin_config",
                   "is read only with tools.environment plugin");
  }
  if (c.Has("tools.plugin_config")) {
    GRPO_ASSIGN_OR_RETURN(Config pc, c.Sub("tools.plugin_config"));
    if (!pc.json().is_object()) return c.Error("tools.plugin_config", "must be a mapping");
    r->tool_plugin_config = pc.json().dump();
  }
  GRPO_ASSIGN_OR_RETURN(r->tool_timeout_ms, c.GetIntOr("tools.timeout_ms", r->tool_timeout_ms));
  if (r->tool_timeout_ms < 1 || r->tool_timeout_ms > 600000) return c.Error("tools.timeout_ms", "must be in [1, 600000]");
  return absl::OkStatus();
}

// The tools section; the pretraining corpus's tool style takes its markers.
// rollout.max_staleness, after rollout.overlap (its one-step special case).
absl::Status ParseMaxStaleness(const Config& c, TrainRecipe* r) {
  constexpr int64_t kMaxStaleness = 8;
  GRPO_ASSIGN_OR_RETURN(r->max_staleness, c.GetIntOr("rollout.max_staleness", r->overlap ? 1 : 0));
  if (r->max_staleness < 0 || r->max_staleness > kMaxStaleness) {
    return c.Error("rollout.max_staleness", "must be in [0, " + std::to_string(kMaxStaleness) + "], got " +
                                                std::to_string(r->max_staleness));
  }
  if (r->overlap && r->max_staleness != 1) {
    return c.Error("rollout.max_staleness", "rollout.overlap: true is max_staleness 1; set one of the two");
  }
  r->overlap = r->max_staleness >= 1;
  return absl::OkStatus();
}

// distill.teacher_server: one HOST:PORT or a list of them (failover, learner/teacher.h), after
// distill.teacher.
absl::Status ParseTeacherServers(const Config& c, TrainRecipe* r) {
  constexpr const char* kKey = "distill.teacher_server";
  if (!c.Has(kKey)) return absl::OkStatus();
  const bool list = !c.json().at("distill").at("teacher_server").is_string();
  if (!list) {
    GRPO_ASSIGN_OR_RETURN(std::string one, c.GetString(kKey));
    if (one.empty()) return absl::OkStatus();  // "": no teacher server, as when absent
    r->distill_teacher_servers = {one};
  } else {
    GRPO_ASSIGN_OR_RETURN(r->distill_teacher_servers, c.GetStringList(kKey));
  }
  if (r->distill_teacher_servers.empty()) return c.Error(kKey, "needs at least one HOST:PORT");
  if (!r->distill_teacher.empty()) return c.Error(kKey, "give one of distill.teacher and distill.teacher_server, not both");
  for (size_t i = 0; i < r->distill_teacher_servers.size(); ++i) {
    const std::string& e = r->distill_teacher_servers[i];
    const std::string key = list ? std::string(kKey) + "." + std::to_string(i) : std::string(kKey);
    absl::StatusOr<ListenAddress> at = ParseListenAddress(e);
    if (!at.ok()) return c.Error(key, std::string(at.status().message()));
    if (at->port == 0) return c.Error(key, "needs the server's port (1..65535), got 0");
    for (size_t j = 0; j < i; ++j) {
      if (r->distill_teacher_servers[j] == e) return c.Error(key, e + " is listed twice");
    }
  }
  return absl::OkStatus();
}

absl::Status ParseTools(const Config& c, TrainRecipe* r) {
  GRPO_ASSIGN_OR_RETURN(r->tool_environment, c.GetStringOr("tools.environment", "none"));
  if (r->tool_environment != "none" && r->tool_environment != "calculator" && r->tool_environment != "python" &&
      r->tool_environment != "plugin") {
    return c.Error("tools.environment",
                   "unknown environment '" + r->tool_environment + "' (none, calculator, python, plugin)");
  }
  GRPO_RETURN_IF_ERROR(ParseToolPlugin(c, r));
  if (r->tool_environment == "python") r->tool_tags = PythonToolTags();  // fenced blocks unless set below
  GRPO_ASSIGN_OR_RETURN(r->max_tool_calls, c.GetIntOr("tools.max_calls", 2));
  if (r->max_tool_calls < 0 || r->max_tool_calls > kMaxCount) {
    return c.Error("tools.max_calls", "must be in [0, " + std::to_string(kMaxCount) + "]");
  }
  GRPO_ASSIGN_OR_RETURN(r->max_tool_output_tokens, c.GetIntOr("tools.max_output_tokens", 32));
  GRPO_RETURN_IF_ERROR(Positive(c, "tools.max_output_tokens", r->max_tool_output_tokens));
  GRPO_ASSIGN_OR_RETURN(r->tool_call_threads, c.GetIntOr("tools.call_threads", r->tool_call_threads));
  if (r->tool_call_threads < 0 || r->tool_call_threads > 256) {
    return c.Error("tools.call_threads", "must be in [0, 256] (0: calls run on the engine's loop thread)");
  }
  ToolTags& t = r->tool_tags;
  for (auto [key, field] : {std::pair{"tools.call_start", &t.call_start}, std::pair{"tools.call_end", &t.call_end},
                            std::pair{"tools.result_start", &t.result_start}, std::pair{"tools.result_end", &t.result_end}}) {
    GRPO_ASSIGN_OR_RETURN(*field, c.GetStringOr(key, *field));
    if (field->empty()) return c.Error(key, "must not be empty");
  }
  const bool tools = r->tool_environment != "none";
  if (!tools && r->pretrain.teacher_mix.tool > 0) {
    return c.Error("pretrain.teacher_mix.tool", "teaches tool calls, which need a tools.environment to run them");
  }
  r->pretrain.teacher_mix.markers = {t.call_start, t.call_end, t.result_start, t.result_end};
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainRecipe> ParseRecipe(const Config& c) {
  GRPO_RETURN_IF_ERROR(c.CheckKnownKeys(KnownKeys()));
  TrainRecipe r;
  r.source = c;
  GRPO_ASSIGN_OR_RETURN(r.name, c.GetString("run.name"));
  if (r.name.empty() || r.name.find('/') != std::string::npos || r.name == "." || r.name == "..") {
    return c.Error("run.name", "must be a non-empty directory name without '/'");
  }
  GRPO_ASSIGN_OR_RETURN(r.output_dir, c.GetStringOr("run.output_dir", "runs"));
  GRPO_ASSIGN_OR_RETURN(int64_t seed, c.GetIntOr("run.seed", 0));
  r.seed = static_cast<uint64_t>(seed);
  GRPO_ASSIGN_OR_RETURN(r.backend, c.GetStringOr("backend", kDefaultBackendName));
  if (r.backend.empty()) return c.Error("backend", "must name a backend (e.g. cpu)");

  GRPO_ASSIGN_OR_RETURN(r.tokenizer_builtin, c.GetStringOr("tokenizer.builtin", ""));
  GRPO_ASSIGN_OR_RETURN(r.tokenizer_path, c.GetStringOr("tokenizer.path", ""));
  if (r.tokenizer_builtin.empty() == r.tokenizer_path.empty()) {
    return c.Error("tokenizer", "give exactly one of tokenizer.builtin and tokenizer.path");
  }

  GRPO_ASSIGN_OR_RETURN(r.model_path, c.GetStringOr("model.path", ""));
  // `model.init: null` (e.g. --set model.init=null next to --set model.path=DIR) means no init.
  const bool init_given = c.json().contains("model") && c.json()["model"].is_object() &&
                          c.json()["model"].contains("init") && c.json()["model"]["init"].is_object();
  if (init_given) {
    GRPO_ASSIGN_OR_RETURN(r.model_preset, c.GetStringOr("model.init.preset", ""));
    if (c.Has("model.init.config")) {
      GRPO_ASSIGN_OR_RETURN(Config mc, c.Sub("model.init.config"));
      r.model_config = mc.json();
    }
  }
  const bool has_init = !r.model_preset.empty() || !r.model_config.empty();
  if (r.model_path.empty() == !has_init) {
    return c.Error("model", "give exactly one of model.path and model.init (preset and/or config)");
  }
  if (init_given) {
    GRPO_ASSIGN_OR_RETURN(int64_t init_seed, c.GetIntOr("model.init.seed", 0));
    r.init_seed = static_cast<uint64_t>(init_seed);
    GRPO_ASSIGN_OR_RETURN(r.init_std, c.GetDoubleOr("model.init.std", 0.02));
    if (!(std::isfinite(r.init_std) && r.init_std > 0)) return c.Error("model.init.std", "must be a finite number > 0");
  }

  GRPO_RETURN_IF_ERROR(ParseEnum(c, "data.source", ParseDataSource, &r.data_source));
  GRPO_ASSIGN_OR_RETURN(r.prompt_template, c.GetStringOr("data.prompt_template", "{question}"));
  GRPO_ASSIGN_OR_RETURN(int64_t digits, c.GetIntOr("data.addition.digits", 2));
  r.addition.digits = static_cast<int>(digits);
  GRPO_ASSIGN_OR_RETURN(r.addition.held_out_fraction, c.GetDoubleOr("data.addition.held_out_fraction", 0.1));
  if (absl::Status v = data::Validate(r.addition); !v.ok()) return c.Error("data.addition", std::string(v.message()));
  GRPO_ASSIGN_OR_RETURN(r.train_path, c.GetStringOr("data.jsonl.train", ""));
  GRPO_ASSIGN_OR_RETURN(r.eval_path, c.GetStringOr("data.jsonl.eval", ""));
  GRPO_ASSIGN_OR_RETURN(r.dataset_format, c.GetStringOr("data.jsonl.format", "generic"));
  GRPO_ASSIGN_OR_RETURN(r.max_bad_fraction, c.GetDoubleOr("data.max_bad_fraction", 0.1));
  if (!(r.max_bad_fraction >= 0 && r.max_bad_fraction <= 1)) {
    return c.Error("data.max_bad_fraction", "must be in [0, 1]");
  }
  if (r.data_source == DataSource::kJsonl && r.train_path.empty()) {
    return c.Error("data.jsonl.train", "required when data.source is jsonl");
  }

  GRPO_RETURN_IF_ERROR(ParseLmStage(c, "pretrain", &r.pretrain));
  GRPO_RETURN_IF_ERROR(ParseLmStage(c, "sft", &r.sft));

  GRPO_ASSIGN_OR_RETURN(r.prompts_per_step, c.GetIntOr("rollout.prompts_per_step", 8));
  GRPO_RETURN_IF_ERROR(Positive(c, "rollout.prompts_per_step", r.prompts_per_step));
  GRPO_ASSIGN_OR_RETURN(r.group_size, c.GetIntOr("rollout.group_size", 8));
  GRPO_RETURN_IF_ERROR(Positive(c, "rollout.group_size", r.group_size));
  GRPO_ASSIGN_OR_RETURN(r.max_new_tokens, c.GetIntOr("rollout.max_new_tokens", 256));
  GRPO_RETURN_IF_ERROR(Positive(c, "rollout.max_new_tokens", r.max_new_tokens));
  GRPO_ASSIGN_OR_RETURN(r.sampling.temperature, c.GetDoubleOr("rollout.temperature", 1.0));
  GRPO_ASSIGN_OR_RETURN(r.sampling.top_p, c.GetDoubleOr("rollout.top_p", 1.0));
  GRPO_ASSIGN_OR_RETURN(r.sampling.top_k, c.GetIntOr("rollout.top_k", 0));
  GRPO_ASSIGN_OR_RETURN(r.sampling.min_p, c.GetDoubleOr("rollout.min_p", 0.0));
  if (absl::Status v = ValidateSampling(r.sampling); !v.ok()) return c.Error("rollout", std::string(v.message()));
  GRPO_ASSIGN_OR_RETURN(r.stop_strings, c.GetStringListOr("rollout.stop_strings", {}));
  GRPO_RETURN_IF_ERROR(ParseEnum(c, "rollout.serve_format", ParseServeFormat, &r.serve_format));
  GRPO_ASSIGN_OR_RETURN(r.kv_memory_mb, c.GetIntOr("rollout.kv_memory_mb", 256));
  GRPO_RETURN_IF_ERROR(Positive(c, "rollout.kv_memory_mb", r.kv_memory_mb));
  GRPO_ASSIGN_OR_RETURN(r.routing_replay, c.GetBoolOr("rollout.routing_replay", true));
  GRPO_ASSIGN_OR_RETURN(r.overlap, c.GetBoolOr("rollout.overlap", false));
  GRPO_ASSIGN_OR_RETURN(r.rollout_endpoints, c.GetStringListOr("rollout.endpoints", {}));
  GRPO_RETURN_IF_ERROR(ParseMaxStaleness(c, &r));
  GRPO_ASSIGN_OR_RETURN(r.batch_invariant, c.GetBoolOr("rollout.batch_invariant", false));
  if (r.batch_invariant && r.serve_format != WeightFormat::kF32) {
    return c.Error("rollout.batch_invariant", "needs rollout.serve_format: f32 (the rollout must multiply the "
                                              "learner's own f32 weights for its logprobs to be the learner's)");
  }
  GRPO_RETURN_IF_ERROR(ParseTools(c, &r));

  if (!c.Has("reward.rules")) return c.Error("reward.rules", "required: the reward rules");
  {
    nlohmann::json tree = {{"rules", c.json()["reward"]["rules"]}};
    GRPO_ASSIGN_OR_RETURN(r.rules, Config::FromJson(std::move(tree), c.name() + " (reward)"));
  }
  GRPO_ASSIGN_OR_RETURN(r.reward_endpoints, c.GetStringListOr("reward.endpoints", {}));

  GRPO_RETURN_IF_ERROR(ParseEnum(c, "learner.precision", ParsePrecision, &r.learner_precision));
  GRPO_ASSIGN_OR_RETURN(r.bucket_mb, c.GetDoubleOr("learner.bucket_mb", r.bucket_mb));
  if (!(r.bucket_mb > 0 && r.bucket_mb * (1 << 20) / 4 >= 1 && r.bucket_mb <= 8191)) {
    return c.Error("learner.bucket_mb", "must be a size in MiB above 0 and at most 8191");
  }
  GRPO_ASSIGN_OR_RETURN(r.overlap_grad_reduce, c.GetBoolOr("learner.overlap_grad_reduce", r.overlap_grad_reduce));
  GRPO_RETURN_IF_ERROR(ParseEnum(c, "algorithm.objective", ParseObjective, &r.objective));
  r.loss = PolicyLossPreset(r.objective);
  r.advantage = AdvantagePreset(r.objective);
  GRPO_ASSIGN_OR_RETURN(r.loss.clip_eps_low, c.GetDoubleOr("algorithm.clip_eps_low", r.loss.clip_eps_low));
  GRPO_ASSIGN_OR_RETURN(r.loss.clip_eps_high, c.GetDoubleOr("algorithm.clip_eps_high", r.loss.clip_eps_high));
  GRPO_RETURN_IF_ERROR(ParseEnum(c, "algorithm.ratio_level", ParseRatioLevel, &r.loss.ratio_level));
  GRPO_RETURN_IF_ERROR(ParseEnum(c, "algorithm.aggregation", ParseLossAggregation, &r.loss.aggregation));
  GRPO_ASSIGN_OR_RETURN(r.loss.norm_length,
                        c.GetDoubleOr("algorithm.norm_length", r.loss.norm_length > 0
                                                                   ? r.loss.norm_length
                                                                   : static_cast<double>(r.max_new_tokens)));
  GRPO_ASSIGN_OR_RETURN(r.loss.kl_beta, c.GetDoubleOr("algorithm.kl_beta", r.loss.kl_beta));
  GRPO_RETURN_IF_ERROR(ParseEnum(c, "algorithm.kl_estimator", ParseKlEstimator, &r.loss.kl_estimator));
  GRPO_RETURN_IF_ERROR(ParseEnum(c, "algorithm.is_correction", ParseIsCorrection, &r.loss.is_correction));
  GRPO_ASSIGN_OR_RETURN(r.loss.is_cap, c.GetDoubleOr("algorithm.is_cap", r.loss.is_cap));
  GRPO_ASSIGN_OR_RETURN(r.loss.sapo_tau_pos, c.GetDoubleOr("algorithm.sapo_tau_pos", r.loss.sapo_tau_pos));
  GRPO_ASSIGN_OR_RETURN(r.loss.sapo_tau_neg, c.GetDoubleOr("algorithm.sapo_tau_neg", r.loss.sapo_tau_neg));
  GRPO_ASSIGN_OR_RETURN(r.loss.icepop_low, c.GetDoubleOr("algorithm.icepop_low", r.loss.icepop_low));
  GRPO_ASSIGN_OR_RETURN(r.loss.icepop_high, c.GetDoubleOr("algorithm.icepop_high", r.loss.icepop_high));
  if (absl::Status v = ValidatePolicyLossOptions(r.loss); !v.ok()) return c.Error("algorithm", std::string(v.message()));
  if (c.Has("algorithm.advantage_scale")) {
    GRPO_ASSIGN_OR_RETURN(std::string s, c.GetString("algorithm.advantage_scale"));
    if (s == "std") {
      r.advantage.scale = AdvantageScale::kStd;
    } else if (s == "none") {
      r.advantage.scale = AdvantageScale::kNone;
    } else {
      return c.Error("algorithm.advantage_scale", "must be 'std' or 'none'");
    }
  }
  GRPO_RETURN_IF_ERROR(
      ParseEnum(c, "algorithm.advantage_estimator", ParseAdvantageEstimator, &r.advantage.estimator));
  GRPO_ASSIGN_OR_RETURN(r.dynamic_sampling, c.GetBoolOr("algorithm.dynamic_sampling", r.objective == Objective::kDapo));
  GRPO_ASSIGN_OR_RETURN(r.max_sampling_rounds, c.GetIntOr("algorithm.max_sampling_rounds", 3));
  GRPO_RETURN_IF_ERROR(Positive(c, "algorithm.max_sampling_rounds", r.max_sampling_rounds));

  GRPO_ASSIGN_OR_RETURN(r.schedule.lr, c.GetDoubleOr("optimizer.lr", 1e-6));
  GRPO_ASSIGN_OR_RETURN(r.schedule.warmup_steps, c.GetIntOr("optimizer.warmup_steps", 0));
  GRPO_RETURN_IF_ERROR(ParseEnum(c, "optimizer.schedule", ParseLrDecay, &r.schedule.decay));
  GRPO_ASSIGN_OR_RETURN(r.schedule.min_lr_ratio, c.GetDoubleOr("optimizer.min_lr_ratio", 0.0));
  if (c.Has("optimizer.betas")) {
    const auto& b = c.json()["optimizer"]["betas"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number() || !b[1].is_number()) {
      return c.Error("optimizer.betas", "must be a list of two numbers");
    }
    r.adamw.beta1 = b[0].get<double>();
    r.adamw.beta2 = b[1].get<double>();
  }
  GRPO_ASSIGN_OR_RETURN(r.adamw.eps, c.GetDoubleOr("optimizer.eps", 1e-8));
  GRPO_ASSIGN_OR_RETURN(r.adamw.weight_decay, c.GetDoubleOr("optimizer.weight_decay", 0.0));
  GRPO_ASSIGN_OR_RETURN(r.max_grad_norm, c.GetDoubleOr("optimizer.max_grad_norm", 1.0));
  GRPO_ASSIGN_OR_RETURN(r.mini_batches, c.GetIntOr("optimizer.mini_batches", 1));
  GRPO_RETURN_IF_ERROR(Positive(c, "optimizer.mini_batches", r.mini_batches));
  GRPO_ASSIGN_OR_RETURN(r.epochs, c.GetIntOr("optimizer.epochs", 1));
  GRPO_RETURN_IF_ERROR(Positive(c, "optimizer.epochs", r.epochs));

  GRPO_ASSIGN_OR_RETURN(r.steps, c.GetIntOr("train.steps", 10));
  if (r.steps < 0) return c.Error("train.steps", "must be >= 0");
  r.schedule.total_steps = std::max<int64_t>(r.steps * r.mini_batches * r.epochs, r.schedule.warmup_steps);
  if (absl::Status v = ValidateLrSchedule(r.schedule); !v.ok()) return c.Error("optimizer", std::string(v.message()));
  GRPO_ASSIGN_OR_RETURN(r.eval_every, c.GetIntOr("train.eval_every", 0));
  GRPO_ASSIGN_OR_RETURN(r.eval_size, c.GetIntOr("train.eval_size", 100));
  if (r.eval_size < 0 || r.eval_size > kMaxCount) {
    return c.Error("train.eval_size", "must be in [0, " + std::to_string(kMaxCount) + "]");
  }
  GRPO_ASSIGN_OR_RETURN(r.eval_samples, c.GetIntOr("train.eval_samples", 1));
  GRPO_RETURN_IF_ERROR(Positive(c, "train.eval_samples", r.eval_samples));
  GRPO_ASSIGN_OR_RETURN(r.eval_temperature, c.GetDoubleOr("train.eval_temperature", 1.0));
  GRPO_ASSIGN_OR_RETURN(r.checkpoint_every, c.GetIntOr("train.checkpoint_every", 0));
  if (r.max_staleness > 0 && r.loss.is_correction == IsCorrection::kNone) {
    return c.Error(c.Has("rollout.max_staleness") ? "rollout.max_staleness" : "rollout.overlap",
                   "off-policy samples need algorithm.is_correction "
                   "(e.g. token_tis, seq_tis_geo or icepop) to correct their staleness");
  }
  GRPO_ASSIGN_OR_RETURN(r.distill_teacher, c.GetStringOr("distill.teacher", ""));
  GRPO_RETURN_IF_ERROR(ParseTeacherServers(c, &r));
  GRPO_ASSIGN_OR_RETURN(r.distill_coef, c.GetDoubleOr("distill.coef", 1.0));
  GRPO_ASSIGN_OR_RETURN(r.distill_rule_rewards, c.GetBoolOr("distill.rule_rewards", true));
  if (!(r.distill_coef > 0 && std::isfinite(r.distill_coef))) {
    return c.Error("distill.coef", "must be finite and > 0");
  }
  if (c.Has("distill.divergence")) {
    GRPO_ASSIGN_OR_RETURN(const std::string name, c.GetString("distill.divergence"));
    if (name == "reverse_kl") {
      r.distill_divergence = Divergence::kReverseKl;
    } else if (name == "forward_kl") {
      r.distill_divergence = Divergence::kForwardKl;
    } else if (name != "sampled") {
      return c.Error("distill.divergence", "unknown \"" + name + "\" (sampled, reverse_kl or forward_kl)");
    }
  }
  if (r.distill_divergence && !r.distill_teacher_servers.empty()) {
    return c.Error("distill.divergence", "reverse_kl and forward_kl need the teacher's whole distribution, which "
                                         "only an embedded teacher (distill.teacher) gives; a teacher server "
                                         "returns the sampled tokens' logprobs (use divergence sampled)");
  }
  if (!r.distill_divergence && (!r.distill_teacher.empty() || !r.distill_teacher_servers.empty()) &&
      r.loss.surrogate == Surrogate::kGmpo) {
    return c.Error(r.distill_teacher.empty() ? "distill.teacher_server" : "distill.teacher", "distillation needs per-token advantages, which the gmpo objective does "
                                      "not take (one term per sequence); use grpo, dr_grpo, dapo, gspo, cispo or sapo");
  }
  if (r.prompts_per_step % r.mini_batches != 0) {
    return c.Error("optimizer.mini_batches", "must divide rollout.prompts_per_step");
  }
  return r;
}

absl::StatusOr<TrainRecipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides) {
  GRPO_ASSIGN_OR_RETURN(Config c, Config::LoadFile(path));
  GRPO_RETURN_IF_ERROR(c.ApplyOverrides(overrides));
  return ParseRecipe(c);
}

absl::StatusOr<ModelConfig> RecipeModelConfig(const TrainRecipe& r) {
  if (!r.model_path.empty()) {
    absl::StatusOr<ModelConfig> m = ModelConfig::Load(r.model_path);
    if (!m.ok()) return grpo::WithContext(m.status(), "model.path");
    return m;
  }
  nlohmann::json tree = nlohmann::json::object();
  if (!r.model_preset.empty()) {
    GRPO_ASSIGN_OR_RETURN(ModelConfig preset, PresetConfig(r.model_preset));
    tree = preset.ToJson();
  }
  for (const auto& [k, v] : r.model_config.items()) tree[k] = v;
  GRPO_ASSIGN_OR_RETURN(Config cfg, Config::FromJson(tree, "model.init.config"));
  absl::StatusOr<ModelConfig> m = ModelConfig::FromConfig(cfg);
  if (!m.ok()) return grpo::WithContext(m.status(), "model.init");
  return m;
}

namespace {

constexpr int64_t kSampleBytes = 128;  // a sample's bookkeeping: vectors, reward, proto, at the least
constexpr int64_t kTokenBytes = 12;    // per completion token: id, rollout logprob, learner logprob

std::string Key(const char* key, int64_t v) { return std::string(key) + " " + std::to_string(v); }

}  // namespace

absl::StatusOr<MemoryPlan> PlanTrainingMemory(const TrainRecipe& r, const ModelConfig& m, bool sft) {
  MemoryPlan plan;
  AddModelWeights(m, WeightFormat::kF32, /*training=*/true, "policy", &plan);
  if (r.learner_precision == DType::kBF16) {
    // The compute copies (the norms they count beside the matrices are a rounding error).
    AddModelWeights(m, WeightFormat::kBF16, false, "policy's bf16 compute copy (learner.precision bf16)", &plan);
  }
  // Activations of a next-token batch (pretrain, sft): sequences of at least 2 tokens, layer
  // inputs kept at the least.
  const auto add_lm_stage = [&](const char* stage, const LmStageRecipe& s) {
    const std::string key = std::string(stage) + ".batch_size";
    plan.Add(std::string(stage) + " activations (" + Key(key.c_str(), s.batch_size) + " sequences)",
             ActivationBytes(m, CheckedInt64(s.batch_size) * 2, true, true));
  };
  if (sft) {
    add_lm_stage("sft", r.sft);
    return plan;
  }
  if (r.pretrain.steps > 0) add_lm_stage("pretrain", r.pretrain);
  if (r.max_new_tokens >= m.max_position_embeddings) {
    return r.source.Error("rollout.max_new_tokens", "is " + std::to_string(r.max_new_tokens) +
                                                        ": no room for a prompt within the model's "
                                                        "max_position_embeddings (" +
                                                        std::to_string(m.max_position_embeddings) + ")");
  }
  if (r.loss.kl_beta > 0) {
    AddModelWeights(m, WeightFormat::kF32, false, "reference model (algorithm.kl_beta > 0)", &plan);
  }
  if (r.rollout_endpoints.empty()) {
    AddModelWeights(m, r.serve_format, false, "rollout engine", &plan);
    plan.Add("rollout KV cache (" + Key("rollout.kv_memory_mb", r.kv_memory_mb) + ")",
             CheckedInt64(r.kv_memory_mb) * (int64_t{1} << 20));
  }
  // One step's samples, each at full length: prompt (at least a token) + max_new_tokens.
  const int64_t rounds = r.dynamic_sampling ? r.max_sampling_rounds : 1;
  const CheckedInt64 samples = CheckedInt64(r.prompts_per_step) * r.group_size * rounds;
  const std::string sample_keys = Key("rollout.prompts_per_step", r.prompts_per_step) + " x " +
                                  Key("rollout.group_size", r.group_size) +
                                  (rounds > 1 ? " x " + Key("algorithm.max_sampling_rounds", rounds) : "") + " of " +
                                  Key("rollout.max_new_tokens", r.max_new_tokens);
  plan.Add("samples of a step (" + sample_keys + ")",
           samples * (CheckedInt64(r.max_new_tokens) * kTokenBytes + kSampleBytes));
  const int64_t len = r.max_new_tokens + 1;
  const CheckedInt64 per_update = CheckedInt64(r.prompts_per_step / r.mini_batches) * r.group_size;
  plan.Add("learner activations at full length (" + Key("rollout.prompts_per_step", r.prompts_per_step) + " / " +
               Key("optimizer.mini_batches", r.mini_batches) + " x " + Key("rollout.group_size", r.group_size) +
               " sequences of " + std::to_string(len) + " tokens)",
           ActivationBytes(m, per_update * len, true));
  const CheckedInt64 eval = CheckedInt64(r.eval_size) * r.eval_samples;
  plan.Add("evaluation samples (" + Key("train.eval_size", r.eval_size) + " x " +
               Key("train.eval_samples", r.eval_samples) + ")",
           eval * (CheckedInt64(r.max_new_tokens) * kTokenBytes + kSampleBytes));
  return plan;
}

absl::Status CheckTrainingMemory(const TrainRecipe& recipe, bool sft) {
  GRPO_ASSIGN_OR_RETURN(ModelConfig model, RecipeModelConfig(recipe));
  GRPO_ASSIGN_OR_RETURN(MemoryPlan plan, PlanTrainingMemory(recipe, model, sft));
  return plan.Check(std::string("the recipe ") + recipe.source.name());
}

}  // namespace grpo
