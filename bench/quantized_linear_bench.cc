// Projections over f32, bf16 and FP8-block weights (Backend::Linear vs LinearWeights) on the
// MLP shapes of a Qwen2.5-0.5B layer (hidden 896, intermediate 4864): decode-like GEMV (m = 1)
// a GRPO group (m = 16) and m = 64, with every decode kernel this CPU runs (avx512 over FP8
// with and without AVX512_VBMI). Weights of 8 layers are cycled so they do not sit in the cache, as
// in decoding. Reports time per layer and GB/s of weight bytes read, beside the machine's
// streaming read bandwidth. QUANTIZED_LINEAR_RESIDENT=1 measures the kernels' compute ceiling
// instead (RunResident). Threads: GRPO_NUM_THREADS. Not a test: run by hand,
//   GRPO_NUM_THREADS=2 bazel-bin/bench/quantized_linear_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/fp8_block.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/ops/backend.h"
#include "model/ops/cpu/amx_gemm.h"
#include "model/ops/cpu/quantized_gemm.h"
#include "model/ops/cpu/cpu_backend.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Matrix {
  int64_t n, k;
  grpo::Tensor f32, bf16, fp8, scale;
};

// Streaming read bandwidth with the pool's threads: sum of a 512 MiB array.
double ReadBandwidthGBs() {
  const int64_t n = int64_t{128} << 20;  // floats
  std::vector<float> a(n, 1.0f);
  std::vector<double> sums(grpo::ThreadPool::Default().num_threads() * 64, 0.0);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    grpo::ThreadPool::Default().ParallelFor(n, n / grpo::ThreadPool::Default().num_threads(),
                                            [&](int64_t b, int64_t e) {
                                              float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                                              for (int64_t i = b; i + 3 < e; i += 4) {
                                                s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3];
                                              }
                                              sums[(b * 64 / n) % sums.size()] += s0 + s1 + s2 + s3;
                                            });
    best = std::max(best, n * 4.0 / Seconds(t0, Clock::now()) / 1e9);
  }
  return best;
}

// The CPU backend's device memory is host memory (cpu_backend.h).
template <class T>
auto D(T* p) { return grpo::cpu::HostAsDevice(p); }

// The FP8 code widenings the avx512 kernel is run with: vcvtph2ps (0), and AVX512_VBMI (1)
// where the CPU has them (quantized_gemm.h's UseFp8Vbmi); one run (-1: as set) otherwise, and
// for more than 5 rows of x (one tile), which the VBMI kernel does not take.
std::vector<int> Fp8Widenings(grpo::DType dtype, grpo::cpu::DecodeKernel kernel, int64_t m) {
  if (dtype != grpo::DType::kF8E4M3 || kernel != grpo::cpu::DecodeKernel::kAvx512 || m > 5) return {-1};
  const bool vbmi = grpo::cpu::UseFp8Vbmi(true);
  return vbmi ? std::vector<int>{0, 1} : std::vector<int>{0};
}
std::string KernelLabel(grpo::cpu::DecodeKernel kernel, int vbmi) {
  return std::string(grpo::cpu::DecodeKernelName(kernel)) + (vbmi == 1 ? "+vbmi" : "");
}

