// GradientReducer on forked ranks over Gloo on loopback: buckets reduced during the backward give
// the same bits as reducing after it, the sums are the ranks' gradients added up, and with
// gradient accumulation only the last backward may overlap.
#include "learner/gradient_reducer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "collective/collective_test_lib.h"
#include "collective/gloo_collective.h"
#include "learner/rl_test_util.h"

namespace grpo {
namespace {

using testing_collective::RunRanks;

absl::StatusOr<std::unique_ptr<Collective>> Join(const std::string& dir, int rank, int size) {
  CollectiveOptions co = testing_collective::LoopbackOptions(dir, rank, size);
  co.timeout = absl::Seconds(60);
  return ConnectGloo(co);
}

// A batch of a few random sequences, different for each seed.
TokenBatch RandomBatch(const CausalLM& model, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : {5 + static_cast<int>(seed % 4), 9}) {
    std::vector<int32_t> s(len);
    for (int32_t& t : s) t = static_cast<int32_t>(rng() % model.config().vocab_size);
    seqs.push_back(s);
  }
  return TokenBatch::FromSequences(seqs);
}

// Accumulates the gradient of sum_i w_i logprob_i over `batch` into `grads`.
absl::Status Backprop(CausalLM& model, const TokenBatch& batch, std::vector<Buffer>* grads,
                      const GradientsReady& on_ready = nullptr) {
  GRPO_RETURN_IF_ERROR(model.Forward(batch, {.keep_activations = true}).status());
  std::vector<float> w(batch.num_targets());
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  return model.Backward(w, grads, on_ready);
}

bool SameBits(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  for (size_t p = 0; p < a.size(); ++p) {
    if (a[p].nbytes() != b[p].nbytes() || std::memcmp(a[p].raw_data(), b[p].raw_data(), a[p].nbytes()) != 0) {
      return false;
    }
  }
  return true;
}

std::string OverlapEqualsReducingAfter(const std::string& preset, const std::string& dir, int rank, int size) {
  auto c = Join(dir, rank, size);
  if (!c.ok()) return std::string(c.status().message());
  auto model = rl_test::MakeModel(preset, 5);
  GradientReducerOptions small{.bucket_elements = 3000, .overlap = true};
  auto overlap = GradientReducer::Create(**c, *model, small);
  small.overlap = false;
  auto after = GradientReducer::Create(**c, *model, small);
  if (!overlap.ok() || !after.ok()) return "create";
  if ((*overlap)->num_buckets() < 4) return absl::StrCat("only ", (*overlap)->num_buckets(), " buckets");
  const TokenBatch batch = RandomBatch(*model, 100 + rank);
  std::vector<Buffer> g_on = model->NewGradients(), g_off = model->NewGradients();
  if (auto s = Backprop(*model, batch, &g_on, (*overlap)->Hook(&g_on)); !s.ok()) return std::string(s.message());
  if (auto s = (*overlap)->Finish(&g_on); !s.ok()) return std::string(s.message());
  if ((*overlap)->buckets_started_early() != (*overlap)->num_buckets()) {
    return absl::StrCat((*overlap)->buckets_started_early(), " buckets started during the backward");
  }
  if (static_cast<bool>((*after)->Hook(&g_off))) return "a hook without overlap";
  if (auto s = Backprop(*model, batch, &g_off); !s.ok()) return std::string(s.message());
  if (auto s = (*after)->Finish(&g_off); !s.ok()) return std::string(s.message());
  if ((*after)->buckets_started_early() != 0) return "buckets started early without overlap";
  const std::vector<Tensor> on = model->ReadGradients(g_on), off = model->ReadGradients(g_off);
  if (!SameBits(on, off)) return "overlapped sums differ from the sums after the backward";
  // the sums are every rank's gradients added up (each computed here again)
  std::vector<std::vector<double>> want(on.size());
  for (int r = 0; r < size; ++r) {
    std::vector<Buffer> g;
    if (auto s = Backprop(*model, RandomBatch(*model, 100 + r), &g); !s.ok()) return std::string(s.message());
    const std::vector<Tensor> host = model->ReadGradients(g);
    for (size_t p = 0; p < host.size(); ++p) {
      want[p].resize(host[p].numel());
      for (int64_t k = 0; k < host[p].numel(); ++k) want[p][k] += host[p].data<float>()[k];
    }
  }
  double diff = 0, norm = 0;
  for (size_t p = 0; p < on.size(); ++p) {
    for (int64_t k = 0; k < on[p].numel(); ++k) {
      diff += std::pow(on[p].data<float>()[k] - want[p][k], 2);
      norm += want[p][k] * want[p][k];
    }
  }
  if (!(norm > 0) || !(std::sqrt(diff / norm) < 1e-6)) return absl::StrCat("sums off by ", std::sqrt(diff / norm));
  return "";
}

void ExpectOverlapEqualsReducingAfter(const std::string& preset, int size) {
  const std::string dir = testing_collective::FreshDirectory(absl::StrCat("reducer-", preset, "-", size));
  auto results = RunRanks(size, [&](int rank) { return OverlapEqualsReducingAfter(preset, dir, rank, size); });
  for (int r = 0; r < size; ++r) EXPECT_EQ(results[r].exit_code, 0) << preset << " rank " << r << ": " << results[r].output;
}

TEST(GradientReducer, OverlapGivesTheBitsOfReducingAfterTheBackward) {
  ExpectOverlapEqualsReducingAfter("qwen2-nano", 3);        // tied embedding: reduced last
  ExpectOverlapEqualsReducingAfter("deepseek_v3-nano", 2);  // MoE, untied head
}

// Two micro-batches accumulated into one gradient per rank.
std::string AccumulateThenReduce(const std::string& dir, int rank, int size) {
  auto c = Join(dir, rank, size);
  if (!c.ok()) return std::string(c.status().message());
  auto model = rl_test::MakeModel("llama-nano", 2);
  auto reducer = GradientReducer::Create(**c, *model, {.bucket_elements = 4000, .overlap = true});
  if (!reducer.ok()) return "create";
  GradientReducer& red = **reducer;
  const TokenBatch first = RandomBatch(*model, 10 + rank), second = RandomBatch(*model, 20 + rank);
  // hooked | first backward | second backward
  enum Mode { kLast, kNone, kFirst };
  std::vector<Tensor> result[3];
  for (Mode mode : {kLast, kNone, kFirst}) {
    std::vector<Buffer> g = model->NewGradients();
    if (auto s = Backprop(*model, first, &g, mode == kFirst ? red.Hook(&g) : nullptr); !s.ok()) return "backward 1";
    if (auto s = Backprop(*model, second, &g, mode == kLast ? red.Hook(&g) : nullptr); !s.ok()) return "backward 2";
    if (auto s = red.Finish(&g); !s.ok()) return std::string(s.message());
    if ((red.buckets_started_early() > 0) != (mode != kNone)) return absl::StrCat("mode ", mode, ": early buckets");
    result[mode] = model->ReadGradients(g);
  }
  if (!SameBits(result[kLast], result[kNone])) return "overlapping the last backward changed the sums";
  // a reduction started in the first backward misses the second one's gradients
  if (SameBits(result[kFirst], result[kNone])) return "hooking the first backward went unnoticed";
  return "";
}

TEST(GradientReducer, WithAccumulationOnlyTheLastBackwardOverlaps) {
  const std::string dir = testing_collective::FreshDirectory("reducer-accumulation");
  auto results = RunRanks(2, [&](int rank) { return AccumulateThenReduce(dir, rank, 2); });
  for (int r = 0; r < 2; ++r) EXPECT_EQ(results[r].exit_code, 0) << "rank " << r << ": " << results[r].output;
}

TEST(GradientReducer, RefusesBadBuckets) {
  const std::string dir = testing_collective::FreshDirectory("reducer-bad");
  auto c = Join(dir, 0, 1);
  ASSERT_TRUE(c.ok());
  auto model = rl_test::MakeModel("llama-nano", 2);
  for (int64_t n : {int64_t{0}, int64_t{-5}, int64_t{1} << 31}) {
    auto r = GradientReducer::Create(**c, *model, {.bucket_elements = n});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("bucket"), absl::string_view::npos);
  }
  // one rank: nothing to sum, no hook
  auto one = GradientReducer::Create(**c, *model, {});
  ASSERT_TRUE(one.ok());
  std::vector<Buffer> g = model->NewGradients();
  EXPECT_FALSE(static_cast<bool>((*one)->Hook(&g)));
  EXPECT_TRUE((*one)->Finish(&g).ok());
}

}  // namespace
}  // namespace grpo
