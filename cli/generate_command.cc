#include "cli/generate_command.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cli/backend_flag.h"
#include "cli/subcommand.h"
#include "cli/token_ids.h"
#include "core/input_tally.h"
#include "core/jsonl.h"
#include "core/memory_plan.h"
#include "core/output_path.h"
#include "core/status.h"
#include "model/causal_lm.h"
#include "model/parameters.h"
#include "rollout/engine.h"
#include "rollout/sample_proto.h"
#include "rollout/tool_settings.h"
#include "tokenizer/tokenizer.h"

namespace grpo::cli {
namespace {

struct GenerateArgs {
  std::string model, input, output, backend;
  GroupRequest gen;  // prompt and seed are per line
  int64_t kv_memory_mb = 1024, max_batch = 256;
  std::string serve_format = "f32";
  bool strict = false, progress = false, stats = false;
  // --tools-*: the recipe's tools: keys; an empty marker takes the environment's default.
  ToolSettings tools{.tags = {"", "", "", ""}};
};

// The --tools-* flags as settings (markers left empty take the environment's defaults), checked.
absl::StatusOr<ToolSettings> ToolFlags(const GenerateArgs& a) {
  ToolSettings t = a.tools;
  const ToolTags defaults = DefaultToolTags(t.environment);
  for (auto [tag, fallback] : {std::pair{&t.tags.call_start, &defaults.call_start}, std::pair{&t.tags.call_end, &defaults.call_end},
                               std::pair{&t.tags.result_start, &defaults.result_start},
                               std::pair{&t.tags.result_end, &defaults.result_end}}) {
    if (tag->empty()) *tag = *fallback;
  }
  absl::Status valid = ValidateToolSettings(t);
  if (!valid.ok()) {  // name the flag, not the recipe key
    std::string message(valid.message());
    for (size_t at = message.find("tools."); at != std::string::npos; at = message.find("tools.", at + 1)) {
      message.replace(at, 6, "--tools-");
      for (size_t i = at + 8; i < message.size() && (std::islower(static_cast<unsigned char>(message[i])) || message[i] == '_'); ++i) {
        if (message[i] == '_') message[i] = '-';
      }
    }
    return absl::InvalidArgumentError(message);
  }
  return t;
}

// A sample's tool turns, for the output row.
nlohmann::json SpansJson(const SampleResult& s) {
  nlohmann::json spans = nlohmann::json::array();
  for (const EnvironmentSpan& e : s.environment_spans) {
    spans.push_back({{"first_token", e.first_token}, {"num_tokens", e.num_tokens}, {"tool", e.result.tool},
                     {"call", e.result.call}, {"arguments", e.result.arguments}, {"output", e.result.output}});
  }
  return spans;
}

// The number of rows of the input file, for the progress bar; 0 for standard input (which can
// be read only once) or a file that cannot be read.
int64_t CountRows(const std::string& path) {
  if (path == "-") return 0;
  absl::StatusOr<std::unique_ptr<JsonlReader>> reader = JsonlReader::Open(path);
  if (!reader.ok()) return 0;
  int64_t n = 0;
  JsonlRecord record;
  while ((*reader)->Next(&record)) ++n;
  return n;
}

// "\r[#####.....] 12/40 prompts, 345 tokens, 67.8 tok/s" on stderr.
void ShowProgress(int64_t done, int64_t total, int64_t tokens, std::chrono::steady_clock::time_point start) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * std::min<int64_t>(done, total) / total) : 0;
  std::fprintf(stderr, "\r[%s%s] %lld/%lld prompts, %lld tokens, %.1f tok/s", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total),
               static_cast<long long>(tokens), secs > 0 ? tokens / secs : 0.0);
  std::fflush(stderr);
}

