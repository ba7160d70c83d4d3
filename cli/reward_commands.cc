#include "cli/reward_commands.h"

#include <cstdio>
#include <memory>
#include <string>

#include "cli/subcommand.h"
#include "core/output_path.h"
#include "reward/jsonl.h"
#include "reward/plugin_worker.h"
#include "reward/rule_set.h"
#include "reward/service.h"

namespace grpo::cli {
namespace {

absl::StatusOr<reward::RuleSet> LoadRules(const std::string& rules_path, const std::string& rule_name) {
  if (!rules_path.empty() && !rule_name.empty())
    return absl::InvalidArgumentError("give --rules or --rule, not both");
  if (!rules_path.empty()) return reward::RuleSet::LoadFile(rules_path, {});
  if (!rule_name.empty()) return reward::RuleSet::Single(rule_name);
  return absl::InvalidArgumentError("one of --rules RULES.yaml or --rule NAME is required");
}

struct ScoreArgs {
  std::string rules, rule, input, output;
  bool strict = false;
  int threads = 0;
};

struct ServeArgs {
  std::string rules;
  std::string listen = "127.0.0.1:50051";
  size_t max_batch = 65536;
  size_t max_item_bytes = 8u << 20;
  int max_request_mb = reward::ServeOptions().max_request_mb;
  int max_concurrent_requests = reward::ServeOptions().max_concurrent_requests;
  int threads = 0;
};

struct WorkerArgs {
  std::string plugin, config = "{}";
  std::string abi = "reward";  // or "tool": a tool plugin (rollout/tool_plugin_abi.h)
  size_t max_output = 1024;    // tool plugins: bytes of one answer
};

}  // namespace

void AddRewardCommands(CLI::App& reward) {
  auto score_args = std::make_shared<ScoreArgs>();
  CLI::App* score = AddSubcommand(reward, "score", "Score completions from a JSONL file with rules",
                                  [a = score_args]() -> absl::Status {
                                    GRPO_RETURN_IF_ERROR(CheckOutputPath(
                                        "--output", a->output, {{"--input", a->input}, {"--rules", a->rules}}));
                                    GRPO_ASSIGN_OR_RETURN(reward::RuleSet rules, LoadRules(a->rules, a->rule));
                                    GRPO_ASSIGN_OR_RETURN(
                                        reward::ScoreFileStats st,
                                        reward::ScoreJsonlFile(rules, a->input, a->output, a->strict, a->threads));
                                    std::fprintf(stderr, "grpo reward score: %s\n",
                                                 st.tally.Summary("lines", "scored", "not scored").c_str());
                                    return absl::Status();
                                  });
  score->add_option("--rules", score_args->rules, "Rules file (YAML/JSON)");
  score->add_option("--rule", score_args->rule, "One built-in rule with default settings (e.g. math)");
  score->add_option("--input", score_args->input, "Input JSONL; - for stdin")->required();
  score->add_option("--output", score_args->output, "Output JSONL; - for stdout")->required();
  score->add_flag("--strict", score_args->strict, "Fail on the first malformed line");
  score->add_option("--threads", score_args->threads, "Scoring threads (default: all cores)");

  auto serve_args = std::make_shared<ServeArgs>();
  CLI::App* serve = AddSubcommand(reward, "serve", "Serve RewardService over gRPC",
                                  [a = serve_args]() -> absl::Status {
                                    GRPO_ASSIGN_OR_RETURN(reward::RuleSet rules,
                                                          reward::RuleSet::LoadFile(a->rules, {}));
                                    reward::ServeOptions o;
                                    o.listen = a->listen;
                                    o.max_batch_items = a->max_batch;
                                    o.max_item_bytes = a->max_item_bytes;
                                    o.max_request_mb = a->max_request_mb;
                                    o.max_concurrent_requests = a->max_concurrent_requests;
                                    o.threads = a->threads;
                                    return reward::ServeUntilSignal(
                                        std::make_shared<const reward::RuleSet>(std::move(rules)), o);
                                  });
  serve->add_option("--rules", serve_args->rules, "Rules file (YAML/JSON)")->required();
  serve->add_option("--listen", serve_args->listen,
                    "HOST:PORT, port 0..65535 (default 127.0.0.1:50051, loopback; port 0 picks a free one)");
  serve->add_option("--max-batch", serve_args->max_batch, "Most items per Score call");
  serve->add_option("--max-item-bytes", serve_args->max_item_bytes, "Largest item (text bytes)");
  serve->add_option("--threads", serve_args->threads, "Scoring threads per batch (default: all cores)");
  serve->add_option("--max-request-mb", serve_args->max_request_mb, "Largest request accepted, in MiB (default 64)");
  serve->add_option("--max-concurrent-requests", serve_args->max_concurrent_requests,
                    "Score calls served at once; more are refused with RESOURCE_EXHAUSTED (default 8)");

  auto worker_args = std::make_shared<WorkerArgs>();
  CLI::App* worker = reward.add_subcommand("plugin-worker", "Internal: a reward or tool plugin worker process");
  worker->group("");  // hidden from --help
  worker->add_option("--plugin", worker_args->plugin)->required();
  worker->add_option("--config", worker_args->config);
  worker->add_option("--abi", worker_args->abi)->check(CLI::IsMember({"reward", "tool"}));
  worker->add_option("--max-output", worker_args->max_output)->check(CLI::Range(size_t{1}, reward::kMaxToolOutputBytes));
  worker->callback([a = worker_args] {
    if (a->abi == "tool") throw CommandExit{reward::RunToolPluginWorker(a->plugin, a->config, a->max_output)};
    throw CommandExit{reward::RunPluginWorker(a->plugin, a->config)};
  });
}

}  // namespace grpo::cli
