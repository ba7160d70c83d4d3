// Rollout engine speed on a model directory, for bench/rollout_bench.sh (side by side with
// PyTorch eager + KV cache, bench/torch_rollout_bench.py). Threads: GRPO_NUM_THREADS.
//   prefill_tok_s      8 prompts of PROMPT_LEN tokens, one token each (greedy)
//   decode_bN_tok_s    N prompts of 16 tokens, DECODE_STEPS tokens each, minus their prefill
//   group16_*_s        one prompt of PROMPT_LEN, 16 samples of DECODE_STEPS tokens: one group
//                      of 16 (prefilled once, blocks shared) vs 16 requests of 1
//   stream_gb_s        STREAM-like triad a = b + s * c over 3 x 64 MiB, on the same pool
//   active_weight_mb   weight bytes one token reads, in the served format (embedding row only
//                      unless tied; routed experts scaled by top_k / num_experts);
//                      bound_b1_tok_s = stream / active bytes
// Prints one JSON object. Options after the positional arguments:
//   --serve-format F   f32 (default), bf16, fp8 or stored: how the weights are held (docs/model.md)
//   --batch-invariant  the backend in batch-invariant mode (rollout.batch_invariant; f32 only)
//   --decode-b1-only   only batch-1 decoding of one PROMPT_LEN prompt (its prefill included) and
//                      the bandwidth bound, for profilers and for models too large for the rest
//   --llama-workloads  the workloads of bench/llama_cpp_bench.sh instead: prefill_tok_s of one
//                      PROMPT_LEN prompt, decode_b1_tok_s and decode_b16_tok_s (1 and 16 prompts
//                      of 16 tokens, DECODE_STEPS greedy tokens each, their prefill subtracted)
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "model/causal_lm.h"
#include "model/parameters.h"
#include "rollout/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double Timed(F&& f, int repeats = 2) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

std::vector<grpo::GroupRequest> Requests(int n, int len, int salt, int vocab, int steps, int group = 1) {
  std::vector<grpo::GroupRequest> rs(n);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < len; ++j) rs[i].prompt.push_back((7 * i + 13 * j + salt) % vocab);
    rs[i].sampling.temperature = 0.0;
    rs[i].max_new_tokens = steps;
    rs[i].n = group;
  }
  return rs;
}

