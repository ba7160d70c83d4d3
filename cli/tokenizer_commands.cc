#include "cli/tokenizer_commands.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/subcommand.h"
#include "core/input_tally.h"
#include "core/jsonl.h"
#include "core/output_path.h"
#include "tokenizer/tokenizer.h"

namespace grpo::cli {
namespace {

struct TokenizeArgs {
  std::string tokenizer, input, output;
  bool decode = false;
  bool add_special_tokens = false;
  bool skip_special_tokens = false;
  bool strict = false;
};

// One input object to one output object.
absl::StatusOr<nlohmann::json> ProcessObject(const tokenizer::Tokenizer& tok, const TokenizeArgs& a, const nlohmann::json& in) {
  if (a.decode) {
    auto ids = in.find("ids");
    if (ids == in.end() || !ids->is_array()) return absl::InvalidArgumentError("no \"ids\" array");
    std::vector<int32_t> v;
    v.reserve(ids->size());
    for (const auto& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX) {
        return absl::InvalidArgumentError("\"ids\" holds a value that is not a token id: " + id.dump());
      }
      v.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    tokenizer::DecodeOptions o;
    o.skip_special_tokens = a.skip_special_tokens;
    GRPO_ASSIGN_OR_RETURN(std::string text, tok.Decode(v, o));
    return nlohmann::json{{"text", std::move(text)}};
  }
  auto text = in.find("text");
  if (text == in.end() || !text->is_string()) return absl::InvalidArgumentError("no \"text\" string");
  tokenizer::EncodeOptions o;
  o.add_special_tokens = a.add_special_tokens;
  GRPO_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(text->get_ref<const std::string&>(), o));
  return nlohmann::json{{"ids", std::move(ids)}};
}

absl::Status RunTokenize(const TokenizeArgs& a) {
  GRPO_RETURN_IF_ERROR(CheckOutputPath("--output", a.output, {{"--input", a.input}, {"--tokenizer", a.tokenizer}}));
  GRPO_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::Load(a.tokenizer));
  GRPO_ASSIGN_OR_RETURN(auto reader, JsonlReader::Open(a.input));
  GRPO_ASSIGN_OR_RETURN(auto writer, JsonlWriter::Open(a.output));
  const std::string prefix = reader->path() + ":";
  JsonlRecord record;
  InputTally tally;
  while (reader->Next(&record)) {
    absl::StatusOr<nlohmann::json> out = record.ok() ? ProcessObject(tok, a, record.value) : absl::StatusOr<nlohmann::json>(record.status);
    if (!out.ok()) {
      // The reader's messages already start with "IN:LINE: "; ours do not.
      const std::string where = prefix + std::to_string(record.line) + ": ";
      std::string what = std::string(out.status().message());
      if (what.rfind(where, 0) == 0) what = what.substr(where.size());
      if (a.strict) return absl::InvalidArgumentError(where + what);
      std::fprintf(stderr, "grpo tokenize: %s%s (skipped)\n", where.c_str(), what.c_str());
      tally.Skip(!record.ok() ? "bad line" : a.decode ? "cannot decode" : "cannot encode", where + what);
      out = nlohmann::json{{"error", "line " + std::to_string(record.line) + ": " + what}};
    } else {
      tally.Used();
    }
    GRPO_RETURN_IF_ERROR(writer->Write(*out));
  }
  GRPO_RETURN_IF_ERROR(reader->status());
  // Only error lines: a failure, and the output stays as it was.
  GRPO_RETURN_IF_ERROR(tally.RequireSome("lines"));
  GRPO_RETURN_IF_ERROR(writer->Close());
  std::fprintf(stderr, "grpo tokenize: %s\n",
               tally.Summary("lines", a.decode ? "decoded" : "encoded", "written as errors").c_str());
  return absl::OkStatus();
}

}  // namespace

void AddTokenizeCommand(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = AddSubcommand(app, "tokenize", "Encode text to token ids, or decode ids (--decode)",
                                [args]() { return RunTokenize(*args); });
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json, or a directory holding it")->required();
  cmd->add_option("--input", args->input, "Input JSONL ({\"text\"} or, with --decode, {\"ids\"}); - for stdin")
      ->required();
  cmd->add_option("--output", args->output, "Output JSONL; - for stdout")->required();
  cmd->add_flag("--decode", args->decode, "Decode {\"ids\": [..]} lines to {\"text\": ..}");
  cmd->add_flag("--add-special-tokens", args->add_special_tokens,
                "Add the model's BOS/EOS when encoding (e.g. DeepSeek-V3's BOS)");
  cmd->add_flag("--skip-special-tokens", args->skip_special_tokens, "Leave special tokens out when decoding");
  cmd->add_flag("--strict", args->strict, "Fail on the first bad line instead of reporting and skipping it");
}

}  // namespace grpo::cli
