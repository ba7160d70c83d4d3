#include "cli/generate_command.h"

#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/subcommand.h"
#include "cli/token_ids.h"
#include "core/jsonl.h"
#include "model/causal_lm.h"
#include "rollout/group_generator.h"
#include "tokenizer/tokenizer.h"

namespace grpo::cli {
namespace {

struct GenerateArgs {
  std::string model, input, output;
  GenerationOptions gen;
  bool strict = false;
};

Status RunGenerate(const GenerateArgs& a) {
  GRPO_RETURN_IF_ERROR(ValidateSampling(a.gen.sampling));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model, CausalLM::Load(a.model));
  std::optional<tokenizer::Tokenizer> tokenizer;
  struct stat st;
  if (stat((a.model + "/tokenizer.json").c_str(), &st) == 0) {
    GRPO_ASSIGN_OR_RETURN(tokenizer::Tokenizer t, tokenizer::Tokenizer::Load(a.model));
    tokenizer = std::move(t);
  }
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> in, JsonlReader::Open(a.input));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> out, JsonlWriter::Open(a.output));
  const int64_t vocab = model->config().vocab_size;
  int64_t prompts = 0, skipped = 0, tokens = 0;
  JsonlRecord r;
  while (in->Next(&r)) {
    Status bad = r.status;
    std::vector<int32_t> prompt;
    const std::string where = a.input + ":" + std::to_string(r.line) + ": ";
    if (bad.ok()) {
      if (r.value.contains("tokens")) {
        auto ids = TokenIdsOf(r, a.input, "tokens", vocab);
        if (ids.ok()) {
          prompt = std::move(ids).value();
        } else {
          bad = ids.status();
        }
      } else if (r.value.contains("prompt") && r.value["prompt"].is_string()) {
        if (!tokenizer) {
          bad = Status::InvalidArgument(where + "a text \"prompt\" needs tokenizer.json in the model directory");
        } else {
          auto ids = tokenizer->Encode(r.value["prompt"].get<std::string>());
          if (ids.ok()) {
            prompt = std::move(ids).value();
          } else {
            bad = ids.status().WithContext(where);
          }
        }
      } else {
        bad = Status::InvalidArgument(where + "needs \"tokens\" (ids) or \"prompt\" (text)");
      }
      if (bad.ok() && prompt.empty()) bad = Status::InvalidArgument(where + "empty prompt");
    }
    Result<std::vector<GeneratedSample>> group = bad;
    if (bad.ok()) {
      GenerationOptions o = a.gen;
      o.seed = a.gen.seed * 1000003ULL + static_cast<uint64_t>(r.line);  // each line its own stream
      group = GenerateGroup(*model, prompt, o);
      if (!group.ok()) bad = group.status().WithContext(where);
    }
    if (!bad.ok()) {
      if (a.strict) return bad;
      std::fprintf(stderr, "grpo generate: skipping %s\n", bad.message().c_str());
      ++skipped;
      continue;
    }
    nlohmann::json row;
    if (r.value.contains("id")) row["id"] = r.value["id"];
    row["samples"] = nlohmann::json::array();
    for (const GeneratedSample& s : *group) {
      nlohmann::json j = {{"tokens", s.tokens}, {"logprobs", s.logprobs}, {"finish_reason", s.finish_reason}};
      if (tokenizer) {
        auto text = tokenizer->Decode(s.tokens);
        if (text.ok()) j["text"] = *text;
      }
      tokens += static_cast<int64_t>(s.tokens.size());
      row["samples"].push_back(std::move(j));
    }
    GRPO_RETURN_IF_ERROR(out->Write(row));
    ++prompts;
  }
  GRPO_RETURN_IF_ERROR(in->status());
  GRPO_RETURN_IF_ERROR(out->Close());
  std::fprintf(stderr, "grpo generate: %lld prompts, %lld tokens generated, %lld skipped\n",
               static_cast<long long>(prompts), static_cast<long long>(tokens), static_cast<long long>(skipped));
  return Status::Ok();
}

}  // namespace

void AddGenerateSubcommand(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = AddSubcommand(app, "generate", "Sample completions (groups of n) from a model",
                                [a] { return RunGenerate(*a); });
  sub->add_option("--model", a->model, "model directory (HF layout)")->required();
  sub->add_option("--input", a->input, "JSONL of {\"tokens\": [..]} or {\"prompt\": \"text\"}")->required();
  sub->add_option("--output", a->output, "JSONL of {\"samples\": [..]}")->required();
  sub->add_option("--n", a->gen.n, "samples per prompt (default 1)");
  sub->add_option("--temperature", a->gen.sampling.temperature, "0 = greedy (default 1)");
  sub->add_option("--top-p", a->gen.sampling.top_p, "nucleus sampling (default 1)");
  sub->add_option("--top-k", a->gen.sampling.top_k, "0 = no limit (default 0)");
  sub->add_option("--min-p", a->gen.sampling.min_p, "relative to the most likely token (default 0)");
  sub->add_option("--max-new-tokens", a->gen.max_new_tokens, "per sample (default 256)");
  sub->add_option("--seed", a->gen.seed, "random seed (default 0)");
  sub->add_option("--stop-token", a->gen.stop_tokens, "stop after this id (repeatable)");
  sub->add_flag("--strict", a->strict, "fail on the first bad line instead of skipping it");
}

}  // namespace grpo::cli
