// Forward and forward+backward tokens/s of CausalLM on a model directory, for the side-by-side
// comparison with PyTorch eager in bench/model_bench.sh. Threads: GRPO_NUM_THREADS.
// Prints one JSON object: {"fwd_tok_s", "fwdbwd_tok_s", "peak_rss_mb", ...}. With FWD_ONLY set
// in the environment it times the forward alone (for profiling it; fwdbwd_tok_s is then absent).
// With BATCH_INVARIANT=1 the backend runs in batch-invariant mode (rollout.batch_invariant).
//
// Dense models with 1 thread also get a floor: "gemm_fwd_tok_s" / "gemm_fwdbwd_tok_s" are the
// tokens/s of the model's linear-layer matrix products alone (q, k, v, o, gate, up, down, output
// head; for the backward also dX and dW of each), each one single-threaded OpenBLAS sgemm over
// the whole batch. Attention and everything else is left out, so no implementation that does
// these products on this BLAS (PyTorch included) can beat it.
#include <cblas.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/file.h"
#include "core/thread_pool.h"
#include "model/causal_lm.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds of the dense linear-layer GEMMs of one forward (and forward+backward) over `tokens`.
std::pair<double, double> GemmFloor(const grpo::ModelConfig& c, int64_t tokens, int repeats) {
  struct Shape { int64_t k, n; };  // y[tokens, n] = x[tokens, k] . w[n, k]^T
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  std::vector<Shape> shapes;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (Shape s : {Shape{h, q}, Shape{h, kv}, Shape{h, kv}, Shape{q, h}, Shape{h, c.intermediate_size},
                    Shape{h, c.intermediate_size}, Shape{c.intermediate_size, h}}) {
      shapes.push_back(s);
    }
  }
  shapes.push_back({h, c.vocab_size});
  int64_t max_kn = 0, max_dim = 0;
  for (Shape s : shapes) max_kn = std::max(max_kn, s.k * s.n), max_dim = std::max({max_dim, s.k, s.n});
  std::vector<float> x(tokens * max_dim, 0.5f), w(max_kn, 0.25f), y(tokens * max_dim), dw(max_kn);
  using Clock = std::chrono::steady_clock;
  std::vector<double> fwd, bwd;
  for (int r = 0; r <= repeats; ++r) {
    const auto t0 = Clock::now();
    for (Shape s : shapes) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, s.n, s.k, 1.0f, x.data(), s.k,
                  w.data(), s.k, 0.0f, y.data(), s.n);
    }
    const auto t1 = Clock::now();
    for (Shape s : shapes) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, s.k, s.n, 1.0f, y.data(), s.n,
                  w.data(), s.k, 0.0f, x.data(), s.k);  // dX = dY . W
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s.n, s.k, tokens, 1.0f, y.data(), s.n,
                  x.data(), s.k, 1.0f, dw.data(), s.k);  // dW += dY^T . X
    }
    const auto t2 = Clock::now();
    if (r == 0) continue;
    fwd.push_back(std::chrono::duration<double>(t1 - t0).count());
    bwd.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  return {Median(fwd), Median(fwd) + Median(bwd)};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: model_bench MODEL_DIR SEQUENCES.json REPEATS\n");
    return 2;
  }
  const char* invariant = std::getenv("BATCH_INVARIANT");
  grpo::CpuBackend().SetBatchInvariant(invariant != nullptr && std::string(invariant) == "1");
  auto model = grpo::CausalLM::Load(argv[1], grpo::CpuBackend());
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  auto text = grpo::ReadFile(argv[2]);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", text.status().ToString().c_str());
    return 1;
  }
  const auto seqs = nlohmann::json::parse(*text).get<std::vector<std::vector<int32_t>>>();
  const int repeats = std::atoi(argv[3]);
  const grpo::TokenBatch batch = grpo::TokenBatch::FromSequences(seqs);
  const double tokens = static_cast<double>(batch.num_tokens());
  const std::vector<float> weights(batch.num_targets(), 1.0f);
  std::vector<grpo::Buffer> grads;
  using Clock = std::chrono::steady_clock;
  std::vector<double> fwd, fwdbwd;
  for (int r = 0; r <= repeats; ++r) {  // the first run warms up and is not counted
    auto t0 = Clock::now();
    auto out = (*model)->Forward(batch, {});
    auto t1 = Clock::now();
    if (!out.ok()) return 1;
    if (std::getenv("FWD_ONLY") != nullptr) {
      if (r > 0) fwd.push_back(std::chrono::duration<double>(t1 - t0).count());
      continue;
    }
    auto out2 = (*model)->Forward(batch, {.keep_activations = true});
    if (!out2.ok() || !(*model)->Backward(weights, &grads).ok()) return 1;
    auto t2 = Clock::now();
    if (r == 0) continue;
    fwd.push_back(std::chrono::duration<double>(t1 - t0).count());
    fwdbwd.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  nlohmann::json result = {{"impl", grpo::CpuBackend().batch_invariant() ? "grpo-bi" : "grpo"},
                           {"threads", grpo::ThreadPool::Default().num_threads()},
                           {"blas_core", openblas_get_corename()},
                           {"tokens", tokens},
                           {"fwd_tok_s", tokens / Median(fwd)},
                           {"peak_rss_mb", usage.ru_maxrss / 1024.0}};
  if (!fwdbwd.empty()) result["fwdbwd_tok_s"] = tokens / Median(fwdbwd);
  const grpo::ModelConfig& c = (*model)->config();
  if (grpo::ThreadPool::Default().num_threads() == 1 && c.num_experts == 0 && !c.mla) {
    const auto [f, fb] = GemmFloor(c, batch.num_tokens(), repeats);
    result["gemm_fwd_tok_s"] = tokens / f;
    result["gemm_fwdbwd_tok_s"] = tokens / fb;
  }
  std::printf("%s\n", result.dump().c_str());
  return 0;
}
