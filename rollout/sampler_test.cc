#include "rollout/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "model/ops/backend.h"
#include "model/ops/cpu_guarded/guarded_backend.h"

namespace grpo {
namespace {

std::vector<double> Softmax(const std::vector<float>& x, double t) {
  double mx = -INFINITY, sum = 0;
  for (float v : x) mx = std::max(mx, v / t);
  std::vector<double> p;
  for (float v : x) p.push_back(std::exp(v / t - mx));
  for (double v : p) sum += v;
  for (double& v : p) v /= sum;
  return p;
}

const std::vector<float> kLogits = {1.0f, 3.0f, 0.5f, 2.5f, -1.0f, 2.9f};

TEST(Sampler, GreedyIsArgmaxWithRawLogprob) {
  std::mt19937_64 rng(1);
  const SampledToken t = SampleToken(kLogits, {.temperature = 0.0}, rng);
  EXPECT_EQ(t.token, 1);
  EXPECT_NEAR(t.raw_logprob, std::log(Softmax(kLogits, 1.0)[1]), 1e-6);
  EXPECT_EQ(t.logprob, t.raw_logprob);
}

TEST(Sampler, FrequenciesAndLogprobsFollowTheTemperatureDistribution) {
  std::mt19937_64 rng(7);
  const double temperature = 0.7;
  const std::vector<double> p = Softmax(kLogits, temperature);
  std::map<int, int> counts;
  const int draws = 40000;
  for (int i = 0; i < draws; ++i) {
    const SampledToken t = SampleToken(kLogits, {.temperature = temperature}, rng);
    ++counts[t.token];
    ASSERT_NEAR(t.logprob, std::log(p[t.token]), 1e-5);
    ASSERT_NEAR(t.raw_logprob, std::log(Softmax(kLogits, 1.0)[t.token]), 1e-5);
  }
  for (size_t id = 0; id < p.size(); ++id) {
    const double expected = p[id] * draws;
    EXPECT_NEAR(counts[static_cast<int>(id)], expected, 5 * std::sqrt(expected) + 1) << id;
  }
}

TEST(Sampler, FiltersRestrictAndRenormalize) {
  const std::vector<double> p = Softmax(kLogits, 1.0);
  std::mt19937_64 rng(3);
  // top-k 2 keeps ids 1 and 5.
  for (int i = 0; i < 2000; ++i) {
    const SampledToken t = SampleToken(kLogits, {.top_k = 2}, rng);
    ASSERT_TRUE(t.token == 1 || t.token == 5);
    ASSERT_NEAR(t.logprob, std::log(p[t.token] / (p[1] + p[5])), 1e-5);
  }
  // top-p just above p(1) keeps ids 1 and 5; tiny top-p keeps only the argmax.
  for (int i = 0; i < 500; ++i) {
    const SampledToken t = SampleToken(kLogits, {.top_p = p[1] + 1e-3}, rng);
    ASSERT_TRUE(t.token == 1 || t.token == 5);
    EXPECT_EQ(SampleToken(kLogits, {.top_p = 1e-6}, rng).token, 1);
  }
  // min-p 0.5 keeps tokens with p >= p(1)/2: ids 1, 5 and 3.
  for (int i = 0; i < 2000; ++i) {
    const SampledToken t = SampleToken(kLogits, {.min_p = 0.5}, rng);
    ASSERT_TRUE(t.token == 1 || t.token == 5 || t.token == 3) << t.token;
    ASSERT_NEAR(t.logprob, std::log(p[t.token] / (p[1] + p[5] + p[3])), 1e-5);
  }
}

// Found by rollout/request_fuzz.cc: a GenerateRequest with temperature 1.9e-38 got logprobs of
// +1e22 or infinity (logits / temperature cancelled against the log-sum-exp). Any positive
// temperature must give the limit of the tempered distribution: the argmax, logprob 0 (-log 2
// between two tied maxima), finite and <= 0, with or without filters.
TEST(Sampler, TinyTemperaturesGiveTheGreedyLimitWithFiniteLogprobs) {
  std::mt19937_64 rng(5);
  for (double t : {1.8e-38, 1.4e-45, 1e-300, 4.9e-324}) {
    for (SamplingOptions o : {SamplingOptions{.temperature = t}, SamplingOptions{.temperature = t, .top_k = 3},
                              SamplingOptions{.temperature = t, .top_p = 0.5},
                              SamplingOptions{.temperature = t, .min_p = 0.1}}) {
      for (int i = 0; i < 20; ++i) {
        const SampledToken s = SampleToken(kLogits, o, rng);
        ASSERT_EQ(s.token, 1) << "temperature " << t;
        ASSERT_EQ(s.logprob, 0.0f) << "temperature " << t;
        ASSERT_NEAR(s.raw_logprob, std::log(Softmax(kLogits, 1.0)[1]), 1e-6);
      }
    }
    const std::vector<float> tied = {3.0f, -2.0f, 3.0f};
    std::map<int, int> counts;
    for (int i = 0; i < 400; ++i) {
      const SampledToken s = SampleToken(tied, {.temperature = t}, rng);
      ASSERT_TRUE(s.token == 0 || s.token == 2) << s.token;
      ASSERT_NEAR(s.logprob, -std::log(2.0), 1e-6);
      ++counts[s.token];
    }
    EXPECT_GT(counts[0], 100);
    EXPECT_GT(counts[2], 100);
    // Huge logits: still finite, and only the largest can be drawn.
    const SampledToken s = SampleToken(std::vector<float>{1e30f, -1e30f, 3.0f, 1e29f}, {.temperature = t}, rng);
    EXPECT_EQ(s.token, 0);
    EXPECT_EQ(s.logprob, 0.0f);
  }
}

TEST(Sampler, SameSeedSameDraws) {
  std::mt19937_64 a(42), b(42);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(SampleToken(kLogits, {}, a).token, SampleToken(kLogits, {}, b).token);
}

TEST(Sampler, ValidationNamesTheField) {
  EXPECT_NE(ValidateSampling({.temperature = -1}).message().find("temperature"), std::string::npos);
  EXPECT_NE(ValidateSampling({.top_p = 0}).message().find("top_p"), std::string::npos);
  EXPECT_NE(ValidateSampling({.top_k = -2}).message().find("top_k"), std::string::npos);
  EXPECT_NE(ValidateSampling({.min_p = 1}).message().find("min_p"), std::string::npos);
  EXPECT_TRUE(ValidateSampling({}).ok());
}

// The backend's sampling op (what the engine uses) against SampleToken, the host reference: the
// same tokens and logprobs bit for bit over many options, rows and draws, with the draw made from
// each sample's own RNG exactly as SampleToken makes it.
TEST(Sampler, BackendSampleEqualsSampleTokenBitForBit) {
  Backend& be = BackendForTests();
  const int64_t vocab = 97, rows = 3;
  std::mt19937 init(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(rows * vocab);
  for (float& v : logits) v = normal(init);
  logits[vocab + 7] = logits[vocab + 8] = 9.0f;  // a tie in row 1
  const Buffer logits_d = Upload(be, logits);
  const std::vector<SamplingOptions> options = {
      {.temperature = 0.0}, {.temperature = 1.0}, {.temperature = 0.6, .top_k = 5},
      {.temperature = 1.3, .top_p = 0.8}, {.temperature = 0.9, .min_p = 0.1},
      {.temperature = 1e-30}, {.temperature = 0.7, .top_p = 0.5, .top_k = 20, .min_p = 0.05}};
  int64_t compared = 0;
  for (const SamplingOptions& o : options) {
    std::mt19937_64 host_rng(42), device_rng(42);
    std::vector<SampledToken> want;
    std::vector<SamplingRow> draws;
    for (int d = 0; d < 60; ++d) {
      const int64_t row = d % rows;
      want.push_back(SampleToken(std::span<const float>(logits.data() + row * vocab, vocab), o, host_rng));
      const double u = o.temperature == 0.0 ? 0.0 : std::generate_canonical<double, 64>(device_rng);
      draws.push_back({o.temperature, o.top_p, o.top_k, o.min_p, u, row});
    }
    const int64_t n = static_cast<int64_t>(draws.size());
    Buffer tokens(&be, n, DType::kI32), lp(&be, n), raw(&be, n);
    be.Sample(logits_d.data(), vocab, draws, tokens.i32(), lp.data(), raw.data());
    const std::vector<int32_t> got_tokens = DownloadI32(be, tokens);
    const std::vector<float> got_lp = DownloadF32(be, lp), got_raw = DownloadF32(be, raw);
    for (int64_t d = 0; d < n; ++d) {
      ASSERT_EQ(got_tokens[d], want[d].token) << "draw " << d;
      ASSERT_EQ(got_lp[d], want[d].logprob) << "draw " << d;
      ASSERT_EQ(got_raw[d], want[d].raw_logprob) << "draw " << d;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 7 * 60);
}

}  // namespace
}  // namespace grpo
