// Byte-level BPE: the model part of a HuggingFace `tokenizer.json` ("model": {"type": "BPE"}).
//
// Tokens are kept as raw bytes: the GPT-2 byte<->unicode mapping of the file is undone at load
// time, so a pre-tokenized piece (raw UTF-8 bytes) is split into one symbol per byte and merged by
// rank, lowest first, leftmost among equals (the order of HF `tokenizers` and transformers.js).
// Both merge formats are read: "a b" strings and ["a", "b"] pairs. Results per piece are cached
// per thread (each thread that encodes keeps one 8 MiB table per model, up to 128K pieces, emptied
// when full). A Bpe is immutable after loading and safe to share between threads.
#ifndef GRPO_TOKENIZER_BPE_H_
#define GRPO_TOKENIZER_BPE_H_

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grpo::tokenizer {

// The GPT-2 mapping of each byte to a printable code point (bytes 33..126, 161..172, 174..255 map
// to themselves; the others to 256, 257, ...).
char32_t ByteToUnicode(uint8_t byte);
// The inverse: the byte of a code point of the mapping, or -1 when `cp` is not one.
int UnicodeToByte(char32_t cp);
// The raw bytes of a byte-level token string; nullopt when a character is outside the mapping.
std::optional<std::string> ByteLevelToBytes(std::string_view token);
// The byte-level string of raw bytes (each byte mapped through ByteToUnicode).
std::string BytesToByteLevel(std::string_view bytes);

class Bpe {
 public:
  // Reads a "model" object of type BPE. Errors name the offending entry: a vocab id that is not
  // an integer in [0, 2^31), a merge that is not two tokens, a merge part or result that is not
  // in the vocabulary.
  static absl::StatusOr<Bpe> FromJson(const nlohmann::json& model);

  // Appends the ids of one pre-tokenized piece (raw bytes). A byte whose token is missing from the
  // vocabulary becomes the unknown token when the model has one and is dropped otherwise.
  void EncodePiece(std::string_view piece, std::vector<int32_t>& ids) const;
  // The same for many pieces in order (faster: cache look-ups are prefetched).
  void EncodePieces(std::span<const std::string_view> pieces, std::vector<int32_t>& ids) const;

  // The id of a token given as raw bytes, if any.
  std::optional<int32_t> TokenId(std::string_view bytes) const;
  // The raw bytes of a token id; nullptr when the id is not in the vocabulary.
  const std::string* TokenBytes(int32_t id) const;
  // One more than the largest id of the vocabulary.
  int32_t id_limit() const;
  size_t num_merges() const;

 private:
  struct Impl;
  explicit Bpe(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace grpo::tokenizer

#endif  // GRPO_TOKENIZER_BPE_H_
