// GradientReducer on forked ranks over Gloo on loopback: buckets reduce-scattered during the
// backward give the same bits as reducing after it, each rank's sums are the ranks' gradients
// added up over its own shard of every bucket (the same bits with other buckets), and with
// gradient accumulation only the last backward may overlap. GradientBuckets: the shards tile the parameters, 1/N each.
#include "learner/gradient_reducer.h"

#include <gtest/gtest.h>

#include <algorithm>
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

absl::StatusOr<std::unique_ptr<GradientReducer>> MakeReducer(Collective& c, const CausalLM& model, int64_t bucket,
                                                              bool overlap) {
  GRPO_ASSIGN_OR_RETURN(GradientBuckets layout, GradientBuckets::Create(model.parameter_specs(),
                                                                        model.gradient_ready_order(), bucket,
                                                                        c.size(), c.rank()));
  return GradientReducer::Create(c, model.backend(), layout, {.overlap = overlap});
}

std::vector<float> Sums(GradientReducer& r) { return std::vector<float>(r.shard_sums().begin(), r.shard_sums().end()); }

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

int64_t TotalTrainable(const CausalLM& model) {
  int64_t n = 0;
  for (const ParameterSpec& s : model.parameter_specs()) n += s.trainable ? NumElements(s.shape) : 0;
  return n;
}

