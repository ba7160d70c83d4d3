// The CUDA backend's mixture-of-experts kernels (cuda_kernels.h): routing (softmax top-k and
// DeepSeek-V3's group-limited sigmoid routing with correction bias), its backward, and the
// grouping of the chosen (token, slot) pairs by expert. One thread per token runs the CPU's
// algorithm (model/ops/cpu/router.cc) step for step: top-k by repeated arg-max with ties to the
// lower index (the same choice as its partial_sort), the same f64 sums.
#include <cuda_runtime.h>

#include <cstdint>

#include "model/ops/cuda/cuda_kernels.h"
#include "model/ops/cuda/kernel_utils.cuh"

namespace grpo::cuda {
namespace {

// Indices of the k largest of values[0, n) (ties: lower index), in descending order, into out.
// `taken` marks chosen entries (cleared here; n <= kMaxExperts).
__device__ void TopK(const float* values, int64_t n, int64_t k, int32_t* out, bool* taken) {
  for (int64_t e = 0; e < n; ++e) taken[e] = false;
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < n; ++e) {
      if (!taken[e] && (best < 0 || values[e] > values[best])) best = e;
    }
    taken[best] = true;
    out[j] = static_cast<int32_t>(best);
  }
}

__global__ void RouteKernel(RouterSpec c, const float* logits, const float* bias, int64_t tokens,
                            bool forced, int32_t* experts, float* scores, float* weights) {
  GRPO_GRID_LOOP(t, tokens) {
    const int64_t e_count = c.num_experts, k = c.top_k;
    const float* x = logits + t * e_count;
    float* s = scores + t * e_count;
    int32_t* chosen = experts + t * k;
    float* w = weights + t * k;
    bool taken[kMaxExperts];
    if (c.scoring == RouterSpec::Scoring::kSoftmax) {
      float mx = x[0];
      for (int64_t e = 1; e < e_count; ++e) mx = fmaxf(mx, x[e]);
      double sum = 0.0;
      for (int64_t e = 0; e < e_count; ++e) sum += exp(static_cast<double>(x[e] - mx));
      for (int64_t e = 0; e < e_count; ++e) {
        s[e] = static_cast<float>(exp(static_cast<double>(x[e] - mx)) / sum);
      }
      if (!forced) TopK(s, e_count, k, chosen, taken);
    } else {
      float choice[kMaxExperts];
      for (int64_t e = 0; e < e_count; ++e) {
        s[e] = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x[e])));
        choice[e] = __fadd_rn(s[e], bias != nullptr ? bias[e] : 0.0f);
      }
      if (!forced) {
        const int64_t per_group = e_count / c.n_group;
        float group_scores[kMaxExpertGroups];
        int32_t top2[2], groups[kMaxExpertGroups];
        for (int64_t g = 0; g < c.n_group; ++g) {
          TopK(choice + g * per_group, per_group, 2, top2, taken);
          group_scores[g] = __fadd_rn(choice[g * per_group + top2[0]], choice[g * per_group + top2[1]]);
        }
        TopK(group_scores, c.n_group, c.topk_group, groups, taken);
        for (int64_t e = 0; e < e_count; ++e) {
          bool keep = false;
          for (int64_t j = 0; j < c.topk_group; ++j) keep = keep || groups[j] == e / per_group;
          if (!keep) choice[e] = 0.0f;
        }
        TopK(choice, e_count, k, chosen, taken);
      }
    }
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      w[j] = s[chosen[j]];
      sum += w[j];
    }
    if (c.norm_topk_prob) {
      const double denom = c.scoring == RouterSpec::Scoring::kSigmoid ? sum + 1e-20 : sum;
      for (int64_t j = 0; j < k; ++j) w[j] = static_cast<float>(w[j] / denom);
    }
    if (c.routed_scaling_factor != 1.0) {
      for (int64_t j = 0; j < k; ++j) w[j] = static_cast<float>(w[j] * c.routed_scaling_factor);
    }
  }
}

