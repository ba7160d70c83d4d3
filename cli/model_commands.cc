#include "cli/model_commands.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/backend_flag.h"
#include "cli/subcommand.h"
#include "cli/token_ids.h"
#include "core/config.h"
#include "core/input_tally.h"
#include "core/jsonl.h"
#include "core/memory_plan.h"
#include "core/output_path.h"
#include "model/causal_lm.h"
#include "model/model_memory.h"
#include "model/presets.h"

namespace grpo::cli {
namespace {

struct InitModelArgs {
  std::string config_path, preset, out, dtype = "f32";
  uint64_t seed = 0;
  double init_std = 0.02;
  uint64_t max_shard_bytes = 5'000'000'000ULL;
  bool info = false;
  bool overwrite = false;
};

// An existing, non-empty --out is another model (or anything else): kept unless --overwrite.
absl::Status CheckModelOut(const std::string& out, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(out, ec);
  if (ec || !fs::exists(st)) return absl::OkStatus();
  if (!fs::is_directory(st)) return absl::InvalidArgumentError("--out " + out + " exists and is not a directory");
  if (fs::directory_iterator(out, ec) == fs::directory_iterator() && !ec) return absl::OkStatus();  // empty
  if (overwrite) return absl::OkStatus();
  return absl::AlreadyExistsError("--out " + out + " already exists and is not empty" +
                                  (fs::exists(fs::path(out) / "config.json", ec) ? " (it holds a model)" : "") +
                                  "; pass --overwrite to write the new model over it");
}

std::string Gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

absl::Status RunInitModel(const InitModelArgs& a) {
  if (a.config_path.empty() == a.preset.empty()) {
    return absl::InvalidArgumentError("give exactly one of --config CONFIG.json and --preset NAME");
  }
  if (!(std::isfinite(a.init_std) && a.init_std > 0)) {
    return absl::InvalidArgumentError("--init-std must be a finite number > 0, got " + std::to_string(a.init_std));
  }
  if (!a.info && !a.out.empty()) GRPO_RETURN_IF_ERROR(CheckModelOut(a.out, a.overwrite));
  ModelConfig config;
  if (!a.preset.empty()) {
    GRPO_ASSIGN_OR_RETURN(config, PresetConfig(a.preset));
  } else {
    GRPO_ASSIGN_OR_RETURN(Config c, Config::LoadFile(a.config_path));
    GRPO_ASSIGN_OR_RETURN(config, ModelConfig::FromConfig(c));
  }
  DType storage = DType::kF32;
  if (a.dtype == "bf16") {
    storage = DType::kBF16;
  } else if (a.dtype == "fp8") {
    config.fp8_checkpoint = true;
    storage = DType::kBF16;
  } else if (a.dtype != "f32") {
    return absl::InvalidArgumentError("--dtype must be f32, bf16 or fp8, got '" + a.dtype + "'");
  } else {
    config.fp8_checkpoint = false;
  }
  const double params = static_cast<double>(config.NumParameters());
  std::fprintf(stderr, "%s: %.3f%s parameters; weights %s in f32, %s in bf16, ~%s in fp8\n",
               config.model_type.c_str(), params >= 1e9 ? params / 1e9 : params / 1e6,
               params >= 1e9 ? "B" : "M", Gib(params * 4).c_str(),
               Gib(params * 2).c_str(), Gib(params).c_str());
  if (a.info) {
    std::printf("%s\n", config.ToJson().dump(2).c_str());
    return absl::OkStatus();
  }
  if (a.out.empty()) return absl::InvalidArgumentError("--out DIR is required (or --info)");
  // The f32 weights, and for bf16 / fp8 storage the narrowed copies that are written.
  MemoryPlan plan;
  AddModelWeights(config, WeightFormat::kF32, /*training=*/false, "random", &plan);
  if (a.dtype != "f32") {
    AddModelWeights(config, a.dtype == "bf16" ? WeightFormat::kBF16 : WeightFormat::kFp8Block, false,
                    "model.safetensors", &plan);
  }
  GRPO_RETURN_IF_ERROR(grpo::WithContext(plan.Check("a random " + config.model_type),
                                         "use --info for memory planning"));
  const std::vector<Parameter> weights = InitParameters(config, a.seed, a.init_std);
  GRPO_RETURN_IF_ERROR(SaveModel(config, weights, a.out, a.max_shard_bytes, storage));
  std::fprintf(stderr, "wrote %s\n", a.out.c_str());
  return absl::OkStatus();
}

struct LogprobsArgs {
  std::string model, input, output, backend;
  std::string serve_format = "f32";
  bool strict = false;
  int64_t batch_tokens = 4096;
};

struct PendingLine {
  nlohmann::json id;
  std::vector<int32_t> tokens;
};

absl::Status RunLogprobs(const LogprobsArgs& a) {
  GRPO_RETURN_IF_ERROR(CheckOutputPath("--output", a.output, {{"--input", a.input}, {"--model", a.model}}));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model, LoadServingModel(a.model, a.backend, a.serve_format));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> in, JsonlReader::Open(a.input));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> out, JsonlWriter::Open(a.output));
  const auto start = std::chrono::steady_clock::now();
  int64_t sequences = 0, tokens = 0;
  InputTally tally;
  std::vector<PendingLine> pending;
  int64_t pending_tokens = 0;
  auto flush = [&]() -> absl::Status {
    if (pending.empty()) return absl::OkStatus();
    std::vector<std::vector<int32_t>> seqs;
    for (const PendingLine& p : pending) seqs.push_back(p.tokens);
    const TokenBatch batch = TokenBatch::FromSequences(seqs);
    GRPO_ASSIGN_OR_RETURN(ForwardOutput result, model->Forward(batch, {}));
    size_t at = 0;
    for (const PendingLine& p : pending) {
      const size_t n = p.tokens.empty() ? 0 : p.tokens.size() - 1;
      nlohmann::json row;
      if (!p.id.is_null()) row["id"] = p.id;
      row["logprobs"] = std::vector<float>(result.logprobs.begin() + at, result.logprobs.begin() + at + n);
      at += n;
      GRPO_RETURN_IF_ERROR(out->Write(row));
    }
    pending.clear();
    pending_tokens = 0;
    return absl::OkStatus();
  };
  // Lines longer than the model's positions, or whose forward pass alone would not fit in
  // memory, are bad lines; a batch is sent before it would outgrow the memory budget.
  const ModelConfig& config = model->config();
  auto forward_fits = [&](int64_t tokens) {
    MemoryPlan plan;
    plan.Add("activations (" + ModelSizeKeys(config) + ")", ActivationBytes(config, tokens, false));
    return plan.Check("its forward pass");
  };
  JsonlRecord record;
  while (in->Next(&record)) {
    PendingLine line;
    const char* reason = record.status.ok() ? "bad \"tokens\"" : "bad line";
    absl::StatusOr<std::vector<int32_t>> ids = record.status.ok()
        ? TokenIdsOf(record, in->path(), "tokens", config.vocab_size)
        : absl::StatusOr<std::vector<int32_t>>(record.status);
    if (ids.ok()) {
      const int64_t n = static_cast<int64_t>(ids->size());
      const std::string where = in->path() + ":" + std::to_string(record.line) + ": ";
      if (n > config.max_position_embeddings) {
        reason = "longer than max_position_embeddings";
        ids = absl::InvalidArgumentError(where + std::to_string(n) + " tokens are more than the model's " +
                                         "max_position_embeddings (" +
                                         std::to_string(config.max_position_embeddings) + ")");
      } else if (absl::Status fits = forward_fits(n); !fits.ok()) {
        reason = "forward pass over the memory budget";
        ids = grpo::WithContext(fits, where + std::to_string(n) + " tokens");
      }
    }
    if (!ids.ok()) {
      if (a.strict) return ids.status();
      std::fprintf(stderr, "grpo logprobs: skipping %s\n", std::string(ids.status().message()).c_str());
      tally.Skip(reason, std::string(ids.status().message()));
      continue;
    }
    tally.Used();
    line.tokens = std::move(ids).value();
    if (record.value.contains("id")) line.id = record.value["id"];
    const int64_t n = static_cast<int64_t>(line.tokens.size());
    if (!pending.empty() && !forward_fits(pending_tokens + n).ok()) {
      GRPO_RETURN_IF_ERROR(flush());
    }
    ++sequences;
    tokens += n;
    pending_tokens += n;
    pending.push_back(std::move(line));
    if (pending_tokens >= a.batch_tokens) GRPO_RETURN_IF_ERROR(flush());
  }
  GRPO_RETURN_IF_ERROR(in->status());
  GRPO_RETURN_IF_ERROR(flush());
  GRPO_RETURN_IF_ERROR(tally.RequireSome("lines"));  // every line skipped: the output stays as it was
  GRPO_RETURN_IF_ERROR(out->Close());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "grpo logprobs: %s; %lld sequences, %lld tokens, %.0f tokens/s\n",
               tally.Summary("lines", "scored").c_str(), static_cast<long long>(sequences),
               static_cast<long long>(tokens), tokens / std::max(secs, 1e-9));
  return absl::OkStatus();
}

}  // namespace

