// The pre-tokenizer of a byte-level BPE `tokenizer.json`: splits normalized text into pieces that
// BPE encodes independently.
//
// Supported steps (anything else is an Unimplemented error at load time, never silently ignored):
//   Split      {"pattern": {"Regex": ".."} | {"String": ".."}, "behavior": "Isolated" | "Removed" |
//               "MergedWithPrevious" | "MergedWithNext" | "Contiguous", "invert": bool}
//   ByteLevel  {"add_prefix_space": bool, "use_regex": bool}  (use_regex splits with GPT-2's regex;
//               the byte mapping itself is implicit: pieces stay raw UTF-8 bytes)
//   Sequence   {"pretokenizers": [...]}: each step splits every piece of the previous one.
// This covers Qwen2/2.5/3 (one Split), DeepSeek-V3 (three Splits) and Llama-3 (one Split), each
// followed by ByteLevel without regex.
#ifndef GRPO_TOKENIZER_PRETOKENIZER_H_
#define GRPO_TOKENIZER_PRETOKENIZER_H_

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/regex.h"

namespace grpo::tokenizer {

// A piece of the input: a byte range of the text, optionally preceded by one added space
// (ByteLevel's add_prefix_space).
struct Piece {
  size_t begin;
  size_t end;
  bool prefix_space = false;
};

class PreTokenizer {
 public:
  // No steps: the whole text is one piece.
  PreTokenizer() = default;

  // Reads a "pre_tokenizer" value (null means no steps).
  static absl::StatusOr<PreTokenizer> FromJson(const nlohmann::json& config);

  // Splits `text` (valid UTF-8) into pieces, replacing the contents of `pieces`.
  absl::Status Split(std::string_view text, std::vector<Piece>& pieces) const;

  // True when a ByteLevel step is present (the model then is byte-level BPE).
  bool has_byte_level() const { return has_byte_level_; }

 private:
  enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind;
    std::optional<Regex> regex;  // for kSplit, and for kByteLevel with use_regex
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  static absl::Status AddSteps(const nlohmann::json& config, std::vector<Step>& steps, bool& byte_level);
  static absl::Status ApplyStep(const Step& step, std::string_view text, const Piece& piece,
                          std::vector<Piece>& out);

  std::vector<Step> steps_;
  bool has_byte_level_ = false;
};

// GPT-2's pre-tokenization pattern (ByteLevel with use_regex = true).
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_PRETOKENIZER_H_