// With QUANTIZED_LINEAR_RESIDENT=1: the kernels' compute ceiling instead, one 512 x 896 matrix
// (bf16 0.9 MB, FP8 0.46 MB: resident in L2) multiplied over and over, m = 1 and 16; GB/s of
// weight bytes streamed through the kernel, best of 101 short runs (a millisecond or two each,
// so that on a shared machine some run a whole time slice uninterrupted). Then a prefill of
// m = 512 rows over the same matrix in f32, bf16 and FP8 (GFLOP/s, best of 21).
int RunResident(grpo::Backend& be) {
  const int64_t n = 512, k = 896;
  std::mt19937 rng(2);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> w(n * k);
  for (float& v : w) v = d(rng);
  const grpo::Tensor f32 = *grpo::Tensor::FromF32({n, k}, w);
  const grpo::Tensor bf16 = *f32.CastTo(grpo::DType::kBF16);
  const auto fp8 = grpo::QuantizeFp8Block(f32);
  std::printf("resident %lld x %lld, threads %d\n", static_cast<long long>(n),
              static_cast<long long>(k), grpo::ThreadPool::Default().num_threads());
  const grpo::cpu::DecodeKernel best = grpo::cpu::CurrentDecodeKernel();
  for (int64_t m : {1, 16}) {
    std::vector<float> x(m * k, 0.5f), y(m * n);
    for (grpo::DType dtype : {grpo::DType::kBF16, grpo::DType::kF8E4M3}) {
      for (grpo::cpu::DecodeKernel kernel : {grpo::cpu::DecodeKernel::kAvx2, grpo::cpu::DecodeKernel::kAvx512}) {
        if (!grpo::cpu::SetDecodeKernel(kernel)) break;
        for (int vbmi : Fp8Widenings(dtype, kernel, m)) {
          if (vbmi >= 0) grpo::cpu::UseFp8Vbmi(vbmi == 1);
          const grpo::Tensor& t = dtype == grpo::DType::kBF16 ? bf16 : fp8->weight;
          const grpo::WeightView v{dtype, D(t.raw_data()),
                                   dtype == grpo::DType::kF8E4M3 ? D(fp8->scale_inv.data<float>()) : nullptr,
                                   n, k, 0};
          const int64_t calls = m == 1 ? 16 : 2;
          double best_s = 1e30;
          for (int rep = 0; rep < 101; ++rep) {
            const auto t0 = Clock::now();
            for (int64_t c = 0; c < calls; ++c) be.LinearWeights(D(x.data()), v, nullptr, D(y.data()), m, k, n);
            best_s = std::min(best_s, Seconds(t0, Clock::now()));
          }
          std::printf("%-8s m=%-3lld %-12s %8.2f GB/s of weights, %7.1f GFLOP/s\n",
                      std::string(grpo::DTypeName(dtype)).c_str(), static_cast<long long>(m),
                      KernelLabel(kernel, vbmi).c_str(), calls * t.nbytes() / best_s / 1e9,
                      calls * 2.0 * m * n * k / best_s / 1e9);
        }
      }
    }
  }
  grpo::cpu::SetDecodeKernel(best);
  grpo::cpu::UseFp8Vbmi(true);
  // Prefill (m = 512 rows of x, more than the register kernels take): f32 Linear (sgemm) against
  // LinearWeights over bf16 and FP8, widened into sgemm (the reference) and on AMX tiles where
  // the CPU has them (amx_gemm.h), on this matrix and on the MLP shapes of a Qwen2.5-0.5B
  // layer (and its 128-row k and v projections). Best of 21 calls (5 for the layer's shapes).
  const int64_t m = 512;
  const bool amx = grpo::cpu::AmxInUse();
  struct Shape { int64_t n, k; };
  for (const Shape shape : {Shape{n, k}, Shape{4864, 896}, Shape{896, 4864}, Shape{128, 896}}) {
    std::vector<float> wv(shape.n * shape.k);
    for (float& v : wv) v = d(rng);
    const grpo::Tensor wf = *grpo::Tensor::FromF32({shape.n, shape.k}, wv);
    const grpo::Tensor wb = *wf.CastTo(grpo::DType::kBF16);
    const auto wq = grpo::QuantizeFp8Block(wf);
    std::vector<float> x(m * shape.k), y(m * shape.n);
    for (float& v : x) v = d(rng);
    double f32_s = 0;
    for (grpo::DType dtype : {grpo::DType::kF32, grpo::DType::kBF16, grpo::DType::kF8E4M3}) {
      const grpo::Tensor& t = dtype == grpo::DType::kF32    ? wf
                              : dtype == grpo::DType::kBF16 ? wb
                                                            : wq->weight;
      const grpo::WeightView v{dtype, D(t.raw_data()),
                               dtype == grpo::DType::kF8E4M3 ? D(wq->scale_inv.data<float>()) : nullptr,
                               shape.n, shape.k, 0};
      for (const bool use_amx : {false, true}) {
        if (use_amx && (dtype == grpo::DType::kF32 || !amx)) continue;
        grpo::cpu::UseAmx(use_amx);
        double best_s = 1e30;
        for (int rep = 0; rep < (shape.n == n ? 21 : 5); ++rep) {
          const auto t0 = Clock::now();
          be.LinearWeights(D(x.data()), v, nullptr, D(y.data()), m, shape.k, shape.n);
          best_s = std::min(best_s, Seconds(t0, Clock::now()));
        }
        if (dtype == grpo::DType::kF32) f32_s = best_s;
        std::printf("%-8s m=%-3lld n=%-4lld k=%-4lld prefill %-6s %7.1f GFLOP/s, %5.2fx f32 sgemm\n",
                    std::string(grpo::DTypeName(dtype)).c_str(), static_cast<long long>(m),
                    static_cast<long long>(shape.n), static_cast<long long>(shape.k),
                    dtype == grpo::DType::kF32 ? "sgemm" : use_amx ? "amx" : "widen",
                    2.0 * m * shape.n * shape.k / best_s / 1e9, f32_s / best_s);
      }
    }
  }
  // An MLP's down projection over its SwiGLU activation in prefill (m = 512, k = 4864,
  // n = 896): SwiGlu into a buffer and then LinearWeights, against SwiGluLinearWeights (on AMX,
  // the activation made a row at a time as x is split, never stored), calls interleaved.
  if (amx) {
    const int64_t k_down = 4864, n_down = 896;
    std::vector<float> wv(n_down * k_down);
    for (float& v : wv) v = d(rng);
    const grpo::Tensor wf = *grpo::Tensor::FromF32({n_down, k_down}, wv);
    const grpo::Tensor wb = *wf.CastTo(grpo::DType::kBF16);
    const auto wq = grpo::QuantizeFp8Block(wf);
    std::vector<float> gate(m * k_down), up(m * k_down), act(m * k_down), y(m * n_down);
    std::normal_distribution<float> unit(0.0f, 1.0f);
    for (float& v : gate) v = unit(rng);
    for (float& v : up) v = unit(rng);
    for (grpo::DType dtype : {grpo::DType::kBF16, grpo::DType::kF8E4M3}) {
      const grpo::Tensor& t = dtype == grpo::DType::kBF16 ? wb : wq->weight;
      const grpo::WeightView v{dtype, D(t.raw_data()),
                               dtype == grpo::DType::kF8E4M3 ? D(wq->scale_inv.data<float>()) : nullptr,
                               n_down, k_down, 0};
      std::vector<double> apart, fused;
      for (int rep = 0; rep < 21; ++rep) {
        auto t0 = Clock::now();
        be.SwiGlu(D(gate.data()), D(up.data()), D(act.data()), m * k_down);
        be.LinearWeights(D(act.data()), v, nullptr, D(y.data()), m, k_down, n_down);
        apart.push_back(Seconds(t0, Clock::now()));
        t0 = Clock::now();
        be.SwiGluLinearWeights(D(gate.data()), D(up.data()), v, nullptr, D(y.data()), m, k_down,
                               n_down);
        fused.push_back(Seconds(t0, Clock::now()));
      }
      std::sort(apart.begin(), apart.end());
      std::sort(fused.begin(), fused.end());
      std::printf("%-8s m=%-3lld n=%-4lld k=%-4lld SwiGLU + down: apart %.3f ms, fused %.3f ms "
                  "(medians of 21), %.2fx\n",
                  std::string(grpo::DTypeName(dtype)).c_str(), static_cast<long long>(m),
                  static_cast<long long>(n_down), static_cast<long long>(k_down), apart[10] * 1e3,
                  fused[10] * 1e3, apart[10] / fused[10]);
    }
  }
  grpo::cpu::UseAmx(amx);
  return 0;
}

}  // namespace

