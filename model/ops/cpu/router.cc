#include "model/ops/cpu/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace grpo::cpu {
namespace {

// Indices of the k largest values (ties: lower index first), in descending value order.
void TopK(const float* values, int64_t n, int64_t k, int32_t* out, std::vector<int32_t>& scratch) {
  scratch.resize(n);
  std::iota(scratch.begin(), scratch.end(), 0);
  std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(), [&](int32_t a, int32_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  std::copy(scratch.begin(), scratch.begin() + k, out);
}

}  // namespace

void RouteForward(const RouterSpec& c, const float* logits, const float* bias, int64_t tokens,
                  bool forced, int32_t* experts, float* scores, float* weights) {
  const int64_t e_count = c.num_experts, k = c.top_k;
  std::vector<int32_t> scratch;
  std::vector<float> choice(e_count), group_scores(c.n_group);
  std::vector<int32_t> groups(c.topk_group);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* x = logits + t * e_count;
    float* s = scores + t * e_count;
    int32_t* chosen = experts + t * k;
    float* w = weights + t * k;
    if (c.scoring == RouterSpec::Scoring::kSoftmax) {
      const float mx = *std::max_element(x, x + e_count);
      double sum = 0.0;
      for (int64_t e = 0; e < e_count; ++e) sum += std::exp(static_cast<double>(x[e] - mx));
      for (int64_t e = 0; e < e_count; ++e) s[e] = static_cast<float>(std::exp(static_cast<double>(x[e] - mx)) / sum);
      if (!forced) TopK(s, e_count, k, chosen, scratch);
    } else {
      for (int64_t e = 0; e < e_count; ++e) {
        s[e] = 1.0f / (1.0f + std::exp(-x[e]));
        choice[e] = s[e] + (bias != nullptr ? bias[e] : 0.0f);
      }
      if (!forced) {
        const int64_t per_group = e_count / c.n_group;
        for (int64_t g = 0; g < c.n_group; ++g) {
          int32_t top2[2];
          TopK(choice.data() + g * per_group, per_group, 2, top2, scratch);
          group_scores[g] = choice[g * per_group + top2[0]] + choice[g * per_group + top2[1]];
        }
        TopK(group_scores.data(), c.n_group, c.topk_group, groups.data(), scratch);
        std::vector<bool> keep(c.n_group, false);
        for (int32_t g : groups) keep[g] = true;
        for (int64_t e = 0; e < e_count; ++e) {
          if (!keep[e / per_group]) choice[e] = 0.0f;
        }
        TopK(choice.data(), e_count, k, chosen, scratch);
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

void GroupByExpert(const int32_t* experts, int64_t tokens, int64_t k, int64_t num_experts,
                   int32_t* rows, int32_t* slots, int32_t* counts) {
  std::fill(counts, counts + num_experts, 0);
  for (int64_t i = 0; i < tokens * k; ++i) ++counts[experts[i]];
  std::vector<int64_t> next(num_experts, 0);
  for (int64_t e = 1; e < num_experts; ++e) next[e] = next[e - 1] + counts[e - 1];
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t at = next[experts[t * k + j]]++;
      rows[at] = static_cast<int32_t>(t);
      slots[at] = static_cast<int32_t>(t * k + j);
    }
  }
}

void RouteBackward(const RouterSpec& c, const float* scores, const int32_t* experts,
                   const float* dweights, int64_t tokens, float* dlogits) {
  const int64_t e_count = c.num_experts, k = c.top_k;
  const double rsf = c.routed_scaling_factor;
  std::vector<double> dscore(e_count);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* s = scores + t * e_count;
    const int32_t* chosen = experts + t * k;
    const float* dw = dweights + t * k;
    std::fill(dscore.begin(), dscore.end(), 0.0);
    // w_j = rsf * s_j / D (D = sum + eps when normalized, else 1).
    if (c.norm_topk_prob) {
      double sum = 0.0, dot = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        sum += s[chosen[j]];
        dot += static_cast<double>(dw[j]) * s[chosen[j]];
      }
      const double d = c.scoring == RouterSpec::Scoring::kSigmoid ? sum + 1e-20 : sum;
      for (int64_t j = 0; j < k; ++j) dscore[chosen[j]] += rsf * (dw[j] / d - dot / (d * d));
    } else {
      for (int64_t j = 0; j < k; ++j) dscore[chosen[j]] += rsf * dw[j];
    }
    float* dl = dlogits + t * e_count;
    if (c.scoring == RouterSpec::Scoring::kSoftmax) {
      double dot = 0.0;
      for (int64_t e = 0; e < e_count; ++e) dot += dscore[e] * s[e];
      for (int64_t e = 0; e < e_count; ++e) dl[e] = static_cast<float>(s[e] * (dscore[e] - dot));
    } else {
      for (int64_t e = 0; e < e_count; ++e) dl[e] = static_cast<float>(dscore[e] * s[e] * (1.0 - s[e]));
    }
  }
}

}  // namespace grpo::cpu
