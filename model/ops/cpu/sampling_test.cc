// cpu::RawLogSumExp and cpu::SampleRow (vectorized f64 exp, 8 lane sums) against long-double
// references: log-sum-exps of rows of every length up to 17 and of a Qwen2.5-sized vocabulary,
// logprobs, and the unfiltered inverse-CDF draw, which must pick the token whose CDF step holds
// the draw (except within rounding of a step).
#include "model/ops/cpu/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace grpo::cpu {
namespace {

std::vector<float> RandomLogits(int64_t n, float spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

// log sum exp(scale * (x - max)) + scale * max... in long double: here scale = 1 / temperature
// applied after the max is subtracted, as SampleRow does.
long double RefLogSumExp(const std::vector<float>& x, long double scale) {
  long double mx = -INFINITY;
  for (float v : x) mx = std::max<long double>(mx, v);
  long double sum = 0;
  for (float v : x) sum += std::exp(scale * (static_cast<long double>(v) - mx));
  return std::log(sum);  // relative to the max
}

TEST(Sampling, RawLogSumExpMatchesALongDoubleReference) {
  for (int64_t n : {1, 2, 3, 7, 8, 9, 15, 16, 17, 1000, 151936}) {
    for (float spread : {0.01f, 1.0f, 30.0f, 300.0f}) {
      const std::vector<float> x = RandomLogits(n, spread, static_cast<uint32_t>(n) + 7);
      double mx;
      const double lse = RawLogSumExp(x, &mx);
      long double ref_max = -INFINITY;
      for (float v : x) ref_max = std::max<long double>(ref_max, v);
      EXPECT_EQ(mx, static_cast<double>(ref_max));
      const long double ref = ref_max + RefLogSumExp(x, 1.0L);
      EXPECT_NEAR(lse, static_cast<double>(ref), 1e-12 * std::max(1.0L, std::fabs(ref)))
          << "n=" << n << " spread=" << spread;
    }
  }
}

TEST(Sampling, RawLogSumExpEdgeValues) {
  double mx;
  // Equal entries: log n exactly up to rounding; exp(0) must be exactly 1.
  EXPECT_DOUBLE_EQ(RawLogSumExp(std::vector<float>(11, 2.5f), &mx), 2.5 + std::log(11.0));
  EXPECT_EQ(RawLogSumExp(std::vector<float>{4.0f}, &mx), 4.0);
  // Entries far below the max (exp subnormal, or 0) vanish next to the max's exp(0) = 1;
  // entries 20 below it do not.
  EXPECT_EQ(RawLogSumExp(std::vector<float>{0.0f, -800.0f, -746.0f, -740.0f, -1e30f}, &mx), 0.0);
  EXPECT_NEAR(RawLogSumExp(std::vector<float>{0.0f, -20.0f, -1e30f}, &mx),
              std::log1p(std::exp(-20.0)), 1e-15);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(RawLogSumExp(std::vector<float>{-inf, 1.0f, -inf}, &mx), 1.0);
  // A NaN logit makes the sum NaN (it is never silently dropped).
  EXPECT_TRUE(std::isnan(RawLogSumExp(std::vector<float>{1.0f, std::nanf(""), 0.0f}, &mx)));
}

TEST(Sampling, GreedyLogprobMatchesTheReference) {
  const std::vector<float> x = RandomLogits(151936, 3.0f, 11);
  const SampleResult r = SampleRow(x, {.temperature = 0.0});
  int64_t best = 0;
  for (int64_t i = 1; i < static_cast<int64_t>(x.size()); ++i) best = x[i] > x[best] ? i : best;
  EXPECT_EQ(r.token, best);
  EXPECT_NEAR(r.raw_logprob, static_cast<double>(-RefLogSumExp(x, 1.0L)), 1e-6);
  EXPECT_EQ(r.logprob, r.raw_logprob);
}

// The unfiltered draw against a long-double walk of the CDF: the same token for every uniform
// except within 1e-9 of a step; logprobs within 1e-6 of the reference.
TEST(Sampling, UnfilteredDrawPicksTheStepHoldingTheUniform) {
  for (int64_t n : {1, 5, 8, 13, 4096}) {
    for (double temperature : {1.0, 0.6, 1.7}) {
      const std::vector<float> x = RandomLogits(n, 2.0f, static_cast<uint32_t>(n * 3));
      const long double scale = 1.0L / temperature, t_lse = RefLogSumExp(x, scale);
      long double mx = -INFINITY;
      for (float v : x) mx = std::max<long double>(mx, v);
      std::vector<long double> cdf(n);
      long double acc = 0;
      for (int64_t i = 0; i < n; ++i) {
        acc += std::exp(scale * (x[i] - mx) - t_lse);
        cdf[i] = acc;
      }
      int checked = 0;
      for (int j = 0; j < 2000; ++j) {
        const double u = (j + 0.5) / 2000.0;
        int64_t want = 0;
        while (want + 1 < n && cdf[want] <= u) ++want;
        bool near_step = false;
        for (int64_t i = std::max<int64_t>(0, want - 1); i <= want; ++i) {
          near_step |= std::fabs(cdf[i] - u) < 1e-9L;
        }
        if (near_step) continue;
        const SampleResult r = SampleRow(x, {.temperature = temperature, .uniform = u});
        ASSERT_EQ(r.token, want) << "n=" << n << " T=" << temperature << " u=" << u;
        const long double ref_logp = scale * (x[want] - mx) - t_lse;
        ASSERT_NEAR(r.logprob, static_cast<double>(ref_logp), 1e-6);
        ++checked;
      }
      EXPECT_GT(checked, 1900);
    }
  }
}

// A draw past the last step (u = 1, at or past a CDF that rounding leaves at or short of 1)
// takes the last token of nonzero probability, never one whose probability is 0.
TEST(Sampling, DrawPastTheEndTakesTheLastPossibleToken) {
  std::vector<float> x(20, -1e30f);
  x[3] = 0.0f;
  x[9] = -1.0f;
  const SampleResult r = SampleRow(x, {.temperature = 1.0, .uniform = 1.0});
  EXPECT_EQ(r.token, 9);
  const SampleResult first = SampleRow(x, {.temperature = 1.0, .uniform = 0.0});
  EXPECT_EQ(first.token, 3);
}

// Greedy decoding picks the first index of the max, as std::max_element does: ties go to the
// lower index, NaNs after index 0 are never the max, a NaN at index 0 stays the pick.
TEST(Sampling, GreedyTakesTheFirstMaxAsMaxElementDoes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<std::vector<float>> rows = {
      {1, 3, 3, nan, 2}, {nan, 1, 2}, {1, nan, 3}, {-2, -1, -1}, {5}};
  for (const std::vector<float>& x : rows) {
    for (int64_t pad : {0, 9}) {  // also past the 8-lane blocks
      std::vector<float> row = x;
      row.insert(row.end(), pad, -100.0f);
      const int32_t expected =
          static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      EXPECT_EQ(SampleRow(row, {.temperature = 0.0}).token, expected) << row.size();
    }
  }
  EXPECT_EQ(SampleRow(std::vector<float>{1, 3, 3, nan, 2}, {.temperature = 0.0}).token, 1);
  EXPECT_EQ(SampleRow(std::vector<float>{nan, 1, 2}, {.temperature = 0.0}).token, 0);
}

}  // namespace
}  // namespace grpo::cpu