__global__ void RouteBackwardKernel(RouterSpec c, const float* scores, const int32_t* experts,
                                    const float* dweights, int64_t tokens, float* dlogits) {
  GRPO_GRID_LOOP(t, tokens) {
    const int64_t e_count = c.num_experts, k = c.top_k;
    const double rsf = c.routed_scaling_factor;
    const float* s = scores + t * e_count;
    const int32_t* chosen = experts + t * k;
    const float* dw = dweights + t * k;
    // dscore of choice j (w_j = rsf * s_j / D, D = sum + eps when normalized, else 1).
    double dscore[kMaxTopK];
    if (c.norm_topk_prob) {
      double sum = 0.0, dot = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        sum += s[chosen[j]];
        dot += static_cast<double>(dw[j]) * s[chosen[j]];
      }
      const double d = c.scoring == RouterSpec::Scoring::kSigmoid ? sum + 1e-20 : sum;
      for (int64_t j = 0; j < k; ++j) dscore[j] = rsf * (dw[j] / d - dot / (d * d));
    } else {
      for (int64_t j = 0; j < k; ++j) dscore[j] = rsf * dw[j];
    }
    float* dl = dlogits + t * e_count;
    // The dscore of expert e: the sum over the choices naming it (zero for the others).
    auto dscore_of = [&](int64_t e) {
      double v = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        if (chosen[j] == e) v += dscore[j];
      }
      return v;
    };
    if (c.scoring == RouterSpec::Scoring::kSoftmax) {
      double dot = 0.0;
      for (int64_t e = 0; e < e_count; ++e) dot += dscore_of(e) * s[e];
      for (int64_t e = 0; e < e_count; ++e) dl[e] = static_cast<float>(s[e] * (dscore_of(e) - dot));
    } else {
      for (int64_t e = 0; e < e_count; ++e) {
        dl[e] = static_cast<float>(dscore_of(e) * s[e] * (1.0 - s[e]));
      }
    }
  }
}

// One block; thread e owns expert e (and e + blockDim.x, ...): counts its choices, finds where
// its rows start (the counts before it), then lists its (t, j) choices in order.
__global__ void GroupByExpertKernel(const int32_t* experts, int64_t tokens, int64_t k,
                                    int64_t num_experts, int32_t* rows, int32_t* slots,
                                    int32_t* counts) {
  const int64_t n = tokens * k;
  for (int64_t e = threadIdx.x; e < num_experts; e += blockDim.x) {
    int32_t count = 0;
    for (int64_t i = 0; i < n; ++i) count += experts[i] == e ? 1 : 0;
    counts[e] = count;
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < num_experts; e += blockDim.x) {
    int64_t at = 0;
    for (int64_t f = 0; f < e; ++f) at += counts[f];
    for (int64_t i = 0; i < n; ++i) {
      if (experts[i] != e) continue;
      rows[at] = static_cast<int32_t>(i / k);
      slots[at] = static_cast<int32_t>(i);
      ++at;
    }
  }
}

// offsets[0] = 0, offsets[e + 1] = offsets[e] + counts[e]: one thread (E is small).
__global__ void ExpertOffsetsKernel(const int32_t* counts, int64_t num_experts, int32_t* offsets) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  offsets[0] = 0;
  for (int64_t e = 0; e < num_experts; ++e) offsets[e + 1] = offsets[e] + counts[e];
}

// Padded row r = e * capacity + i of expert e holds its permuted row offsets[e] + i, or zeros
// past its count.
__global__ void PadExpertRowsKernel(const float* src, const int32_t* offsets, int64_t capacity,
                                    int64_t padded_rows, int64_t dim, float* dst) {
  GRPO_GRID_LOOP(x, padded_rows * dim) {
    const int64_t r = x / dim, c = x % dim, e = r / capacity, i = r % capacity;
    const int64_t begin = offsets[e], count = offsets[e + 1] - begin;
    dst[x] = i < count ? src[(begin + i) * dim + c] : 0.0f;
  }
}