void AddInitModelSubcommand(CLI::App& app) {
  auto args = std::make_shared<InitModelArgs>();
  CLI::App* sub = AddSubcommand(app, "init-model", "Write a random model of any family in the HF layout",
                                [args] { return RunInitModel(*args); });
  sub->add_option("--config", args->config_path, "HF config.json of the architecture");
  sub->add_option("--preset", args->preset, "a named architecture instead of --config (see docs/model.md)");
  sub->add_option("--out", args->out, "output directory (config.json + model.safetensors)");
  sub->add_option("--seed", args->seed, "random seed (default 0)");
  sub->add_option("--init-std", args->init_std, "std of the normal init of weights, > 0 (default 0.02)");
  sub->add_option("--dtype", args->dtype, "storage: f32 (default), bf16, or fp8 (e4m3 128x128 blocks)");
  sub->add_option("--max-shard-bytes", args->max_shard_bytes, "shard above this size (default 5e9)");
  sub->add_flag("--info", args->info, "print the config, parameter count and memory; write nothing");
  sub->add_flag("--overwrite", args->overwrite, "write over an existing, non-empty --out directory");
}

void AddLogprobsSubcommand(CLI::App& app) {
  auto args = std::make_shared<LogprobsArgs>();
  CLI::App* sub = AddSubcommand(app, "logprobs", "Per-token log-probabilities of token sequences",
                                [args] { return RunLogprobs(*args); });
  sub->add_option("--model", args->model, "model directory (HF layout)")->required();
  sub->add_option("--input", args->input, "JSONL of {\"tokens\": [..]} (\"-\": stdin)")->required();
  sub->add_option("--output", args->output, "JSONL of {\"logprobs\": [..]} (\"-\": stdout)")->required();
  sub->add_flag("--strict", args->strict, "fail on the first bad line instead of skipping it");
  sub->add_option("--batch-tokens", args->batch_tokens, "tokens per forward pass (default 4096)");
  sub->add_option("--serve-format", args->serve_format,
                  "how the weights are held and multiplied, as generate's: f32, bf16, fp8 (128x128 blocks) "
                  "or stored (as the checkpoint stores them) (default f32)");
  AddBackendOption(sub, &args->backend, "default cpu");
}

}  // namespace grpo::cli
