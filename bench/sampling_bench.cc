// One row's token draw (cpu::SampleRow, what Backend::Sample runs per sequence each decode step)
// at a given vocabulary size and temperature: greedy (the log-sum-exp for its logprob and the
// argmax) or unfiltered temperature sampling (two log-sum-exps and the inverse-CDF walk). For
// bench/sampling_bench.sh, side by side with PyTorch. Prints one JSON object.
//   sampling_bench VOCAB TEMPERATURE ROWS
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "model/ops/cpu/sampling.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: sampling_bench VOCAB TEMPERATURE ROWS\n");
    return 2;
  }
  const int64_t vocab = std::atoll(argv[1]), rows = std::atoll(argv[3]);
  const double temperature = std::atof(argv[2]);
  if (vocab < 1 || vocab > (int64_t{1} << 24) || rows < 1 || rows > 100000 || temperature < 0) {
    std::fprintf(stderr, "sampling_bench: VOCAB in [1, 2^24], ROWS in [1, 100000], TEMPERATURE >= 0\n");
    return 2;
  }
  // Logits as a language model's: normal with a spread of 3 (same draw as the PyTorch side's
  // seed does not matter: the time does not depend on the values beyond the walk's length,
  // which is half the vocabulary on average for both).
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(vocab);
  for (float& v : logits) v = normal(rng);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  double best = 1e30;
  int64_t checksum = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < rows; ++r) {
      checksum += grpo::cpu::SampleRow(logits, {.temperature = temperature, .uniform = uniform(rng)}).token;
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("{\"impl\": \"grpo\", \"vocab\": %lld, \"temperature\": %g, \"ms_per_row\": %.4f, \"checksum\": %lld}\n",
              static_cast<long long>(vocab), temperature, best * 1e3 / rows,
              static_cast<long long>(checksum));
  return 0;
}