// The inverse: permuted row offsets[e] + i = padded row e * capacity + i, for i < count.
__global__ void UnpadExpertRowsKernel(const float* src, const int32_t* offsets, int64_t capacity,
                                      int64_t padded_rows, int64_t dim, float* dst) {
  GRPO_GRID_LOOP(x, padded_rows * dim) {
    const int64_t r = x / dim, c = x % dim, e = r / capacity, i = r % capacity;
    const int64_t begin = offsets[e], count = offsets[e + 1] - begin;
    if (i < count) dst[(begin + i) * dim + c] = src[x];
  }
}

// rows[i] = slots[i] / k: the token of each permuted choice.
__global__ void SlotTokensKernel(const int32_t* slots, int64_t n, int64_t k, int32_t* rows) {
  GRPO_GRID_LOOP(i, n) { rows[i] = static_cast<int32_t>(slots[i] / k); }
}

}  // namespace

void LaunchExpertOffsets(cudaStream_t s, const int32_t* counts, int64_t num_experts,
                         int32_t* offsets) {
  GRPO_CUDA_LAUNCH(ExpertOffsetsKernel, 1, 1, 0, s, counts, num_experts, offsets);
}

void LaunchPadExpertRows(cudaStream_t s, const float* src, const int32_t* offsets,
                         int64_t num_experts, int64_t capacity, int64_t dim, float* dst) {
  const int64_t padded = num_experts * capacity;
  if (padded * dim <= 0) return;
  GRPO_CUDA_LAUNCH(PadExpertRowsKernel, GridFor(padded * dim), kThreads, 0, s, src, offsets,
                   capacity, padded, dim, dst);
}

void LaunchUnpadExpertRows(cudaStream_t s, const float* src, const int32_t* offsets,
                           int64_t num_experts, int64_t capacity, int64_t dim, float* dst) {
  const int64_t padded = num_experts * capacity;
  if (padded * dim <= 0) return;
  GRPO_CUDA_LAUNCH(UnpadExpertRowsKernel, GridFor(padded * dim), kThreads, 0, s, src, offsets,
                   capacity, padded, dim, dst);
}

void LaunchSlotTokens(cudaStream_t s, const int32_t* slots, int64_t n, int64_t k, int32_t* rows) {
  if (n <= 0) return;
  GRPO_CUDA_LAUNCH(SlotTokensKernel, GridFor(n), kThreads, 0, s, slots, n, k, rows);
}

void LaunchRoute(cudaStream_t s, const RouterSpec& spec, const float* logits, const float* bias,
                 int64_t tokens, bool forced, int32_t* experts, float* scores, float* weights) {
  if (tokens <= 0) return;
  GRPO_CUDA_LAUNCH(RouteKernel, GridFor(tokens, 64), 64, 0, s, spec, logits, bias, tokens, forced,
                   experts, scores, weights);
}

void LaunchRouteBackward(cudaStream_t s, const RouterSpec& spec, const float* scores,
                         const int32_t* experts, const float* dweights, int64_t tokens,
                         float* dlogits) {
  if (tokens <= 0) return;
  GRPO_CUDA_LAUNCH(RouteBackwardKernel, GridFor(tokens, 64), 64, 0, s, spec, scores, experts,
                   dweights, tokens, dlogits);
}

void LaunchGroupByExpert(cudaStream_t s, const int32_t* experts, int64_t tokens, int64_t k,
                         int64_t num_experts, int32_t* rows, int32_t* slots, int32_t* counts) {
  if (num_experts <= 0) return;
  GRPO_CUDA_LAUNCH(GroupByExpertKernel, 1, 1024, 0, s, experts, tokens, k, num_experts, rows,
                   slots, counts);
}

}  // namespace grpo::cuda
