// The CUDA backend's sampler (cuda_kernels.h): one block per draw, following
// model/ops/cpu/sampling.cc's SampleRow formula for formula (f64 log-sum-exps with the max
// subtracted before the temperature scales, top-k then top-p then min-p over the logits sorted
// descending with ties to the lower index, an inverse-CDF draw with the draw's own uniform).
// The sums run in parallel (per-thread chunks, then in order), so they round differently from
// the CPU's 8-lane loop: tokens agree except for a draw within rounding of a CDF step.
//
// Filtered draws (top-k/top-p/min-p) read their row sorted: rows are sorted as 64-bit keys
// (order-preserving logit bits above, the complement of the index below), so one descending
// radix sort (cub) orders by logit and breaks ties toward the lower index, whatever the sort's
// stability.
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cuda_runtime.h>

#include <cstdint>

#include "model/ops/cuda/cuda_kernels.h"
#include "model/ops/cuda/kernel_utils.cuh"

namespace grpo::cuda {
namespace {

constexpr int kSampleThreads = 256;

__device__ inline uint32_t OrderedBits(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

__device__ inline int32_t KeyIndex(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key & 0xFFFFFFFFu));
}

__global__ void SortKeysKernel(const float* logits, int64_t vocab, const int64_t* sort_rows,
                               int64_t n_sort, uint64_t* keys) {
  GRPO_GRID_LOOP(i, n_sort * vocab) {
    const int64_t r = i / vocab, id = i % vocab;
    const float x = logits[sort_rows[r] * vocab + id];
    keys[i] = (static_cast<uint64_t>(OrderedBits(x)) << 32) |
              (0xFFFFFFFFu - static_cast<uint32_t>(id));
  }
}

// What the draw's threads share.
struct SampleShared {
  float max_f[32];
  double sum_d[32];
  double partial[kSampleThreads];
  int32_t last_nonzero[kSampleThreads];
  float best_value[kSampleThreads];
  int32_t best_index[kSampleThreads];
};

// scale * d with the largest entries (d == 0) at exactly 0 (sampling.cc's Scaled).
__device__ inline double Scaled(double scale, double d) { return d == 0.0 ? 0.0 : scale * d; }

// The first index of the row's max (std::max_element), to thread 0.
__device__ int32_t ArgMax(const float* x, int64_t vocab, SampleShared& sh) {
  float best = -INFINITY;
  int32_t at = -1;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (at < 0 || x[i] > best) {
      best = x[i];
      at = static_cast<int32_t>(i);
    }
  }
  sh.best_value[threadIdx.x] = best;
  sh.best_index[threadIdx.x] = at;
  __syncthreads();
  int32_t result = -1;
  if (threadIdx.x == 0) {
    float v = -INFINITY;
    for (int t = 0; t < static_cast<int>(blockDim.x); ++t) {
      const int32_t i = sh.best_index[t];
      if (i < 0) continue;
      if (result < 0 || sh.best_value[t] > v || (sh.best_value[t] == v && i < result)) {
        v = sh.best_value[t];
        result = i;
      }
    }
  }
  __syncthreads();
  return result;
}

