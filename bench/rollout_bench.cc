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
//   --group-decode     only one GRPO group: 16 samples of one PROMPT_LEN prompt decoding
//                      together, DECODE_STEPS tokens each at temperature 1, their prefill (and
//                      first token) subtracted: decode_group16_tok_s (attention over a long
//                      context weighs in at large PROMPT_LEN)
//   --llama-workloads  the workloads of bench/llama_cpp_bench.sh instead: prefill_tok_s of one
//                      PROMPT_LEN prompt, decode_b1_tok_s and decode_b16_tok_s (1 and 16 prompts
//                      of 16 tokens, DECODE_STEPS greedy tokens each, their prefill subtracted)
//                      and the prefill bound: fma_peak_gflops (f32 FMA chains on every pool
//                      thread), prefill_gflop_per_token (PrefillFlopsPerToken) and
//                      bound_prefill_tok_s = peak / FLOPs per token, the most prefill can reach
//                      with f32 products (docs/numerics.md)
#include <sys/resource.h>

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// The f32 multiply-add peak of the pool's threads, GFLOP/s: each runs 12 independent chains of
// FMAs (enough to cover the FMA latency) on the widest vectors the CPU has (AVX-512, else AVX2),
// long enough to hold the clock. Twelve named registers, not an array, so that they stay in
// registers.
#define GRPO_FMA_CHAINS(V, SET1, FMA, LANES)                                                    \
  V a0 = SET1(1.000f), a1 = SET1(1.001f), a2 = SET1(1.002f), a3 = SET1(1.003f);                 \
  V a4 = SET1(1.004f), a5 = SET1(1.005f), a6 = SET1(1.006f), a7 = SET1(1.007f);                 \
  V a8 = SET1(1.008f), a9 = SET1(1.009f), a10 = SET1(1.010f), a11 = SET1(1.011f);               \
  const V m = SET1(0.999999f), c = SET1(1e-7f);                                                 \
  for (int64_t i = 0; i < iters; ++i) {                                                         \
    a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);             \
    a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);             \
    a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);         \
    asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));              \
    asm volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));            \
  }                                                                                             \
  alignas(64) float out[LANES];                                                                 \
  std::memcpy(out, &a0, sizeof(out));                                                           \
  return 2.0 * LANES * 12 * static_cast<double>(iters) + (out[0] == 12345.0f ? 1 : 0);
__attribute__((target("avx512f"))) double FmaChains512(int64_t iters) {
  GRPO_FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, 16)
}
__attribute__((target("avx2,fma"))) double FmaChains256(int64_t iters) {
  GRPO_FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, 8)
}
#undef GRPO_FMA_CHAINS
double FmaPeakGflops() {
  __builtin_cpu_init();
  const bool wide = __builtin_cpu_supports("avx512f");
  grpo::ThreadPool& pool = grpo::ThreadPool::Default();
  const int threads = pool.num_threads();
  const int64_t iters = int64_t{20} << 20;
  std::vector<double> flops(threads, 0.0);
  const double t = Timed([&] {
    pool.ParallelFor(threads, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) flops[i] = wide ? FmaChains512(iters) : FmaChains256(iters);
    });
  }, 3);
  double total = 0;
  for (double f : flops) total += f;
  return total / t / 1e9;
}

// f32 FLOPs per prompt token of prefilling one prompt of `plen` tokens: 2 per weight of every
// matrix a token meets (experts: the top-k share; the output head once per prompt, for its last
// token; the embedding is a lookup), plus the attention products over the causal context.
double PrefillFlopsPerToken(const grpo::CausalLM& model, int plen) {
  const grpo::ModelConfig& config = model.config();
  double flops = 0;
  for (const grpo::Parameter& p : model.ReadParameters()) {
    if (p.value.shape().size() < 2) continue;  // norms, biases
    double n = static_cast<double>(p.value.numel());
    if (p.spec.name == "model.embed_tokens.weight") {
      n = config.tie_word_embeddings ? n / plen : 0;
    } else if (p.spec.name == "lm_head.weight") {
      n /= plen;
    } else if (p.spec.name.find(".mlp.experts.") != std::string::npos) {
      n *= static_cast<double>(config.num_experts_per_tok) / config.num_experts;
    }
    flops += 2 * n;
  }
  const double context = (plen + 1) / 2.0;  // mean keys per query under the causal mask
  flops += 2.0 * config.num_hidden_layers * config.num_attention_heads *
           (config.qk_head_dim() + config.value_head_dim()) * context;
  return flops;
}

}  // namespace

int main(int argc, char** argv) {
  bool b1_only = false, llama = false, group_only = false, invariant = false, bad_args = argc < 4;
  grpo::WeightFormat format = grpo::WeightFormat::kF32;
  for (int i = 4; i < argc && !bad_args; ++i) {
    const std::string arg = argv[i];
    if (arg == "--decode-b1-only") {
      b1_only = true;
    } else if (arg == "--llama-workloads") {
      llama = true;
    } else if (arg == "--group-decode") {
      group_only = true;
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
                         "[--batch-invariant] [--decode-b1-only | --llama-workloads | --group-decode]\n");
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
  const double prefill_flops = PrefillFlopsPerToken(**model, plen);
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
  if (group_only) {
    auto group = [&](int tokens) {
      auto rs = Requests(1, plen, 5, V, tokens, 16);
      rs[0].sampling.temperature = 1.0;
      rs[0].seed = 7;
      return rs;
    };
    const double t_pf = Timed([&] { run(group(1)); }), t_all = Timed([&] { run(group(steps)); });
    out["prompt_len"] = plen;
    out["decode_group16_tok_s"] = 16.0 * (steps - 1.0) / std::max(t_all - t_pf, 1e-9);
    std::printf("%s\n", out.dump().c_str());
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
    const double peak = FmaPeakGflops();
    out["fma_peak_gflops"] = peak;
    out["prefill_gflop_per_token"] = prefill_flops / 1e9;
    out["bound_prefill_tok_s"] = peak * 1e9 / prefill_flops;
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
