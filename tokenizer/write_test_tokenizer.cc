// Writes the tiny test tokenizer (test_tokenizer.h) as DIR/tokenizer.json and
// DIR/tokenizer_config.json, for shell tests of `grpo tokenize`.
#include <cstdio>

#include "core/file.h"
#include "tokenizer/test_tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_test_tokenizer DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (const auto& [name, json] : {std::pair{"/tokenizer.json", grpo::tokenizer::testing::TinyTokenizer()},
                                   std::pair{"/tokenizer_config.json", grpo::tokenizer::testing::TinyConfig()}}) {
    if (const absl::Status s = grpo::WriteFileAtomic(dir + name, json.dump()); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  return 0;
}
