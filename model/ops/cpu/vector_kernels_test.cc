#include "model/ops/cpu/vector_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
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

TEST(VectorKernels, AttendQueryMatchesSoftmaxReference) {
  for (int64_t len : {1, 2, 17, 300}) {
    for (auto [dqk, dv] : {std::pair<int64_t, int64_t>{32, 32}, {13, 5}, {576, 512}, {192, 128}}) {
      const int64_t koff = 3, voff = koff + dqk + 1, width = voff + dv + 2;
      const auto cache = Random(len * width, 7), q = Random(dqk, 8);
      std::vector<const float*> rows(len);
      for (int64_t j = 0; j < len; ++j) rows[len - 1 - j] = cache.data() + j * width;  // any order
      const float scale = 1.0f / std::sqrt(float(dqk));
      std::vector<float> scores(len), out(dv);
      float lse = 0;
      AttendQuery(q.data(), rows.data(), koff, rows.data(), voff, len, dqk, dv, scale, scores.data(),
                  out.data(), &lse);
      std::vector<double> p(len);
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < len; ++j) {
        double s = 0;
        for (int64_t d = 0; d < dqk; ++d) s += double{q[d]} * rows[j][koff + d];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      for (double& v : p) sum += (v = std::exp(v - mx));
      ASSERT_NEAR(lse, mx + std::log(sum), 1e-5 * (1 + std::fabs(mx)));
      for (int64_t d = 0; d < dv; ++d) {
        double ref = 0;
        for (int64_t j = 0; j < len; ++j) ref += p[j] / sum * rows[j][voff + d];
        ASSERT_NEAR(out[d], ref, 2e-5) << "len=" << len << " dqk=" << dqk << " d=" << d;
      }
    }
  }
}

// The heads of a token sharing a KV head, attended together: each query's output and
// log-sum-exp are the bits AttendQuery gives it alone, whatever the number of queries, the
// lengths (across the 8-key score blocks and the 64-key value blocks) and the head sizes.
TEST(VectorKernels, AttendQueriesGivesEachQueryItsOwnBits) {
  for (int64_t len : {1, 7, 8, 9, 64, 65, 200}) {
    for (auto [dqk, dv] : {std::pair<int64_t, int64_t>{64, 64}, {13, 5}, {192, 128}, {576, 512}, {40, 72}}) {
      for (int64_t count : {1, 2, 7}) {
        const int64_t koff = 2, voff = koff + dqk, width = voff + dv + 1;
        const auto cache = Random(len * width, 11), q = Random(count * (dqk + 3), 12);
        std::vector<const float*> rows(len);
        for (int64_t j = 0; j < len; ++j) rows[j] = cache.data() + ((j * 5) % len) * width;
        std::vector<float> scores(count * len), out(count * (dv + 1), -1.0f), lse(count);
        AttendQueries(q.data(), dqk + 3, count, rows.data(), koff, rows.data(), voff, len, dqk, dv,
                      0.1f, scores.data(), out.data(), dv + 1, lse.data());
        for (int64_t i = 0; i < count; ++i) {
          std::vector<float> one_scores(len), one(dv);
          float one_lse = 0;
          AttendQuery(q.data() + i * (dqk + 3), rows.data(), koff, rows.data(), voff, len, dqk, dv,
                      0.1f, one_scores.data(), one.data(), &one_lse);
          ASSERT_EQ(std::memcmp(one.data(), out.data() + i * (dv + 1), dv * sizeof(float)), 0)
              << "len=" << len << " dqk=" << dqk << " dv=" << dv << " count=" << count << " i=" << i;
          ASSERT_EQ(lse[i], one_lse);
          ASSERT_EQ(out[i * (dv + 1) + dv], -1.0f);  // the stride's gap is not written
        }
      }
    }
  }
}

