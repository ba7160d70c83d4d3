#include "model/ops/cpu/vector_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace grpo::cpu {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

TEST(VectorKernels, LinearSmallMMatchesDoubleReferenceForEveryShape) {
  for (int64_t m = 1; m <= kSmallLinearRows; ++m) {
    for (int64_t k : {1, 8, 13, 64, 257}) {
      for (int64_t n : {1, 3, 4, 5, 9, 64}) {
        const int64_t ldy = n + 3;
        const auto x = Random(m * k, 3), w = Random(n * k, 4);
        std::vector<float> y(m * ldy, -7.0f);
        LinearSmallM(x.data(), w.data(), y.data(), m, k, n, ldy);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t c = 0; c < ldy; ++c) {
            if (c >= n) {  // padding between rows is not touched
              ASSERT_EQ(y[i * ldy + c], -7.0f);
              continue;
            }
            double ref = 0;
            for (int64_t d = 0; d < k; ++d) ref += double{x[i * k + d]} * w[c * k + d];
            ASSERT_NEAR(y[i * ldy + c], ref, 1e-4 * (1 + std::sqrt(double(k))))
                << "m=" << m << " k=" << k << " n=" << n << " i=" << i << " c=" << c;
          }
        }
      }
    }
  }
}

TEST(VectorKernels, LinearSmallMRowDoesNotDependOnTheOtherRows) {
  const int64_t k = 96, n = 37;
  const auto x = Random(kSmallLinearRows * k, 5), w = Random(n * k, 6);
  std::vector<float> all(kSmallLinearRows * n), one(n);
  LinearSmallM(x.data(), w.data(), all.data(), kSmallLinearRows, k, n, n);
  for (int64_t i = 0; i < kSmallLinearRows; ++i) {
    LinearSmallM(x.data() + i * k, w.data(), one.data(), 1, k, n, n);
    for (int64_t c = 0; c < n; ++c) ASSERT_EQ(one[c], all[i * n + c]) << i << " " << c;
  }
}

TEST(VectorKernels, AttendCachedQueryMatchesSoftmaxReference) {
  for (int64_t len : {1, 2, 17, 300}) {
    for (auto [dqk, dv] : {std::pair<int64_t, int64_t>{32, 32}, {13, 5}, {576, 512}, {192, 128}}) {
      const int64_t koff = 3, voff = koff + dqk + 1, width = voff + dv + 2;
      const auto cache = Random(len * width, 7), q = Random(dqk, 8);
      std::vector<const float*> rows(len);
      for (int64_t j = 0; j < len; ++j) rows[len - 1 - j] = cache.data() + j * width;  // any order
      const float scale = 1.0f / std::sqrt(float(dqk));
      std::vector<float> scores(len), out(dv);
      AttendCachedQuery(q.data(), rows.data(), len, koff, voff, dqk, dv, scale, scores.data(),
                        out.data());
      std::vector<double> p(len);
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < len; ++j) {
        double s = 0;
        for (int64_t d = 0; d < dqk; ++d) s += double{q[d]} * rows[j][koff + d];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      for (double& v : p) sum += (v = std::exp(v - mx));
      for (int64_t d = 0; d < dv; ++d) {
        double ref = 0;
        for (int64_t j = 0; j < len; ++j) ref += p[j] / sum * rows[j][voff + d];
        ASSERT_NEAR(out[d], ref, 2e-5) << "len=" << len << " dqk=" << dqk << " d=" << d;
      }
    }
  }
}

}  // namespace
}  // namespace grpo::cpu
