#include "deploy/slurm_job.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/file.h"
#include "model/presets.h"
#include "tokenizer/builtin.h"

namespace grpo::deploy {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kExecutable = 0777;  // permission bits of the scripts, before the umask

const std::vector<std::string> kClusterKeys = {
    "partition", "account", "qos", "time", "constraint", "sbatch", "output_dir", "grpo",
    "colocate", "exclusive", "cpu_bind", "max_requeues", "service_restarts", "rendezvous_timeout",
    "health_timeout", "stop_grace", "nccl", "env", "train_args",
    "learner.nodes", "learner.tasks", "learner.gpus_per_task", "learner.cpus_per_task", "learner.mem",
    "rollout.nodes", "rollout.tasks", "rollout.gpus_per_task", "rollout.cpus_per_task", "rollout.mem",
    "rollout.args",
    "reward.nodes", "reward.tasks", "reward.gpus_per_task", "reward.cpus_per_task", "reward.mem", "reward.args"};

std::string ScalarText(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  return v.dump();
}

absl::StatusOr<std::string> MemString(const Config& c, const std::string& path) {
  if (!c.Has(path)) return std::string();
  const absl::Status as_string = c.GetString(path).status();
  if (as_string.ok()) return c.GetString(path);
  GRPO_ASSIGN_OR_RETURN(int64_t mb, c.GetInt(path));
  return std::to_string(mb);  // Slurm reads a bare number as MiB
}

absl::StatusOr<SlurmRole> ReadRole(const Config& c, const std::string& role, int64_t default_tasks) {
  SlurmRole r;
  GRPO_ASSIGN_OR_RETURN(r.tasks, c.GetIntOr(role + ".tasks", default_tasks));
  GRPO_ASSIGN_OR_RETURN(r.nodes, c.GetIntOr(role + ".nodes", r.tasks > 0 ? 1 : 0));
  GRPO_ASSIGN_OR_RETURN(r.gpus_per_task, c.GetIntOr(role + ".gpus_per_task", 0));
  GRPO_ASSIGN_OR_RETURN(r.cpus_per_task, c.GetIntOr(role + ".cpus_per_task", 1));
  GRPO_ASSIGN_OR_RETURN(r.mem, MemString(c, role + ".mem"));
  GRPO_ASSIGN_OR_RETURN(r.args, c.GetStringOr(role + ".args", ""));
  if (r.tasks < 0) return c.Error(role + ".tasks", "must be >= 0");
  if (r.tasks == 0) {
    r.nodes = 0;
    return r;
  }
  if (r.nodes < 1) return c.Error(role + ".nodes", "must be >= 1 when the role has tasks");
  if (r.nodes > r.tasks) {
    return c.Error(role + ".nodes", "is " + std::to_string(r.nodes) + " but the role has only " +
                                        std::to_string(r.tasks) + " tasks (one task needs one node at most)");
  }
  if (r.gpus_per_task < 0) return c.Error(role + ".gpus_per_task", "must be >= 0");
  if (r.cpus_per_task < 1) return c.Error(role + ".cpus_per_task", "must be >= 1");
  return r;
}

std::string Absolute(const std::string& p) {
  if (p.empty()) return p;
  return fs::absolute(fs::path(p)).lexically_normal().string();
}

std::string SrunArray(const char* name, const SlurmRole& r) {
  std::string s = std::string(name) + "=(--nodes=" + std::to_string(r.nodes) + " --ntasks=" + std::to_string(r.tasks) +
                  " --cpus-per-task=" + std::to_string(r.cpus_per_task);
  if (r.gpus_per_task > 0) {
    s += " --gpus-per-task=" + std::to_string(r.gpus_per_task) + " --gpu-bind=per_task:" + std::to_string(r.gpus_per_task);
  }
  if (!r.mem.empty()) s += " --mem=" + ShellQuote(r.mem);
  return s + ")";
}

// The model and tokenizer the rollout servers start from (they get the trainer's weights before
// the first step): the recipe's own, or files WriteJobFiles writes into cluster/.
void SetRolloutModel(const TrainRecipe& recipe, SlurmJobSpec* s) {
  if (!recipe.model_path.empty()) {
    s->rollout_model = Absolute(recipe.model_path);
  } else {
    s->rollout_model = s->job_dir + "/cluster/rollout-model";
    s->rollout_init_config = s->job_dir + "/cluster/model_config.json";
  }
  if (!recipe.tokenizer_builtin.empty()) {
    s->rollout_tokenizer = s->job_dir + "/cluster/tokenizer";
  } else if (!recipe.tokenizer_path.empty()) {
    s->rollout_tokenizer = Absolute(recipe.tokenizer_path);
  }
}

// With tools, the rollout servers run the calls with the recipe's tools.call_threads (an engine
// takes its thread count when it starts), unless the role's args set it themselves.
void AddToolCallThreads(const TrainRecipe& recipe, SlurmRole* rollout) {
  if (recipe.tool_environment == "none" || rollout->args.find("--tools-call-threads") != std::string::npos) return;
  const std::string flag = "--tools-call-threads " + std::to_string(recipe.tool_call_threads);
  rollout->args = rollout->args.empty() ? flag : flag + " " + rollout->args;
}

}  // namespace