int main() {
  grpo::Backend& be = grpo::CpuBackend();
  if (std::getenv("QUANTIZED_LINEAR_RESIDENT") != nullptr) return RunResident(be);
  const int64_t hidden = 896, inter = 4864, layers = 8;
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<Matrix> mats;
  for (int64_t l = 0; l < layers; ++l) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{inter, hidden}, {inter, hidden}, {hidden, inter}}) {
      std::vector<float> w(n * k);
      for (float& x : w) x = d(rng);
      Matrix m{n, k, *grpo::Tensor::FromF32({n, k}, w), {}, {}, {}};
      m.bf16 = *m.f32.CastTo(grpo::DType::kBF16);
      auto q = grpo::QuantizeFp8Block(m.f32);
      m.fp8 = q->weight;
      m.scale = q->scale_inv;
      mats.push_back(std::move(m));
    }
  }
  const double bw = ReadBandwidthGBs();
  std::printf("threads %d, streaming read bandwidth %.1f GB/s\n",
              grpo::ThreadPool::Default().num_threads(), bw);
  std::printf("%-6s %4s %12s %12s %10s\n", "format", "m", "ms/layer", "weight GB/s", "GFLOP/s");
  // Widening alone (one thread), in decode-sized tiles of 32768 floats, as LinearWeights does.
  for (grpo::DType dtype : {grpo::DType::kBF16, grpo::DType::kF8E4M3}) {
    std::vector<float> tile(1 << 15);
    std::vector<double> times;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = Clock::now();
      for (const Matrix& w : mats) {
        const grpo::Tensor& t = dtype == grpo::DType::kBF16 ? w.bf16 : w.fp8;
        grpo::WeightView v{dtype, D(t.raw_data()),
                           dtype == grpo::DType::kF8E4M3 ? D(w.scale.data<float>()) : nullptr, w.n,
                           w.k, 0};
        const int64_t rows = (1 << 15) / w.k;
        for (int64_t r = 0; r < w.n; r += rows) be.WidenWeightRows(v, r, std::min(w.n, r + rows), D(tile.data()));
      }
      times.push_back(Seconds(t0, Clock::now()));
    }
    std::sort(times.begin(), times.end());
    std::printf("widen %-8s alone: %.3f ms/layer, %.2f G elements/s\n",
                std::string(grpo::DTypeName(dtype)).c_str(), times[2] / layers * 1e3,
                3.0 * hidden * inter * layers / times[2] / 1e9);
  }
  // Every decode kernel this CPU runs (widen+sgemm is the reference path), for a decoding
  // batch of 1, a GRPO group of 16 and 64 rows.
  const grpo::cpu::DecodeKernel best = grpo::cpu::CurrentDecodeKernel();
  for (int64_t m : {1, 16, 64}) {
    std::vector<float> x(m * inter), y(m * inter);
    for (float& v : x) v = d(rng);
    for (grpo::DType dtype : {grpo::DType::kF32, grpo::DType::kBF16, grpo::DType::kF8E4M3}) {
      for (grpo::cpu::DecodeKernel kernel :
           {grpo::cpu::DecodeKernel::kWidenThenSgemm, grpo::cpu::DecodeKernel::kAvx2,
            grpo::cpu::DecodeKernel::kAvx512, grpo::cpu::DecodeKernel::kAvx512Bf16}) {
        if (dtype == grpo::DType::kF32 && kernel != grpo::cpu::DecodeKernel::kWidenThenSgemm) break;
        if (dtype == grpo::DType::kF8E4M3 && kernel == grpo::cpu::DecodeKernel::kAvx512Bf16) break;
        if (!grpo::cpu::SetDecodeKernel(kernel)) break;
        for (int vbmi : Fp8Widenings(dtype, kernel, m)) {
          if (vbmi >= 0) grpo::cpu::UseFp8Vbmi(vbmi == 1);
          auto run_all = [&] {
            for (const Matrix& w : mats) {
              if (dtype == grpo::DType::kF32) {
                be.Linear(D(x.data()), D(w.f32.data<float>()), nullptr, D(y.data()), m, w.k, w.n);
              } else {
                const grpo::Tensor& t = dtype == grpo::DType::kBF16 ? w.bf16 : w.fp8;
                grpo::WeightView v{dtype, D(t.raw_data()),
                                   dtype == grpo::DType::kF8E4M3 ? D(w.scale.data<float>()) : nullptr,
                                   w.n, w.k, 0};
                be.LinearWeights(D(x.data()), v, nullptr, D(y.data()), m, w.k, w.n);
              }
            }
          };
          run_all();  // warm-up
          std::vector<double> times;
          for (int rep = 0; rep < (m == 1 ? 9 : 3); ++rep) {
            const auto t0 = Clock::now();
            run_all();
            times.push_back(Seconds(t0, Clock::now()));
          }
          std::sort(times.begin(), times.end());
          const double t = times[times.size() / 2];
          double bytes = 0;
          for (const Matrix& w : mats) {
            bytes += dtype == grpo::DType::kF32    ? w.f32.nbytes()
                     : dtype == grpo::DType::kBF16 ? w.bf16.nbytes()
                                                   : w.fp8.nbytes() + w.scale.nbytes();
          }
          const double flops = 2.0 * m * 3 * hidden * inter * layers;
          std::printf("%-6s %4lld %12.3f %12.2f %10.1f  %s\n",
                      std::string(grpo::DTypeName(dtype)).c_str(), static_cast<long long>(m),
                      t / layers * 1e3, bytes / t / 1e9, flops / t / 1e9,
                      dtype == grpo::DType::kF32 ? "Linear" : KernelLabel(kernel, vbmi).c_str());
        }
      }
    }
  }
  grpo::cpu::SetDecodeKernel(best);
  grpo::cpu::UseFp8Vbmi(true);
  return 0;
}
