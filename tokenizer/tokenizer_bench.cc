// Encoding throughput of our tokenizer on one core; run side by side with the JavaScript
// reference by bench/tokenizer_bench.sh (not a test).
//
//   tokenizer_bench TOKENIZER_DIR TEXT_FILE [PASSES]
// The text is cut into chunks of about 4 KiB at line ends; one untimed pass warms the caches
// (as in the JavaScript run), then PASSES timed passes. Prints one line:
//   cpp MB/s=<x> cpuMB/s=<y> bytes=<n> tokens=<n> seconds=<s> cpu_seconds=<c>
// MB/s is over wall-clock time, cpuMB/s over the process's CPU time (the single-core rate even
// when other work shares the machine).
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include "core/file.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: tokenizer_bench TOKENIZER_DIR TEXT_FILE [PASSES]\n");
    return 2;
  }
  const int passes = argc > 3 ? std::atoi(argv[3]) : 3;
  auto tok = grpo::tokenizer::Tokenizer::Load(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::string> read = grpo::ReadFile(argv[2]);
  if (!read.ok()) {
    std::fprintf(stderr, "%s\n", read.status().ToString().c_str());
    return 1;
  }
  const std::string text = std::move(read).value();
  std::vector<std::string_view> chunks;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = std::min(text.size(), pos + 4096);
    const size_t nl = text.find('\n', end);
    end = nl == std::string::npos ? text.size() : nl + 1;
    chunks.push_back(std::string_view(text).substr(pos, end - pos));
    pos = end;
  }
  size_t tokens = 0;
  auto run = [&]() {
    tokens = 0;
    for (std::string_view c : chunks) {
      auto ids = tok->Encode(c);
      if (!ids.ok()) {
        std::fprintf(stderr, "%s\n", ids.status().ToString().c_str());
        std::exit(1);
      }
      tokens += ids->size();
    }
  };
  run();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  for (int p = 0; p < passes; ++p) run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu_seconds = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  const double mb = static_cast<double>(text.size()) * passes / 1e6;
  std::printf("cpp MB/s=%.2f cpuMB/s=%.2f bytes=%zu tokens=%zu seconds=%.3f cpu_seconds=%.3f\n", mb / seconds,
              mb / cpu_seconds, text.size(), tokens, seconds, cpu_seconds);
  return 0;
}
