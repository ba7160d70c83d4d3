// A tiny byte-level BPE tokenizer.json for tests (no downloads): the 256 byte tokens (ids 0..255),
// a few merges (ids 256..265: he ll hell hello Ġw or Ġwor ld Ġworld aa), and added tokens
// <|im_end|> (300, special), <|endoftext|> (301, special), <x> (302, not special, lstrip+rstrip),
// <s> (303, special). Pre-tokenizer: the Qwen2 Split regex + ByteLevel; NFC normalizer.
#ifndef GRPO_TOKENIZER_TEST_TOKENIZER_H_
#define GRPO_TOKENIZER_TEST_TOKENIZER_H_

#include <nlohmann/json.hpp>

#include <string>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace grpo::tokenizer::testing {

inline constexpr const char* kQwenPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// `pair_merges`: write merges as ["a", "b"] pairs instead of "a b" strings.
inline nlohmann::json TinyTokenizer(bool pair_merges = false) {
  using nlohmann::json;
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  const char* merges[][2] = {{"h", "e"},  {"l", "l"},   {"he", "ll"},  {"hell", "o"}, {"Ġ", "w"},
                             {"o", "r"},  {"Ġw", "or"}, {"l", "d"},    {"Ġwor", "ld"}, {"a", "a"}};
  json merge_list = json::array();
  int id = 256;
  for (auto& m : merges) {
    vocab[std::string(m[0]) + m[1]] = id++;
    if (pair_merges) {
      merge_list.push_back(json::array({m[0], m[1]}));
    } else {
      merge_list.push_back(std::string(m[0]) + " " + m[1]);
    }
  }
  auto added = [](int id, const char* content, bool special, bool strip) {
    return json{{"id", id},           {"content", content}, {"single_word", false},
                {"lstrip", strip},    {"rstrip", strip},    {"normalized", false},
                {"special", special}};
  };
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                     {"use_regex", false}};
  return json{
      {"version", "1.0"},
      {"added_tokens", json::array({added(300, "<|im_end|>", true, false),
                                    added(301, "<|endoftext|>", true, false),
                                    added(302, "<x>", false, true), added(303, "<s>", true, false)})},
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
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab}, {"merges", merge_list}}}};
}

inline nlohmann::json TinyConfig() {
  return nlohmann::json{{"bos_token", "<s>"},
                        {"eos_token", "<|im_end|>"},
                        {"pad_token", "<|endoftext|>"},
                        {"clean_up_tokenization_spaces", false},
                        {"tokenizer_class", "Qwen2Tokenizer"}};
}

// The tiny tokenizer as a Tokenizer: TinyTokenizer() with TinyConfig().
inline absl::StatusOr<Tokenizer> LoadTinyTokenizer() {
  return Tokenizer::FromJson(TinyTokenizer().dump(), TinyConfig().dump());
}

}  // namespace grpo::tokenizer::testing

#endif  // GRPO_TOKENIZER_TEST_TOKENIZER_H_
