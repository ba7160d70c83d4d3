// Writes the tiny test tokenizer (test_tokenizer.h) as DIR/tokenizer.json and
// DIR/tokenizer_config.json, for shell tests of `grpo tokenize`.
#include <cstdio>
#include <fstream>

#include "tokenizer/test_tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_test_tokenizer DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  std::ofstream(dir + "/tokenizer.json") << grpo::tokenizer::testing::TinyTokenizer().dump();
  std::ofstream(dir + "/tokenizer_config.json") << grpo::tokenizer::testing::TinyConfig().dump();
  return 0;
}