__global__ void SampleKernel(const float* logits, int64_t vocab, const DeviceDraw* draws,
                             const uint64_t* sorted, int32_t* tokens, float* logprobs,
                             float* raw_logprobs) {
  __shared__ SampleShared sh;
  const int64_t b = blockIdx.x;
  const DeviceDraw o = draws[b];
  const float* x = logits + o.row * vocab;
  float mxf = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mxf = fmaxf(mxf, x[i]);
  const double mx = BlockMax(mxf, sh.max_f);
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) part += exp(x[i] - mx);
  const double raw_lse = mx + log(BlockSum(part, sh.sum_d));
  if (o.temperature == 0.0) {
    const int32_t token = ArgMax(x, vocab, sh);
    if (threadIdx.x == 0) {
      tokens[b] = token;
      raw_logprobs[b] = static_cast<float>(x[token] - raw_lse);
      logprobs[b] = raw_logprobs[b];
    }
    return;
  }
  const double inv_t = 1.0 / o.temperature;
  part = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) part += exp(Scaled(inv_t, x[i] - mx));
  const double t_lse = log(BlockSum(part, sh.sum_d));
  auto log_p = [&](int64_t id) { return Scaled(inv_t, x[id] - mx) - t_lse; };
  const bool filtered = o.top_k > 0 || o.top_p < 1.0 || o.min_p > 0.0;
  if (filtered) {
    if (threadIdx.x != 0) return;
    // The kept tokens are a prefix of the sorted row: walk it as SampleRow does.
    const uint64_t* order = sorted + o.sorted_row * vocab;
    const int64_t k = o.top_k > 0 ? (o.top_k < vocab ? o.top_k : vocab) : vocab;
    const double p_max = exp(log_p(KeyIndex(order[0])));
    double cumulative = 0.0;
    int64_t kept = 0;
    for (; kept < k; ++kept) {
      const double p = exp(log_p(KeyIndex(order[kept])));
      if (p < o.min_p * p_max) break;
      cumulative += p;
      if (cumulative >= o.top_p) {
        ++kept;
        break;
      }
    }
    double mass = 0.0;
    for (int64_t j = 0; j < kept; ++j) mass += exp(log_p(KeyIndex(order[j])));
    const double u = o.uniform * mass;
    double acc = 0.0;
    int32_t chosen = KeyIndex(order[0]);
    for (int64_t j = 0; j < kept; ++j) {
      const int32_t id = KeyIndex(order[j]);
      const double p = exp(log_p(id));
      if (p > 0.0) chosen = id;
      acc += p;
      if (u < acc) break;
    }
    tokens[b] = chosen;
    raw_logprobs[b] = static_cast<float>(x[chosen] - raw_lse);
    logprobs[b] = static_cast<float>(log_p(chosen) - log(mass));
    return;
  }
  // Unfiltered: each thread sums a contiguous chunk, thread 0 finds the chunk where the CDF
  // passes u and walks it.
  const int64_t chunk = (vocab + blockDim.x - 1) / blockDim.x;
  const int64_t c0 = threadIdx.x * chunk, c1 = c0 + chunk < vocab ? c0 + chunk : vocab;
  double s = 0.0;
  int32_t last = -1;
  for (int64_t id = c0; id < c1; ++id) {
    const double p = exp(log_p(id));
    if (p > 0.0) last = static_cast<int32_t>(id);
    s += p;
  }
  sh.partial[threadIdx.x] = s;
  sh.last_nonzero[threadIdx.x] = last;
  __syncthreads();
  if (threadIdx.x != 0) return;
  const double u = o.uniform;
  double acc = 0.0;
  int32_t chosen = 0;
  bool done = false;
  for (int t = 0; t < static_cast<int>(blockDim.x) && !done; ++t) {
    const int64_t a = t * chunk, e = a + chunk < vocab ? a + chunk : vocab;
    if (!(u < acc + sh.partial[t])) {
      acc += sh.partial[t];
      if (sh.last_nonzero[t] >= 0) chosen = sh.last_nonzero[t];
      continue;
    }
    for (int64_t id = a; id < e; ++id) {
      const double p = exp(log_p(id));
      if (p > 0.0) chosen = static_cast<int32_t>(id);
      acc += p;
      if (u < acc) {
        done = true;
        break;
      }
    }
  }
  tokens[b] = chosen;
  raw_logprobs[b] = static_cast<float>(x[chosen] - raw_lse);
  logprobs[b] = static_cast<float>(log_p(chosen));  // mass 1: log(1) = 0
}

}  // namespace

int64_t SortScratchBytes(int64_t n_sort, int64_t vocab) {
  size_t bytes = 0;
  const int items = static_cast<int>(n_sort * vocab);
  GRPO_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeysDescending(
      nullptr, bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      items, static_cast<int>(n_sort), static_cast<const int64_t*>(nullptr),
      static_cast<const int64_t*>(nullptr)));
  return static_cast<int64_t>(bytes);
}

void LaunchSortRows(cudaStream_t s, const float* logits, int64_t vocab, const int64_t* sort_rows,
                    int64_t n_sort, uint64_t* keys_scratch, uint64_t* sorted,
                    const int64_t* segment_offsets, void* sort_temp, int64_t sort_temp_bytes) {
  if (n_sort <= 0) return;
  GRPO_CUDA_LAUNCH(SortKeysKernel, GridFor(n_sort * vocab), kThreads, 0, s, logits, vocab,
                   sort_rows, n_sort, keys_scratch);
  size_t bytes = static_cast<size_t>(sort_temp_bytes);
  GRPO_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeysDescending(
      sort_temp, bytes, keys_scratch, sorted, static_cast<int>(n_sort * vocab),
      static_cast<int>(n_sort), segment_offsets, segment_offsets + 1, 0, 64, s));
}

void LaunchSample(cudaStream_t s, const float* logits, int64_t vocab, const DeviceDraw* draws,
                  int64_t n, const uint64_t* sorted, int32_t* tokens, float* logprobs,
                  float* raw_logprobs) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(SampleKernel, static_cast<unsigned>(n), kSampleThreads, 0, s, logits, vocab,
                   draws, sorted, tokens, logprobs, raw_logprobs);
}

}  // namespace grpo::cuda
