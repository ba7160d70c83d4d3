// Tokenizer: a HuggingFace `tokenizer.json` (+ `tokenizer_config.json`) byte-level BPE tokenizer,
// turning text into token ids and back exactly as the model was trained with.
//
// Encoding, in order (the pipeline of HF `tokenizers` and transformers.js):
//   1. added tokens (special or not, e.g. "<|im_end|>") are found in the raw text first,
//      leftmost-longest, and become their ids directly (unless match_added_tokens is false);
//      lstrip/rstrip tokens swallow the whitespace beside them;
//   2. each stretch of text between them is normalized (NFC when the file asks for it);
//   3. the pre-tokenizer splits it into pieces (PCRE2 regexes; see pretokenizer.h);
//   4. byte-level BPE encodes each piece (see bpe.h);
//   5. with add_special_tokens, the post-processor adds BOS/EOS: the TemplateProcessing of
//      tokenizer.json, or for LlamaTokenizer(Fast) configs (DeepSeek-V3) `add_bos_token` /
//      `add_eos_token` as transformers' Python tokenizer does.
// Decoding maps ids to bytes (added tokens to their text) and decodes UTF-8, replacing broken
// sequences with U+FFFD; StreamDecoder emits only complete characters.
//
// A Tokenizer is cheap to copy (shared immutable state) and safe to use from many threads.
#ifndef GRPO_TOKENIZER_TOKENIZER_H_
#define GRPO_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grpo::tokenizer {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;  // matched only between non-word characters ([A-Za-z0-9_] here)
  bool normalized = false;
};

struct EncodeOptions {
  // Add what the post-processor adds (BOS for DeepSeek-V3 and Llama-3; nothing for Qwen).
  bool add_special_tokens = false;
  // Recognize added/special tokens written in the text. Turn off for untrusted text that must
  // not be able to inject "<|im_end|>" and the like (it is then encoded as ordinary text).
  bool match_added_tokens = true;
};

struct DecodeOptions {
  bool skip_special_tokens = false;
  // Apply the English clean-up of `transformers` (" ." -> "."). nullopt: the config's
  // `clean_up_tokenization_spaces` (true when absent, as transformers.js does).
  std::optional<bool> clean_up_tokenization_spaces;
};

class Tokenizer {
 public:
  // `path` is a directory holding tokenizer.json (and optionally tokenizer_config.json), or the
  // tokenizer.json file itself (tokenizer_config.json is then looked for beside it).
  static absl::StatusOr<Tokenizer> Load(const std::string& path);
  // From the two files' contents; `config_json` may be empty.
  static absl::StatusOr<Tokenizer> FromJson(std::string_view tokenizer_json, std::string_view config_json);

  // Token ids of `text`, which must be valid UTF-8 (else InvalidArgument naming the byte offset).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, const EncodeOptions& options = {}) const;

  // The text of `ids`; an id outside the vocabulary is an InvalidArgument error.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids, const DecodeOptions& options = {}) const;

  // The bytes an id stands for (raw UTF-8 fragment or added token text); nullptr if unknown.
  const std::string* IdToBytes(int32_t id) const;
  // The id of a token given by its text (added tokens included), if any.
  std::optional<int32_t> TokenToId(std::string_view token) const;
  bool IsSpecial(int32_t id) const;

  // One more than the largest id (added tokens included).
  int32_t vocab_size() const;
  const std::vector<AddedToken>& added_tokens() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;
  const std::string& bos_token() const;  // "" when none
  const std::string& eos_token() const;  // "" when none
  // The default `chat_template` of tokenizer_config.json ("" when none).
  const std::string& chat_template() const;
  // tokenizer_config.json's `tokenizer_class` ("" when none).
  const std::string& tokenizer_class() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Incremental decoding for generation: Push() returns only text made of complete characters;
// bytes of a character split across tokens wait for the next token. Finish() returns what is
// left (an incomplete character at the end becomes U+FFFD). No clean-up of spaces is applied.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}

  absl::StatusOr<std::string> Push(int32_t id);
  std::string Finish();

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_TOKENIZER_H_