double StreamTriadGBs() {
  const int64_t n = int64_t{16} << 20;  // floats per array (64 MiB)
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  grpo::ThreadPool& pool = grpo::ThreadPool::Default();
  auto triad = [&] {
    pool.ParallelFor(n, 1 << 16, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) a[i] = b[i] + 3.0f * c[i];
    });
  };
  triad();
  return 3.0 * n * sizeof(float) / Timed(triad, 5) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  bool b1_only = false, llama = false, invariant = false, bad_args = argc < 4;
  grpo::WeightFormat format = grpo::WeightFormat::kF32;
  for (int i = 4; i < argc && !bad_args; ++i) {
    const std::string arg = argv[i];
    if (arg == "--decode-b1-only") {
      b1_only = true;
    } else if (arg == "--llama-workloads") {
      llama = true;
    } else if (arg == "--batch-invariant") {
      invariant = true;
    } else if (arg == "--serve-format" && i + 1 < argc) {
      auto f = grpo::ParseWeightFormat(argv[++i]);
      if (!f.ok()) {
        std::fprintf(stderr, "--serve-format: %s\n", std::string(f.status().message()).c_str());
        return 2;
      }
      format = *f;
    } else {
      bad_args = true;
    }
  }
  if (bad_args) {
    std::fprintf(stderr, "usage: rollout_bench MODEL_DIR PROMPT_LEN DECODE_STEPS [--serve-format F] "
                         "[--batch-invariant] [--decode-b1-only | --llama-workloads]\n");
    return 2;
  }
  const int plen = std::atoi(argv[2]), steps = std::atoi(argv[3]);
  grpo::CpuBackend().SetBatchInvariant(invariant);  // before the engine sizes its KV cache
  auto model = grpo::CausalLM::Load(argv[1], grpo::CpuBackend(), {.serve_format = format});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const grpo::ModelConfig config = (*model)->config();
  double active = 0;
  for (const grpo::Parameter& p : (*model)->ReadParameters()) {
    double bytes = static_cast<double>(p.value.nbytes()) +
                   (p.scale_inv.defined() ? static_cast<double>(p.scale_inv.nbytes()) : 0.0);
    if (p.spec.name == "model.embed_tokens.weight") {
      const double row = bytes / config.vocab_size;
      bytes = row + (config.tie_word_embeddings ? bytes : 0);  // row (+ tied head)
    } else if (p.spec.name.find(".mlp.experts.") != std::string::npos) {
      bytes *= static_cast<double>(config.num_experts_per_tok) / config.num_experts;
    }
    active += bytes;
  }
  grpo::EngineOptions o;
  o.kv_memory_bytes = int64_t{1} << 30;
  o.max_running_sequences = 64;
  auto engine = grpo::RolloutEngine::Create(std::move(model).value(), o);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  grpo::RolloutEngine& e = **engine;
  const int V = static_cast<int>(config.vocab_size);
  auto run = [&](const std::vector<grpo::GroupRequest>& rs) {
    auto r = e.GenerateGroups(rs);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      std::exit(1);
    }
  };
  nlohmann::json out = {{"impl", invariant ? "grpo-bi" : "grpo"},
                        {"threads", grpo::ThreadPool::Default().num_threads()},
                        {"format", grpo::WeightFormatName(format)}};
  const auto pf = Requests(8, plen, 1, V, 1);
  if (b1_only) {  // for profilers: batch-1 decoding only
    const auto one = Requests(1, plen, 2, V, steps);
    const double t = Timed([&] { run(one); }, 3);
    const double gbs = StreamTriadGBs();
    std::printf("{\"decode_b1_tok_s\": %.2f, \"stream_gb_s\": %.1f, \"active_weight_mb\": %.1f, "
                "\"bound_b1_tok_s\": %.2f}\n", (steps - 1.0) / t, gbs, active / 1e6, gbs * 1e9 / active);
    return 0;
  }
  if (llama) {  // one interleavable set of the llama.cpp comparison's workloads
    out["prefill_tok_s"] = plen / Timed([&] { run(Requests(1, plen, 4, V, 1)); });
    for (int b : {1, 16}) {
      const auto first = Requests(b, 16, 2, V, 1), all = Requests(b, 16, 2, V, steps);
      const double t_pf = Timed([&] { run(first); }), t_all = Timed([&] { run(all); });
      out["decode_b" + std::to_string(b) + "_tok_s"] = b * (steps - 1.0) / std::max(t_all - t_pf, 1e-9);
    }
    const double gbs = StreamTriadGBs();
    out["stream_gb_s"] = gbs;
    out["active_weight_mb"] = active / 1e6;
    out["bound_b1_tok_s"] = gbs * 1e9 / active;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  out["prefill_tok_s"] = 8.0 * plen / Timed([&] { run(pf); });
  for (int b : {1, 64}) {
    const auto first = Requests(b, 16, 2, V, 1), all = Requests(b, 16, 2, V, steps);
    const double t_pf = Timed([&] { run(first); }), t_all = Timed([&] { run(all); });
    out["decode_b" + std::to_string(b) + "_tok_s"] = b * (steps - 1.0) / std::max(t_all - t_pf, 1e-9);
  }
  const auto shared = Requests(1, plen, 3, V, steps, 16);
  std::vector<grpo::GroupRequest> indep(16, shared[0]);
  for (int i = 0; i < 16; ++i) indep[i].n = 1;
  out["group16_shared_s"] = Timed([&] { run(shared); });
  out["group16_indep_s"] = Timed([&] { run(indep); });
  const double gbs = StreamTriadGBs();
  out["stream_gb_s"] = gbs;
  out["active_weight_mb"] = active / 1e6;
  out["bound_b1_tok_s"] = gbs * 1e9 / active;
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  out["peak_rss_mb"] = usage.ru_maxrss / 1024.0;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
