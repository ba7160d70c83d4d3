// Test helper for parity_test.sh: compares this tokenizer with the JavaScript reference.
//
//   parity_tool classes OUT          writes one byte per code point 0..0x10FFFF: PCRE2's view of
//                                    \p{L} \p{N} \p{P} \p{S} \p{M} \s \p{Cn} as bits 0..6 (the
//                                    reference script draws random code points only where its
//                                    own regex engine agrees; see parity_reference.js)
//   parity_tool compare DIR FILE     FILE is JSON Lines {"text", "ids", "decoded"} from the
//                                    reference; checks Encode(text) == ids and
//                                    Decode(ids) == decoded for every line; exit 1 on mismatch.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/jsonl.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace grpo::tokenizer {
namespace {

int Classes(const char* out_path) {
  const char* patterns[] = {"\\p{L}", "\\p{N}", "\\p{P}", "\\p{S}", "\\p{M}", "\\s", "\\p{Cn}"};
  std::vector<Regex> regexes;
  for (const char* p : patterns) {
    auto r = Regex::Compile(p);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
    regexes.push_back(*r);
  }
  std::string bytes(0x110000, '\0');
  std::string ch;
  std::vector<std::pair<size_t, size_t>> m;
  for (char32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    ch.clear();
    AppendUtf8(cp, &ch);
    unsigned char mask = 0;
    for (size_t k = 0; k < regexes.size(); ++k) {
      m.clear();
      if (regexes[k].FindAll(ch, m).ok() && !m.empty()) mask |= 1u << k;
    }
    bytes[cp] = static_cast<char>(mask);
  }
  if (const absl::Status s = WriteFileAtomic(out_path, bytes); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

std::string IdsToString(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

int Compare(const char* dir, const char* path) {
  auto tok = Tokenizer::Load(dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "load %s: %s\n", dir, tok.status().ToString().c_str());
    return 1;
  }
  auto in = JsonlReader::Open(path);
  if (!in.ok()) {
    std::fprintf(stderr, "%s\n", in.status().ToString().c_str());
    return 1;
  }
  JsonlRecord record;
  int lines = 0, id_mismatch = 0, text_mismatch = 0;
  size_t tokens = 0, bytes = 0;
  while ((*in)->Next(&record)) {
    ++lines;
    if (!record.ok()) {
      std::fprintf(stderr, "%s\n", record.status.ToString().c_str());
      return 1;
    }
    const nlohmann::json& j = record.value;
    const std::string text = j["text"].get<std::string>();
    const std::vector<int32_t> want = j["ids"].get<std::vector<int32_t>>();
    const std::string decoded = j["decoded"].get<std::string>();
    bytes += text.size();
    tokens += want.size();
    auto got = tok->Encode(text);
    if (!got.ok() || *got != want) {
      if (++id_mismatch <= 5) {
        std::fprintf(stderr, "line %lld: ids differ\n  text: %s\n  js:   %s\n  ours: %s\n",
                     static_cast<long long>(record.line), j["text"].dump().c_str(), IdsToString(want).c_str(),
                     got.ok() ? IdsToString(*got).c_str() : got.status().ToString().c_str());
      }
    }
    auto back = tok->Decode(want);
    if (!back.ok() || *back != decoded) {
      if (++text_mismatch <= 5) {
        std::fprintf(stderr, "line %lld: decoded text differs\n  js:   %s\n  ours: %s\n",
                     static_cast<long long>(record.line), nlohmann::json(decoded).dump().c_str(),
                     back.ok() ? nlohmann::json(*back).dump(-1, ' ', false,
                                                             nlohmann::json::error_handler_t::replace).c_str()
                               : back.status().ToString().c_str());
      }
    }
  }
  if (!(*in)->status().ok()) {
    std::fprintf(stderr, "%s\n", (*in)->status().ToString().c_str());
    return 1;
  }
  std::printf("%s: %d texts, %zu bytes, %zu tokens; %d id mismatches, %d decode mismatches\n", dir,
              lines, bytes, tokens, id_mismatch, text_mismatch);
  return (id_mismatch == 0 && text_mismatch == 0 && lines > 0) ? 0 : 1;
}

}  // namespace
}  // namespace grpo::tokenizer

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "classes" && argc == 3) return grpo::tokenizer::Classes(argv[2]);
  if (cmd == "compare" && argc == 4) return grpo::tokenizer::Compare(argv[2], argv[3]);
  std::fprintf(stderr, "usage: parity_tool classes OUT | compare TOKENIZER_DIR EXPECTED.jsonl\n");
  return 2;
}