absl::Status RunGenerate(const GenerateArgs& a) {
  GRPO_RETURN_IF_ERROR(CheckOutputPath("--output", a.output, {{"--input", a.input}, {"--model", a.model}}));
  GRPO_RETURN_IF_ERROR(ValidateSampling(a.gen.sampling));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model, LoadServingModel(a.model, a.backend, a.serve_format));
  Backend* const backend = &model->backend();  // a registered backend: outlives the model
  std::optional<tokenizer::Tokenizer> tokenizer;
  struct stat st;
  if (stat((a.model + "/tokenizer.json").c_str(), &st) == 0) {
    GRPO_ASSIGN_OR_RETURN(tokenizer::Tokenizer t, tokenizer::Tokenizer::Load(a.model));
    tokenizer = std::move(t);
  }
  if (!a.gen.stop_strings.empty() && !tokenizer) {
    return absl::InvalidArgumentError("--stop needs tokenizer.json in the model directory");
  }
  GRPO_ASSIGN_OR_RETURN(const ToolSettings tools, ToolFlags(a));
  if (tools.enabled() && !tokenizer) {
    return absl::InvalidArgumentError("--tools-environment needs tokenizer.json in the model directory");
  }
  GRPO_ASSIGN_OR_RETURN(const std::shared_ptr<Environment> environment, OpenToolEnvironment(tools));
  const int64_t vocab = model->config().vocab_size;
  // Declared before the engine: an early return destroys the engine (whose callbacks touch
  // these) first.
  std::mutex mu;
  std::condition_variable cv;
  std::map<int64_t, GroupResult> finished;  // by submission index
  struct Pending {
    nlohmann::json id;
  };
  std::map<int64_t, Pending> pending;
  // The KV cache is allocated whole when the engine starts: check the flag against memory first.
  if (a.kv_memory_mb <= 0) return absl::InvalidArgumentError("--kv-memory-mb must be positive");
  if (a.max_batch <= 0 || a.max_batch > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError("--max-batch must be in [1, 1048576]");
  }
  const CheckedInt64 kv_bytes = CheckedInt64(a.kv_memory_mb) * (int64_t{1} << 20);
  {
    MemoryPlan plan;
    plan.Add("KV cache (--kv-memory-mb " + std::to_string(a.kv_memory_mb) + ")", kv_bytes);
    GRPO_RETURN_IF_ERROR(plan.Check("the KV cache"));
  }
  EngineOptions eo;
  eo.kv_memory_bytes = kv_bytes.value();
  eo.max_running_sequences = a.max_batch;
  eo.tokenizer = tokenizer ? &*tokenizer : nullptr;
  eo.tool_call_threads = tools.call_threads;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<RolloutEngine> engine, RolloutEngine::Create(std::move(model), eo));
  backend->ResetTransferStats();  // --stats counts generation only, not loading the weights
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> in, JsonlReader::Open(a.input));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> out, JsonlWriter::Open(a.output));
  const bool progress = a.progress || isatty(STDERR_FILENO);
  const int64_t total_lines = progress ? CountRows(a.input) : 0;
  const auto start = std::chrono::steady_clock::now();

  // Lines are submitted as they are read (up to `window` in flight, so the engine batches
  // across prompts) and written in input order as their groups complete.
  const int64_t window = std::max<int64_t>(4 * a.max_batch, 16);
  int64_t next_write = 0, submitted = 0, tokens = 0;
  InputTally tally;  // used: prompts written; skipped: by reason
  auto write_ready = [&](bool wait_all) -> absl::Status {
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      while (finished.count(next_write)) {
        GroupResult g = std::move(finished[next_write]);
        finished.erase(next_write);
        Pending p = std::move(pending[next_write]);
        pending.erase(next_write);
        ++next_write;
        l.unlock();
        nlohmann::json row;
        if (!p.id.is_null()) row["id"] = p.id;
        row["samples"] = nlohmann::json::array();
        for (const SampleResult& s : g.samples) {
          nlohmann::json j = {{"tokens", s.tokens},
                              {"logprobs", s.logprobs},
                              {"finish_reason", FinishReasonName(s.finish_reason)}};
          if (tokenizer) {
            auto text = tokenizer->Decode(s.tokens);
            if (text.ok()) j["text"] = *text;
          }
          if (environment) j["environment_spans"] = SpansJson(s);
          tokens += static_cast<int64_t>(s.tokens.size());
          row["samples"].push_back(std::move(j));
        }
        GRPO_RETURN_IF_ERROR(out->Write(row));
        tally.Used();
        if (progress) ShowProgress(tally.total(), total_lines, tokens, start);
        l.lock();
      }
      const int64_t in_flight = submitted - next_write;
      if (in_flight == 0 || (!wait_all && in_flight < window)) return absl::OkStatus();
      cv.wait(l);
    }
  };

  JsonlRecord r;
  while (in->Next(&r)) {
    absl::Status bad = r.status;
    std::string reason = "bad line";
    std::vector<int32_t> prompt;
    const std::string line = in->path() + ":" + std::to_string(r.line);
    const std::string where = line + ": ";
    if (bad.ok()) {
      reason = "no usable prompt";
      if (r.value.contains("tokens")) {
        auto ids = TokenIdsOf(r, in->path(), "tokens", vocab);
        if (ids.ok()) {
          prompt = std::move(ids).value();
        } else {
          bad = ids.status();
        }
      } else if (r.value.contains("prompt") && r.value["prompt"].is_string()) {
        if (!tokenizer) {
          bad = absl::InvalidArgumentError(where + "a text \"prompt\" needs tokenizer.json in the model directory");
        } else {
          auto ids = tokenizer->Encode(r.value["prompt"].get<std::string>());
          if (ids.ok()) {
            prompt = std::move(ids).value();
          } else {
            bad = grpo::WithContext(ids.status(), line);
          }
        }
      } else {
        bad = absl::InvalidArgumentError(where + "needs \"tokens\" (ids) or \"prompt\" (text)");
      }
      if (bad.ok() && prompt.empty()) bad = absl::InvalidArgumentError(where + "empty prompt");
    }
    GroupRequest req = a.gen;
    req.environment = environment;
    req.max_tool_calls = tools.max_calls;
    req.max_tool_output_tokens = tools.max_output_tokens;
    if (bad.ok()) {
      req.prompt = std::move(prompt);
      req.seed = a.gen.seed * 1000003ULL + static_cast<uint64_t>(r.line);  // each line its own stream
      if (absl::Status v = engine->Validate(req); !v.ok()) {
        bad = grpo::WithContext(v, line);
        reason = "does not fit the model or the flags";
      }
    }
    if (!bad.ok()) {
      if (a.strict) return bad;
      if (progress) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "grpo generate: skipping %s\n", std::string(bad.message()).c_str());
      tally.Skip(reason, std::string(bad.message()));
      continue;
    }
    const int64_t index = submitted;
    {
      std::lock_guard<std::mutex> l(mu);
      pending[index].id = r.value.contains("id") ? r.value["id"] : nlohmann::json();
    }
    GroupCallbacks cb;
    cb.on_done = [&, index](GroupResult g) {
      std::lock_guard<std::mutex> l(mu);
      finished[index] = std::move(g);
      cv.notify_all();
    };
    GRPO_RETURN_IF_ERROR(engine->Submit(std::move(req), std::move(cb)).status());
    ++submitted;
    GRPO_RETURN_IF_ERROR(write_ready(false));
  }
  GRPO_RETURN_IF_ERROR(write_ready(true));
  GRPO_RETURN_IF_ERROR(in->status());
  if (progress) std::fprintf(stderr, "\n");
  // Every line skipped (say, the default --max-new-tokens on a short-context model): a failure,
  // and the output is not replaced by an empty file.
  GRPO_RETURN_IF_ERROR(tally.RequireSome("lines"));
  GRPO_RETURN_IF_ERROR(out->Close());
  std::fprintf(stderr, "grpo generate: %s; %lld tokens generated\n", tally.Summary("lines", "generated").c_str(),
               static_cast<long long>(tokens));
  if (a.stats) {
    const TransferStats ts = backend->transfer_stats();
    const nlohmann::json j = {
        {"backend", backend->name()},
        {"tokens", tokens},
        {"host_to_device_bytes", ts.host_to_device_bytes},
        {"device_to_host_bytes", ts.device_to_host_bytes},
        {"host_device_calls", ts.host_to_device_calls + ts.device_to_host_calls},
        {"host_device_bytes_per_token", tokens > 0 ? static_cast<double>(ts.total_bytes()) / tokens : 0.0}};
    std::fprintf(stderr, "%s\n", j.dump().c_str());
  }
  return absl::OkStatus();
}

}  // namespace