std::string ShellQuote(const std::string& s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char ch) {
        return std::isalnum(ch) || std::string_view("_./:,=@%+-").find(static_cast<char>(ch)) != std::string_view::npos;
      })) {
    return s;
  }
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

int64_t SlurmJobSpec::TotalNodes() const {
  if (colocate) return std::max({learner.nodes, rollout.nodes, reward.nodes});
  return learner.nodes + rollout.nodes + reward.nodes;
}

int64_t SlurmJobSpec::GpusPerNode() const {
  auto per_node = [](const SlurmRole& r) {
    return r.nodes == 0 ? 0 : (r.tasks + r.nodes - 1) / r.nodes * r.gpus_per_task;
  };
  if (colocate) return per_node(learner) + per_node(rollout) + per_node(reward);
  return std::max({per_node(learner), per_node(rollout), per_node(reward)});
}

// Every text the sbatch script is rendered from, named as the recipe (or the run) spells it.
// #SBATCH lines are not quoted, so a newline in any of them would start a line of shell: text
// with a control character (below 0x20, or DEL) is refused, whatever its place in the script.
static absl::Status CheckScriptText(const SlurmJobSpec& s, const std::string& recipe_name) {
  std::vector<std::pair<std::string, const std::string*>> texts = {
      {"run name", &s.job_name},          {"cluster.partition", &s.partition},
      {"cluster.account", &s.account},    {"cluster.qos", &s.qos},
      {"cluster.time", &s.time},          {"cluster.constraint", &s.constraint},
      {"cluster.cpu_bind", &s.cpu_bind},  {"cluster.train_args", &s.train_args},
      {"cluster.grpo", &s.grpo_bin},      {"output directory", &s.job_dir},
      {"model path", &s.rollout_model},   {"tokenizer path", &s.rollout_tokenizer},
      {"backend", &s.backend},
  };
  for (const auto& [role_name, role] : {std::pair{"learner", &s.learner}, std::pair{"rollout", &s.rollout},
                                        std::pair{"reward", &s.reward}}) {
    texts.emplace_back(std::string("cluster.") + role_name + ".mem", &role->mem);
    texts.emplace_back(std::string("cluster.") + role_name + ".args", &role->args);
  }
  for (size_t i = 0; i < s.sbatch_extra.size(); ++i) {
    texts.emplace_back("cluster.sbatch[" + std::to_string(i) + "]", &s.sbatch_extra[i]);
  }
  for (const auto& [name, value] : s.env) texts.emplace_back("environment variable " + name, &value);
  for (const auto& [what, text] : texts) {
    for (size_t i = 0; i < text->size(); ++i) {
      const unsigned char ch = static_cast<unsigned char>((*text)[i]);
      if (ch < 0x20 || ch == 0x7f) {
        char code[8];
        std::snprintf(code, sizeof code, "0x%02x", ch);
        return absl::InvalidArgumentError(recipe_name + ": " + what + " contains the control character " + code +
                                          " at offset " + std::to_string(i) +
                                          " (it would be written into the job script as is)");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SlurmJobSpec> SlurmJobFromRecipe(const TrainRecipe& recipe, const std::string& default_grpo_bin) {
  const Config& source = recipe.source;
  // Without a `cluster:` section every key takes its default, except that the services are
  // embedded: one node running the learner alone, as `grpo train` runs on one machine.
  const bool has_cluster = source.Has("cluster");
  Config c;
  if (has_cluster) {
    GRPO_ASSIGN_OR_RETURN(c, source.Sub("cluster"));
  }
  const int64_t default_service_tasks = has_cluster ? 1 : 0;
  GRPO_RETURN_IF_ERROR(c.CheckKnownKeys(kClusterKeys));
  SlurmJobSpec s;
  s.job_name = "grpo-" + recipe.name;
  GRPO_ASSIGN_OR_RETURN(s.partition, c.GetStringOr("partition", ""));
  GRPO_ASSIGN_OR_RETURN(s.account, c.GetStringOr("account", ""));
  GRPO_ASSIGN_OR_RETURN(s.qos, c.GetStringOr("qos", ""));
  GRPO_ASSIGN_OR_RETURN(s.time, c.GetStringOr("time", ""));
  GRPO_ASSIGN_OR_RETURN(s.constraint, c.GetStringOr("constraint", ""));
  GRPO_ASSIGN_OR_RETURN(s.sbatch_extra, c.GetStringListOr("sbatch", {}));
  GRPO_ASSIGN_OR_RETURN(std::string output_dir, c.GetStringOr("output_dir", recipe.output_dir));
  GRPO_ASSIGN_OR_RETURN(std::string grpo_bin, c.GetStringOr("grpo", default_grpo_bin));
  s.grpo_bin = Absolute(grpo_bin);
  GRPO_ASSIGN_OR_RETURN(s.colocate, c.GetBoolOr("colocate", false));
  GRPO_ASSIGN_OR_RETURN(s.exclusive, c.GetBoolOr("exclusive", true));
  GRPO_ASSIGN_OR_RETURN(s.cpu_bind, c.GetStringOr("cpu_bind", "cores"));
  GRPO_ASSIGN_OR_RETURN(s.max_requeues, c.GetIntOr("max_requeues", 2));
  GRPO_ASSIGN_OR_RETURN(s.service_restarts, c.GetIntOr("service_restarts", 5));
  GRPO_ASSIGN_OR_RETURN(s.rendezvous_timeout_s, c.GetIntOr("rendezvous_timeout", 600));
  GRPO_ASSIGN_OR_RETURN(s.health_timeout_s, c.GetIntOr("health_timeout", 60));
  GRPO_ASSIGN_OR_RETURN(s.stop_grace_s, c.GetIntOr("stop_grace", 300));
  GRPO_ASSIGN_OR_RETURN(s.train_args, c.GetStringOr("train_args", ""));
  if (s.max_requeues < 0) return c.Error("max_requeues", "must be >= 0");
  if (s.service_restarts < 0) return c.Error("service_restarts", "must be >= 0");
  if (s.rendezvous_timeout_s < 1) return c.Error("rendezvous_timeout", "must be >= 1 (seconds)");
  if (s.health_timeout_s < 1) return c.Error("health_timeout", "must be >= 1 (seconds)");
  if (s.stop_grace_s < 0) return c.Error("stop_grace", "must be >= 0 (seconds)");
  for (const char* map_key : {"nccl", "env"}) {
    if (!c.Has(map_key)) continue;
    GRPO_ASSIGN_OR_RETURN(Config m, c.Sub(map_key));
    for (const auto& [k, v] : m.json().items()) {
      if (v.is_object() || v.is_array() || v.is_null()) return m.Error(k, "must be a scalar");
      std::string name = k;
      if (std::string(map_key) == "nccl") {
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::toupper(ch); });
        name = "NCCL_" + name;
      }
      if (name.empty() || !std::all_of(name.begin(), name.end(), [](unsigned char ch) { return std::isalnum(ch) || ch == '_'; }) ||
          std::isdigit(static_cast<unsigned char>(name[0]))) {
        return m.Error(k, "is not a valid environment variable name");
      }
      s.env[name] = ScalarText(v);
    }
  }

  GRPO_ASSIGN_OR_RETURN(s.learner, ReadRole(c, "learner", 1));
  GRPO_ASSIGN_OR_RETURN(s.rollout, ReadRole(c, "rollout", default_service_tasks));
  GRPO_ASSIGN_OR_RETURN(s.reward, ReadRole(c, "reward", default_service_tasks));
  AddToolCallThreads(recipe, &s.rollout);
  if (s.TotalNodes() < 1) return absl::InvalidArgumentError(source.name() + ": cluster: the job has no nodes");

  s.job_dir = (fs::path(Absolute(output_dir)) / recipe.name).string();
  s.run_dir = s.job_dir + "/" + recipe.name;
  s.recipe = s.job_dir + "/cluster/recipe.yaml";
  s.reward_rules = s.job_dir + "/cluster/rules.yaml";
  s.backend = recipe.backend;
  if (s.rollout.tasks > 0) SetRolloutModel(recipe, &s);
  GRPO_RETURN_IF_ERROR(CheckScriptText(s, source.name()));
  return s;
}

std::string RenderSbatch(const SlurmJobSpec& s) {
  std::ostringstream h;
  auto opt = [&h](const std::string& name, const std::string& value) {
    if (!value.empty()) h << "#SBATCH --" << name << "=" << value << "\n";
  };
  opt("job-name", s.job_name);
  opt("nodes", std::to_string(s.TotalNodes()));
  opt("partition", s.partition);
  opt("account", s.account);
  opt("qos", s.qos);
  opt("time", s.time);
  opt("constraint", s.constraint);
  if (s.exclusive) {
    h << "#SBATCH --exclusive\n";
    opt("mem", "0");
  }
  if (s.GpusPerNode() > 0) opt("gpus-per-node", std::to_string(s.GpusPerNode()));
  h << "#SBATCH --requeue\n";
  if (s.stop_grace_s > 0) opt("signal", "B:USR1@" + std::to_string(s.stop_grace_s));
  opt("open-mode", "append");
  opt("output", s.job_dir + "/logs/job-%j.out");
  opt("comment", "grpo:" + s.job_dir);
  for (const std::string& extra : s.sbatch_extra) h << "#SBATCH " << extra << "\n";
  std::string header = h.str();
  header.pop_back();

  std::ostringstream v;
  v << "GRPO_BIN=" << ShellQuote(s.grpo_bin) << "\n";
  v << "GRPO_JOB_DIR=" << ShellQuote(s.job_dir) << "\n";
  v << "GRPO_RUN_DIR=" << ShellQuote(s.run_dir) << "\n";
  v << "GRPO_RECIPE=" << ShellQuote(s.recipe) << "\n";
  v << "GRPO_TRAIN_ARGS=" << ShellQuote(s.train_args) << "\n";
  v << "COLOCATE=" << (s.colocate ? 1 : 0) << "\n";
  v << "LEARNER_NODES=" << s.learner.nodes << "\n";
  v << "ROLLOUT_NODES=" << s.rollout.nodes << "\n";
  v << "REWARD_NODES=" << s.reward.nodes << "\n";
  v << "GRPO_ROLLOUT_TASKS=" << s.rollout.tasks << "\n";
  v << "GRPO_REWARD_TASKS=" << s.reward.tasks << "\n";
  v << "GRPO_ROLLOUT_MODEL=" << ShellQuote(s.rollout_model) << "\n";
  v << "ROLLOUT_INIT_CONFIG=" << ShellQuote(s.rollout_init_config) << "\n";
  v << "GRPO_ROLLOUT_TOKENIZER=" << ShellQuote(s.rollout_tokenizer) << "\n";
  v << "GRPO_ROLLOUT_ARGS=" << ShellQuote(s.rollout.args) << "\n";
  v << "GRPO_BACKEND=" << ShellQuote(s.backend) << "\n";
  v << "GRPO_REWARD_RULES=" << ShellQuote(s.reward_rules) << "\n";
  v << "GRPO_REWARD_ARGS=" << ShellQuote(s.reward.args) << "\n";
  v << "GRPO_SERVICE_RESTARTS=" << s.service_restarts << "\n";
  v << "GRPO_RENDEZVOUS_TIMEOUT=" << s.rendezvous_timeout_s << "\n";
  v << "GRPO_HEALTH_TIMEOUT=" << s.health_timeout_s << "\n";
  v << "MAX_REQUEUES=" << s.max_requeues << "\n";
  v << "SRUN_COMMON=(--kill-on-bad-exit=0 --cpu-bind=" << ShellQuote(s.cpu_bind) << (s.colocate ? " --overlap" : "")
    << ")\n";
  v << SrunArray("LEARNER_SRUN", s.learner) << "\n";
  v << SrunArray("ROLLOUT_SRUN", s.rollout) << "\n";
  v << SrunArray("REWARD_SRUN", s.reward) << "\n";
  for (const auto& [k, val] : s.env) v << "export " << k << "=" << ShellQuote(val) << "\n";
  std::string settings = v.str();
  settings.pop_back();

  std::string out = kSbatchTemplate;
  auto replace = [&out](const std::string& key, const std::string& value) {
    const size_t at = out.find(key);
    if (at != std::string::npos) out.replace(at, key.size(), value);
  };
  replace("@SBATCH@", header);
  replace("@SETTINGS@", settings);
  return out;
}

absl::StatusOr<std::string> WriteJobFiles(const SlurmJobSpec& s, const TrainRecipe& recipe) {
  std::error_code ec;
  for (const std::string& d : {s.job_dir + "/cluster", s.job_dir + "/logs", s.job_dir + "/rendezvous"}) {
    fs::create_directories(d, ec);
    if (ec) return absl::UnknownError("cannot create " + d + ": " + ec.message());
  }
  GRPO_RETURN_IF_ERROR(WriteFileAtomic(s.recipe, recipe.source.Dump()));
  GRPO_RETURN_IF_ERROR(WriteFileAtomic(s.reward_rules, recipe.rules.Dump()));
  GRPO_RETURN_IF_ERROR(WriteFileAtomic(s.job_dir + "/cluster/launch.sh", kLaunchScript, kExecutable));
  if (!s.rollout_init_config.empty()) {
    nlohmann::json tree = nlohmann::json::object();
    if (!recipe.model_preset.empty()) {
      GRPO_ASSIGN_OR_RETURN(ModelConfig preset, PresetConfig(recipe.model_preset));
      tree = preset.ToJson();
    }
    for (const auto& [k, v] : recipe.model_config.items()) tree[k] = v;
    GRPO_RETURN_IF_ERROR(WriteFileAtomic(s.rollout_init_config, tree.dump(2) + "\n"));
  }
  if (!recipe.tokenizer_builtin.empty() && !s.rollout_tokenizer.empty()) {
    fs::create_directories(s.rollout_tokenizer, ec);
    if (ec) return absl::UnknownError("cannot create " + s.rollout_tokenizer + ": " + ec.message());
    GRPO_RETURN_IF_ERROR(tokenizer::WriteBuiltinTokenizer(recipe.tokenizer_builtin, s.rollout_tokenizer));
  }
  const std::string script = s.job_dir + "/cluster/job.sbatch";
  GRPO_RETURN_IF_ERROR(WriteFileAtomic(script, RenderSbatch(s), kExecutable));
  return script;
}

}  // namespace grpo::deploy