// Keys transposed once (prefill): every query's output and log-sum-exp are AttendQueries' bits,
// over any length (across 16-key blocks, fewer keys than kt holds), head sizes and number of
// queries (value rows shared by 4 at a time, and the rest).
TEST(VectorKernels, AttendQueriesTransposedGivesAttendQueriesBits) {
  if (!TransposedKeysAvailable(64, 64)) GTEST_SKIP() << "no AVX-512 on this CPU";
  EXPECT_FALSE(TransposedKeysAvailable(40, 64));
  EXPECT_FALSE(TransposedKeysAvailable(64, 72));
  const int64_t total = 210;  // keys in kt; each case attends over the first len
  for (int64_t len : {1, 7, 15, 16, 17, 64, 65, 200}) {
    for (auto [dqk, dv] : {std::pair<int64_t, int64_t>{64, 64}, {16, 48}, {192, 128}, {128, 80}, {576, 512}}) {
      for (int64_t count : {1, 2, 3, 4, 5, 7}) {
        const int64_t koff = 2, voff = koff + dqk, width = voff + dv + 1;
        const auto cache = Random(total * width, 21), q = Random(count * (dqk + 3), 22);
        std::vector<const float*> rows(total);
        for (int64_t j = 0; j < total; ++j) rows[j] = cache.data() + ((j * 7) % total) * width;
        std::vector<float> kt_buffer(TransposedKeysFloats(total, dqk) + 16);
        float* kt = kt_buffer.data() + (16 - reinterpret_cast<uintptr_t>(kt_buffer.data()) / 4 % 16) % 16;
        TransposeKeys(rows.data(), koff, total, dqk, kt);
        std::vector<float> scores(count * len), out(count * (dv + 1), -1.0f), lse(count);
        AttendQueriesTransposed(q.data(), dqk + 3, count, kt, rows.data(), voff, len, dqk, dv,
                                0.1f, scores.data(), out.data(), dv + 1, lse.data());
        std::vector<float> ref_scores(count * len), ref(count * (dv + 1), -1.0f), ref_lse(count);
        AttendQueries(q.data(), dqk + 3, count, rows.data(), koff, rows.data(), voff, len, dqk, dv,
                      0.1f, ref_scores.data(), ref.data(), dv + 1, ref_lse.data());
        ASSERT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * sizeof(float)), 0)
            << "len=" << len << " dqk=" << dqk << " dv=" << dv << " count=" << count;
        ASSERT_EQ(std::memcmp(ref_lse.data(), lse.data(), count * sizeof(float)), 0);
        for (int64_t i = 0; i < count; ++i) ASSERT_EQ(out[i * (dv + 1) + dv], -1.0f);
      }
    }
  }
}

TEST(VectorKernels, ExpIsWithinTwoUlpOverTheWholeRangeAndSaturates) {
  std::vector<float> x;
  for (float v = -87.3f; v < 88.3f; v += 0.0137f) x.push_back(v);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.5f, -0.5f, 1.0f, 88.37f, -87.33f}) x.push_back(v);
  std::vector<float> y(x.size());
  ScaledExp(x.data(), static_cast<int64_t>(x.size()), 0.0f, 1.0f, y.data());
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(double{x[i]});
    const double ulp = std::nextafter(static_cast<float>(ref), INFINITY) - static_cast<float>(ref);
    ASSERT_LE(std::abs(y[i] - ref), 2 * ulp) << "x=" << x[i] << " got " << y[i] << " want " << ref;
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  std::vector<float> edge = {-88.0f, -1000.0f, -inf, 88.5f, 1000.0f, inf, nan, 0.0f, 0.0f};
  std::vector<float> out(edge.size());
  ScaledExp(edge.data(), static_cast<int64_t>(edge.size()), 0.0f, 1.0f, out.data());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(out[i], 0.0f) << edge[i];
  for (int i = 3; i < 6; ++i) EXPECT_EQ(out[i], inf) << edge[i];
  EXPECT_TRUE(std::isnan(out[6]));
  EXPECT_EQ(out[7], 1.0f);
}

TEST(VectorKernels, ScaledExpShiftsAndScales) {
  const auto x = Random(37, 11);
  std::vector<float> y(x.size());
  ScaledExp(x.data(), 37, 0.75f, -2.5f, y.data());
  for (int i = 0; i < 37; ++i) ASSERT_NEAR(y[i], -2.5 * std::exp(double{x[i]} - 0.75), 1e-6 * std::abs(y[i]) + 1e-7);
  ScaledExp(x.data(), 37, 0.75f, -2.5f, const_cast<float*>(x.data()));  // in place
  for (int i = 0; i < 37; ++i) ASSERT_EQ(x[i], y[i]);
}

