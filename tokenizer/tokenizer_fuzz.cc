// libFuzzer target (built by tools/tokenizer_fuzz.sh with clang, ASan and UBSan).
//
// The first input byte picks a mode:
//   even: the rest is text for a fixed tokenizer; valid UTF-8 must round-trip
//         (Decode(Encode(x)) == NFC(x)) and stream-decode to the same text; invalid UTF-8 must be
//         an error.
//   odd:  the rest mutates the tiny tokenizer.json (bytes overwritten at fuzz-chosen offsets, or
//         the rest used whole as tokenizer.json); loading must return (error or tokenizer), and a
//         loaded tokenizer must encode and decode without crashing.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tokenizer/test_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

using grpo::tokenizer::Tokenizer;

namespace {

const Tokenizer& Fixed() {
  static const Tokenizer* t = [] {
    auto r = grpo::tokenizer::testing::LoadTinyTokenizer();
    if (!r.ok()) std::abort();
    return new Tokenizer(*r);
  }();
  return *t;
}

const std::string& TinyJson() {
  static const std::string s = grpo::tokenizer::testing::TinyTokenizer().dump();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    const Tokenizer& t = Fixed();
    auto ids = t.Encode(rest);
    if (!grpo::IsValidUtf8(rest)) {
      if (ids.ok()) std::abort();
      return 0;
    }
    if (!ids.ok()) std::abort();
    auto text = t.Decode(*ids, {.clean_up_tokenization_spaces = false});
    if (!text.ok() || *text != grpo::tokenizer::ToNfc(rest)) std::abort();
    grpo::tokenizer::StreamDecoder d(t);
    std::string streamed;
    for (int32_t id : *ids) streamed += *d.Push(id);
    streamed += d.Finish();
    if (streamed != *text) std::abort();
    return 0;
  }
  std::string json;
  if (data[0] % 4 == 1) {
    json = TinyJson();
    // Pairs (offset bytes, value): overwrite bytes of the valid file.
    for (size_t i = 0; i + 2 < rest.size(); i += 3) {
      const size_t off = ((static_cast<uint8_t>(rest[i]) << 8) | static_cast<uint8_t>(rest[i + 1])) * 37 % json.size();
      json[off] = rest[i + 2];
    }
  } else {
    json = rest;
  }
  auto t = Tokenizer::FromJson(json, "");
  if (t.ok()) {
    auto ids = t->Encode("hello world <|im_end|> 12345 caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD");
    if (ids.ok()) (void)t->Decode(*ids);
  }
  return 0;
}