void AddGenerateSubcommand(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = AddSubcommand(app, "generate", "Sample completions (groups of n) from a model",
                                [a] { return RunGenerate(*a); });
  sub->add_option("--model", a->model, "model directory (HF layout)")->required();
  sub->add_option("--input", a->input, "JSONL of {\"tokens\": [..]} or {\"prompt\": \"text\"} (\"-\": stdin)")
      ->required();
  sub->add_option("--output", a->output, "JSONL of {\"samples\": [..]} (\"-\": stdout)")->required();
  sub->add_option("--n", a->gen.n, "samples per prompt (default 1)");
  sub->add_option("--temperature", a->gen.sampling.temperature, "0 = greedy (default 1)");
  sub->add_option("--top-p", a->gen.sampling.top_p, "nucleus sampling (default 1)");
  sub->add_option("--top-k", a->gen.sampling.top_k, "0 = no limit (default 0)");
  sub->add_option("--min-p", a->gen.sampling.min_p, "relative to the most likely token (default 0)");
  sub->add_option("--max-new-tokens", a->gen.max_new_tokens, "per sample (default 256)");
  sub->add_option("--seed", a->gen.seed, "random seed (default 0)");
  sub->add_option("--stop-token", a->gen.stop_tokens, "stop after this id (repeatable)");
  sub->add_option("--stop", a->gen.stop_strings, "stop once the text contains this string (repeatable; needs "
                                                 "tokenizer.json)");
  sub->add_option("--kv-memory-mb", a->kv_memory_mb, "KV cache budget in MiB (default 1024)");
  sub->add_option("--max-batch", a->max_batch, "most sequences decoding at once (default 256)");
  sub->add_option("--serve-format", a->serve_format,
                  "how the weights are held and multiplied: f32, bf16, fp8 (128x128 blocks) or stored (as the "
                  "checkpoint stores them) (default f32)");
  sub->add_flag("--progress", a->progress, "progress bar on stderr (default: when stderr is a terminal)");
  sub->add_flag("--strict", a->strict, "fail on the first bad line instead of skipping it");
  sub->add_option("--tools-environment", a->tools.environment,
                  "multi-turn tool use, as the recipe's tools.environment: none, calculator, python (sandboxed) "
                  "or plugin (default none; docs/tools.md)");
  sub->add_option("--tools-plugin", a->tools.plugin, "the tool plugin's shared library (with --tools-environment plugin)");
  sub->add_option("--tools-plugin-config", a->tools.plugin_config, "a JSON object for the plugin's create() (default {})");
  sub->add_option("--tools-timeout-ms", a->tools.timeout_ms, "per call of the python tool or a plugin (default 5000)");
  sub->add_option("--tools-max-calls", a->tools.max_calls, "tool calls per sample (default 2)");
  sub->add_option("--tools-max-output-tokens", a->tools.max_output_tokens, "tokens per tool result (default 32)");
  sub->add_option("--tools-call-threads", a->tools.call_threads,
                  "threads running tool calls while other samples decode, 0..256 (default 4; 0: on the engine's "
                  "loop thread)");
  sub->add_option("--tools-call-start", a->tools.tags.call_start, "the call's opening marker (default <tool_call>; python: ```python\\n)");
  sub->add_option("--tools-call-end", a->tools.tags.call_end, "the call's closing marker (default </tool_call>; python: \\n```)");
  sub->add_option("--tools-result-start", a->tools.tags.result_start, "the result's opening marker (default <tool_result>)");
  sub->add_option("--tools-result-end", a->tools.tags.result_end, "the result's closing marker (default </tool_result>)");
  AddBackendOption(sub, &a->backend, "default cpu");
  sub->add_flag("--stats", a->stats,
                "print one JSON line of host<->device traffic to stderr at the end "
                "(host_device_bytes_per_token, ...)");
}

}  // namespace grpo::cli