TEST(VectorKernels, SoftmaxMatchesDoubleReference) {
  for (int64_t n : {1, 7, 8, 9, 100, 4099}) {
    auto x = Random(n, 12);
    for (float& v : x) v *= 8;  // spread: many tiny probabilities
    if (n > 1) x[n / 2] = -std::numeric_limits<float>::infinity();  // masked: probability 0
    std::vector<float> p = x;
    Softmax(p.data(), n);
    double mx = -1e300, sum = 0;
    for (float v : x) mx = std::max(mx, double{v});
    for (float v : x) sum += std::exp(v - mx);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(p[i], std::exp(x[i] - mx) / sum, 1e-6 * (std::exp(x[i] - mx) / sum) + 1e-12) << n << " " << i;
      total += p[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
    if (n > 1) EXPECT_EQ(p[n / 2], 0.0f);
  }
}

TEST(VectorKernels, LogSoftmaxRowMatchesDoubleReference) {
  for (int64_t n : {1, 5, 512, 513, 151936}) {
    auto x = Random(n, 13);
    for (float& v : x) v = v * 4 + 30;  // offset: the max must be taken out
    const LogSoftmaxStats st = LogSoftmaxRow(x.data(), n, true);
    double mx = -1e300, sum = 0, weighted = 0;
    for (float v : x) mx = std::max(mx, double{v});
    for (float v : x) sum += std::exp(v - mx);
    for (float v : x) weighted += std::exp(v - mx) / sum * (v - mx - std::log(sum));
    EXPECT_EQ(st.max, static_cast<float>(mx));
    EXPECT_NEAR(st.log_sum, std::log(sum), 1e-6) << n;
    EXPECT_NEAR(st.entropy, -weighted, 1e-5 * (1 - weighted)) << n;
    EXPECT_EQ(LogSoftmaxRow(x.data(), n, false).log_sum, st.log_sum);
  }
}

TEST(VectorKernels, SwiGluAndItsBackwardMatchDoubleReference) {
  const int64_t n = 203;
  auto g = Random(n, 14), u = Random(n, 15), d = Random(n, 16);
  for (int64_t i = 0; i < n; ++i) g[i] *= 4;
  g[0] = -100.0f;  // exp(100) overflows f32: silu must still be -0 / its slope 0
  g[1] = 100.0f;
  std::vector<float> out(n), dg(n), du(n);
  SwiGlu(g.data(), u.data(), out.data(), n);
  SwiGluBackward(d.data(), g.data(), u.data(), dg.data(), du.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double x = g[i], sig = 1 / (1 + std::exp(-x)), silu = x * sig;
    ASSERT_NEAR(out[i], silu * u[i], 1e-6 * (1 + std::abs(silu * u[i]))) << i;
    ASSERT_NEAR(du[i], d[i] * silu, 1e-6 * (1 + std::abs(d[i] * silu))) << i;
    const double dgate = d[i] * u[i] * sig * (1 + x * (1 - sig));
    ASSERT_NEAR(dg[i], dgate, 1e-6 * (1 + std::abs(dgate))) << i;
  }
}

TEST(VectorKernels, RmsNormRowAndItsBackwardMatchDoubleReference) {
  for (int64_t dim : {1, 7, 64, 300, 7168}) {
    auto x = Random(dim, 17), w = Random(dim, 18), dy = Random(dim, 19);
    for (float& v : x) v = v * 3 + 1;
    const float eps = 1e-6f;
    std::vector<float> y(dim), dx(dim);
    const float rs = RmsNormRow(x.data(), w.data(), y.data(), dim, eps);
    RmsNormRowBackward(dy.data(), x.data(), w.data(), rs, dx.data(), dim);
    double ss = 0, dot = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double{x[i]} * x[i];
    const double r = 1 / std::sqrt(ss / dim + eps);
    EXPECT_NEAR(rs, r, 1e-6 * r) << dim;
    for (int64_t i = 0; i < dim; ++i) dot += double{dy[i]} * w[i] * x[i];
    for (int64_t i = 0; i < dim; ++i) {
      ASSERT_NEAR(y[i], x[i] * r * w[i], 1e-5 * (1 + std::abs(x[i] * r * w[i]))) << dim << " " << i;
      const double ref = r * dy[i] * w[i] - x[i] * r * r * r / dim * dot;
      ASSERT_NEAR(dx[i], ref, 1e-5 * (1 + std::abs(ref))) << dim << " " << i;
    }
  }
}

}  // namespace
}  // namespace grpo::cpu
