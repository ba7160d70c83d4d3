#include "tokenizer/builtin.h"

#include <nlohmann/json.hpp>

#include "core/file.h"
#include "tokenizer/bpe.h"

namespace grpo::tokenizer {
namespace {

using nlohmann::json;

// The Qwen2 pre-tokenizer regex (digits split one by one).
constexpr const char* kQwenPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json AddedTokenJson(int id, const char* content, bool special) {
  return json{{"id", id},         {"content", content}, {"single_word", false},
              {"lstrip", false},  {"rstrip", false},    {"normalized", false},
              {"special", special}};
}

std::pair<json, json> BytesR1() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  json added = json::array({AddedTokenJson(256, "<|endoftext|>", true),
                            AddedTokenJson(257, "<think>", false),
                            AddedTokenJson(258, "</think>", false),
                            AddedTokenJson(259, "<answer>", false),
                            AddedTokenJson(260, "</answer>", false)});
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                     {"use_regex", false}};
  json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({json{{"type", "Split"},
                                            {"pattern", {{"Regex", kQwenPattern}}},
                                            {"behavior", "Isolated"},
                                            {"invert", false}},
                                       byte_level})}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab},
        {"merges", json::array()}}}};
  json config = {{"eos_token", "<|endoftext|>"},
                 {"pad_token", "<|endoftext|>"},
                 {"bos_token", nullptr},
                 {"clean_up_tokenization_spaces", false},
                 {"model_max_length", 4096},
                 {"tokenizer_class", "Qwen2Tokenizer"}};
  return {tokenizer, config};
}

absl::StatusOr<std::pair<json, json>> Files(const std::string& name) {
  if (name == "bytes-r1") return BytesR1();
  std::string known;
  for (const auto& n : BuiltinTokenizerNames()) known += (known.empty() ? "" : ", ") + n;
  return absl::NotFoundError("unknown built-in tokenizer '" + name + "' (known: " + known + ")");
}

}  // namespace

std::vector<std::string> BuiltinTokenizerNames() { return {"bytes-r1"}; }

absl::StatusOr<Tokenizer> BuiltinTokenizer(const std::string& name) {
  GRPO_ASSIGN_OR_RETURN(auto files, Files(name));
  return Tokenizer::FromJson(files.first.dump(), files.second.dump());
}

absl::Status WriteBuiltinTokenizer(const std::string& name, const std::string& dir) {
  GRPO_ASSIGN_OR_RETURN(auto files, Files(name));
  for (const auto& [file, content] :
       {std::pair{std::string("/tokenizer.json"), &files.first},
        std::pair{std::string("/tokenizer_config.json"), &files.second}}) {
    GRPO_RETURN_IF_ERROR(WriteFileAtomic(dir + file, content->dump(2) + "\n"));
  }
  return absl::OkStatus();
}

}  // namespace grpo::tokenizer