// Accumulates the gradient of sum_i w_i logprob_i over `batch` into `grads`.
absl::Status Backprop(CausalLM& model, const TokenBatch& batch, std::vector<Buffer>* grads,
                      const GradientsReady& on_ready = nullptr) {
  GRPO_RETURN_IF_ERROR(model.Forward(batch, {.keep_activations = true}).status());
  std::vector<float> w(batch.num_targets());
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  return model.Backward(w, grads, on_ready);
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// This rank's sums placed at their flat (checkpoint) positions and summed over the ranks: the
// whole summed gradient, exactly (every element comes from its one owner, zeros elsewhere).
absl::StatusOr<std::vector<float>> WholeSums(Collective& c, GradientReducer& r) {
  std::vector<float> flat(r.layout().total_elements(), 0.0f);
  int64_t at = 0;
  for (const FlatRun& run : r.layout().own_runs()) {
    std::copy(r.shard_sums().begin() + at, r.shard_sums().begin() + at + run.count, flat.begin() + run.flat_offset);
    at += run.count;
  }
  GRPO_RETURN_IF_ERROR(c.AllReduceSum(absl::MakeSpan(flat)));
  return flat;
}

std::string OverlapEqualsReducingAfter(const std::string& preset, const std::string& dir, int rank, int size) {
  auto c = Join(dir, rank, size);
  if (!c.ok()) return std::string(c.status().message());
  auto model = rl_test::MakeModel(preset, 5);
  auto overlap = MakeReducer(**c, *model, 3000, true);
  auto after = MakeReducer(**c, *model, 3000, false);
  if (!overlap.ok() || !after.ok()) return "create";
  if ((*overlap)->num_buckets() < 4) return absl::StrCat("only ", (*overlap)->num_buckets(), " buckets");
  const TokenBatch batch = RandomBatch(*model, 100 + rank);
  std::vector<Buffer> g_on = model->NewGradients(), g_off = model->NewGradients();
  if (auto s = Backprop(*model, batch, &g_on, (*overlap)->Hook(&g_on)); !s.ok()) return std::string(s.message());
  if (auto s = (*overlap)->Finish(g_on); !s.ok()) return std::string(s.message());
  if ((*overlap)->buckets_started_early() != (*overlap)->num_buckets()) {
    return absl::StrCat((*overlap)->buckets_started_early(), " buckets started during the backward");
  }
  if (static_cast<bool>((*after)->Hook(&g_off))) return "a hook without overlap";
  if (auto s = Backprop(*model, batch, &g_off); !s.ok()) return std::string(s.message());
  if (auto s = (*after)->Finish(g_off); !s.ok()) return std::string(s.message());
  if ((*after)->buckets_started_early() != 0) return "buckets started early without overlap";
  const std::vector<float> on = Sums(**overlap), off = Sums(**after);
  if (!SameBits(on, off)) return "overlapped sums differ from the sums after the backward";
  // other buckets (a layout of other shards): every element's sum is the same bits
  auto other = MakeReducer(**c, *model, 1000, true);
  if (!other.ok()) return "create";
  std::vector<Buffer> g_other = model->NewGradients();
  if (auto s = Backprop(*model, batch, &g_other, (*other)->Hook(&g_other)); !s.ok()) return std::string(s.message());
  if (auto s = (*other)->Finish(g_other); !s.ok()) return std::string(s.message());
  auto whole = WholeSums(**c, **overlap), whole_other = WholeSums(**c, **other);
  if (!whole.ok() || !whole_other.ok()) return "all_reduce";
  if (!SameBits(*whole, *whole_other)) return "1000-float buckets sum to other bits than 3000-float ones";
  // the sums are every rank's gradients added up (each computed here again), over this rank's
  // shard of every bucket
  std::vector<std::vector<double>> want;
  for (int r = 0; r < size; ++r) {
    std::vector<Buffer> g;
    if (auto s = Backprop(*model, RandomBatch(*model, 100 + r), &g); !s.ok()) return std::string(s.message());
    const std::vector<Tensor> host = model->ReadGradients(g);
    want.resize(host.size());
    for (size_t p = 0; p < host.size(); ++p) {
      want[p].resize(host[p].numel());
      for (int64_t k = 0; k < host[p].numel(); ++k) want[p][k] += host[p].data<float>()[k];
    }
  }
  const GradientBuckets& layout = (*overlap)->layout();
  double diff = 0, norm = 0;
  int64_t checked = 0;
  for (size_t b = 0; b < layout.buckets().size(); ++b) {
    const GradientBucket& bucket = layout.buckets()[b];
    layout.ForEachPiece(b, bucket.own_begin, bucket.own_begin + bucket.own_count, [&](const BucketPiece& p) {
      const float* got = on.data() + bucket.own_offset + (p.bucket_offset - bucket.own_begin);
      for (int64_t k = 0; k < p.count; ++k, ++checked) {
        diff += std::pow(got[k] - want[p.param][p.param_offset + k], 2);
        norm += std::pow(want[p.param][p.param_offset + k], 2);
      }
    });
  }
  if (checked != layout.own_elements() || checked != static_cast<int64_t>(on.size())) return "own elements";
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
  auto reducer = MakeReducer(**c, *model, 4000, true);
  if (!reducer.ok()) return "create";
  GradientReducer& red = **reducer;
  const TokenBatch first = RandomBatch(*model, 10 + rank), second = RandomBatch(*model, 20 + rank);
  // hooked | first backward | second backward
  enum Mode { kLast, kNone, kFirst };
  std::vector<float> result[3];
  for (Mode mode : {kLast, kNone, kFirst}) {
    std::vector<Buffer> g = model->NewGradients();
    if (auto s = Backprop(*model, first, &g, mode == kFirst ? red.Hook(&g) : nullptr); !s.ok()) return "backward 1";
    if (auto s = Backprop(*model, second, &g, mode == kLast ? red.Hook(&g) : nullptr); !s.ok()) return "backward 2";
    if (auto s = red.Finish(g); !s.ok()) return std::string(s.message());
    if ((red.buckets_started_early() > 0) != (mode != kNone)) return absl::StrCat("mode ", mode, ": early buckets");
    result[mode] = Sums(red);
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
  auto model = rl_test::MakeModel("llama-nano", 2);
  for (int64_t n : {int64_t{0}, int64_t{-5}, int64_t{1} << 31}) {
    auto b = GradientBuckets::Create(model->parameter_specs(), model->gradient_ready_order(), n, 1, 0);
    ASSERT_FALSE(b.ok());
    EXPECT_NE(b.status().message().find("bucket"), absl::string_view::npos);
  }
  auto missing = model->gradient_ready_order();
  missing.back().pop_back();
  EXPECT_FALSE(GradientBuckets::Create(model->parameter_specs(), missing, 1000, 1, 0).ok());
  // one rank: nothing to sum, no hook; the own vector is every gradient, in bucket order
  const std::string dir = testing_collective::FreshDirectory("reducer-one");
  auto c = Join(dir, 0, 1);
  ASSERT_TRUE(c.ok());
  auto one = MakeReducer(**c, *model, 1000, true);
  ASSERT_TRUE(one.ok());
  std::vector<Buffer> g = model->NewGradients();
  ASSERT_TRUE(Backprop(*model, RandomBatch(*model, 3), &g).ok());
  EXPECT_FALSE(static_cast<bool>((*one)->Hook(&g)));
  ASSERT_TRUE((*one)->Finish(g).ok());
  const std::vector<Tensor> host = model->ReadGradients(g);
  const GradientBucket& first = (*one)->layout().buckets()[0];
  const BucketPiece& p = first.pieces[0];
  EXPECT_EQ((*one)->shard_sums()[p.bucket_offset], host[p.param].data<float>()[p.param_offset]);
  EXPECT_EQ(static_cast<int64_t>((*one)->shard_sums().size()), TotalTrainable(*model));
}

// Every bucket is split evenly among the ranks, so the ranks' own vectors tile the flat
// parameter vector and each holds 1/N of it, give or take one element per bucket.
TEST(GradientBuckets, ShardsOfEveryBucketTileTheParameters) {
  auto model = rl_test::MakeModel("deepseek_v3-nano", 2);
  const int64_t total = TotalTrainable(*model);
  for (int ranks : {1, 2, 3, 4}) {
    std::vector<int> owners(total, 0);
    for (int rank = 0; rank < ranks; ++rank) {
      auto b = GradientBuckets::Create(model->parameter_specs(), model->gradient_ready_order(), 2500, ranks, rank);
      ASSERT_TRUE(b.ok()) << b.status();
      const int64_t buckets = static_cast<int64_t>(b->buckets().size());
      EXPECT_GT(buckets, 4);
      EXPECT_LE(std::abs(b->own_elements() - total / ranks), buckets) << ranks << " ranks, rank " << rank;
      int64_t own = 0;
      for (const FlatRun& r : b->own_runs()) {
        for (int64_t k = 0; k < r.count; ++k) ++owners[r.flat_offset + k];
        own += r.count;
      }
      EXPECT_EQ(own, b->own_elements());
      for (const GradientBucket& bucket : b->buckets()) {
        EXPECT_LE(bucket.count, 2500);
        EXPECT_EQ(bucket.shard_counts, EvenShards(bucket.count, ranks));
      }
    }
    EXPECT_EQ(std::count(owners.begin(), owners.end(), 1), total) << ranks << " ranks";
  }
}

}  // namespace
}  // namespace grpo
