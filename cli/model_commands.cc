#include "cli/model_commands.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/subcommand.h"
#include "cli/token_ids.h"
#include "core/config.h"
#include "core/jsonl.h"
#include "model/causal_lm.h"
#include "model/presets.h"

namespace grpo::cli {
namespace {

struct InitModelArgs {
  std::string config_path, preset, out, dtype = "f32";
  uint64_t seed = 0;
  double init_std = 0.02;
  uint64_t max_shard_bytes = 5'000'000'000ULL;
  bool info = false;
};

std::string Gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

Status RunInitModel(const InitModelArgs& a) {
  if (a.config_path.empty() == a.preset.empty()) {
    return Status::InvalidArgument("give exactly one of --config CONFIG.json and --preset NAME");
  }
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
    return Status::InvalidArgument("--dtype must be f32, bf16 or fp8, got '" + a.dtype + "'");
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
    return Status::Ok();
  }
  if (a.out.empty()) return Status::InvalidArgument("--out DIR is required (or --info)");
  const double available = static_cast<double>(sysconf(_SC_AVPHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  if (params * 4 * 2 > available) {
    return Status::ResourceExhausted("a random " + config.model_type + " of this size needs about " +
                                     Gib(params * 8) + " of memory to write, " + Gib(available) +
                                     " is free; use --info for memory planning");
  }
  const std::vector<Parameter> weights = InitParameters(config, a.seed, a.init_std);
  GRPO_RETURN_IF_ERROR(SaveModel(config, weights, a.out, a.max_shard_bytes, storage));
  std::fprintf(stderr, "wrote %s\n", a.out.c_str());
  return Status::Ok();
}

struct LogprobsArgs {
  std::string model, input, output;
  bool strict = false;
  int64_t batch_tokens = 4096;
};

struct PendingLine {
  nlohmann::json id;
  std::vector<int32_t> tokens;
};

Status RunLogprobs(const LogprobsArgs& a) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model, CausalLM::Load(a.model));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> in, JsonlReader::Open(a.input));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> out, JsonlWriter::Open(a.output));
  const auto start = std::chrono::steady_clock::now();
  int64_t sequences = 0, tokens = 0, skipped = 0;
  std::vector<PendingLine> pending;
  int64_t pending_tokens = 0;
  auto flush = [&]() -> Status {
    if (pending.empty()) return Status::Ok();
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
    return Status::Ok();
  };
  JsonlRecord record;
  while (in->Next(&record)) {
    PendingLine line;
    Result<std::vector<int32_t>> ids = record.status.ok()
        ? TokenIdsOf(record, a.input, "tokens", model->config().vocab_size)
        : Result<std::vector<int32_t>>(record.status);
    if (!ids.ok()) {
      if (a.strict) return ids.status();
      std::fprintf(stderr, "grpo logprobs: skipping %s\n", ids.status().message().c_str());
      ++skipped;
      continue;
    }
    line.tokens = std::move(ids).value();
    if (record.value.contains("id")) line.id = record.value["id"];
    ++sequences;
    tokens += static_cast<int64_t>(line.tokens.size());
    pending_tokens += static_cast<int64_t>(line.tokens.size());
    pending.push_back(std::move(line));
    if (pending_tokens >= a.batch_tokens) GRPO_RETURN_IF_ERROR(flush());
  }
  GRPO_RETURN_IF_ERROR(in->status());
  GRPO_RETURN_IF_ERROR(flush());
  GRPO_RETURN_IF_ERROR(out->Close());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "grpo logprobs: %lld sequences, %lld tokens, %lld skipped, %.0f tokens/s\n",
               static_cast<long long>(sequences), static_cast<long long>(tokens),
               static_cast<long long>(skipped), tokens / std::max(secs, 1e-9));
  return Status::Ok();
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
  sub->add_option("--init-std", args->init_std, "std of the normal init of weights (default 0.02)");
  sub->add_option("--dtype", args->dtype, "storage: f32 (default), bf16, or fp8 (e4m3 128x128 blocks)");
  sub->add_option("--max-shard-bytes", args->max_shard_bytes, "shard above this size (default 5e9)");
  sub->add_flag("--info", args->info, "print the config, parameter count and memory; write nothing");
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
}

}  // namespace grpo::cli
