// Forward and forward+backward tokens/s of CausalLM on a model directory, for the side-by-side
// comparison with PyTorch eager in bench/model_bench.sh. Threads: GRPO_NUM_THREADS.
// Prints one JSON object: {"fwd_tok_s", "fwdbwd_tok_s", "peak_rss_mb", ...}.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "model/causal_lm.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: model_bench MODEL_DIR SEQUENCES.json REPEATS\n");
    return 2;
  }
  auto model = grpo::CausalLM::Load(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  std::ifstream in(argv[2]);
  const auto seqs = nlohmann::json::parse(in).get<std::vector<std::vector<int32_t>>>();
  const int repeats = std::atoi(argv[3]);
  const grpo::TokenBatch batch = grpo::TokenBatch::FromSequences(seqs);
  const double tokens = static_cast<double>(batch.num_tokens());
  const std::vector<float> weights(batch.num_targets(), 1.0f);
  std::vector<grpo::Tensor> grads;
  using Clock = std::chrono::steady_clock;
  std::vector<double> fwd, fwdbwd;
  for (int r = 0; r <= repeats; ++r) {  // the first run warms up and is not counted
    auto t0 = Clock::now();
    auto out = (*model)->Forward(batch, {});
    auto t1 = Clock::now();
    if (!out.ok()) return 1;
    auto out2 = (*model)->Forward(batch, {.keep_activations = true});
    if (!out2.ok() || !(*model)->Backward(weights, &grads).ok()) return 1;
    auto t2 = Clock::now();
    if (r == 0) continue;
    fwd.push_back(std::chrono::duration<double>(t1 - t0).count());
    fwdbwd.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  nlohmann::json result = {{"impl", "grpo"},
                           {"threads", grpo::ThreadPool::Default().num_threads()},
                           {"tokens", tokens},
                           {"fwd_tok_s", tokens / Median(fwd)},
                           {"fwdbwd_tok_s", tokens / Median(fwdbwd)},
                           {"peak_rss_mb", usage.ru_maxrss / 1024.0}};
  std::printf("%s\n", result.dump().c_str());
  return 0;
}
