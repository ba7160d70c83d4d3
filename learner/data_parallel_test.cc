// Data-parallel ranks: N forked ranks joined over Gloo on loopback apply the update one process
// applies (the weights after RlUpdate equal the single-process weights within 1e-5 relative),
// gradient buckets sum exactly, the token split is balanced, and the groups message round-trips.
#include "learner/data_parallel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "collective/collective_test_lib.h"
#include "collective/gloo_collective.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"

namespace grpo {
namespace {

using testing_collective::RunRanks;

std::unique_ptr<CausalLM> Make(const std::string& preset, uint64_t seed) {
  auto c = PresetConfig(preset);
  auto m = CausalLM::Create(*c, InitParameters(*c, seed, 0.1), BackendForTests());
  return std::move(m).value();
}

std::vector<RlGroup> RandomGroups(int64_t num_groups, int64_t g, uint64_t seed, int32_t vocab) {
  std::mt19937_64 rng(seed);
  std::vector<RlGroup> groups(num_groups);
  for (auto& group : groups) {
    const int64_t p = 2 + rng() % 5;
    for (int64_t i = 0; i < p; ++i) group.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    for (int64_t s = 0; s < g; ++s) {
      RlSample sample;
      const int64_t t = 1 + rng() % 9;
      for (int64_t i = 0; i < t; ++i) sample.completion.push_back(static_cast<int32_t>(rng() % vocab));
      sample.advantage = std::uniform_real_distribution<double>(-1.5, 1.5)(rng);
      group.samples.push_back(std::move(sample));
    }
  }
  groups[0].samples[0].trained = false;
  return groups;
}

// ||a - b|| / ||b|| over all parameters together. (Per tensor it would be dominated by the
// zero-initialized biases: AdamW's first steps move every element by about +-lr whatever the
// gradient's size, so a gradient element that rounding flips across zero flips its update.)
double RelativeDifference(CausalLM& a, CausalLM& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.parameter_specs().size(); ++i) {
    const Parameter pa = a.ReadParameter(i), pb = b.ReadParameter(i);
    const float* x = pa.value.data<float>();
    const float* y = pb.value.data<float>();
    for (int64_t k = 0; k < pa.value.numel(); ++k) {
      diff += (double(x[k]) - y[k]) * (double(x[k]) - y[k]);
      norm += double(y[k]) * y[k];
    }
  }
  return std::sqrt(diff) / std::sqrt(norm);
}

struct Case {
  std::string preset;
  int64_t groups, group_size, mini_batches, epochs;
  double kl_beta;
  Objective objective;
};

// Runs RlUpdate twice per rank: alone (the reference) and as one of `size` ranks.
std::string CompareWithOneProcess(const Case& k, const std::string& dir, int rank, int size) {
  CollectiveOptions co;
  co.rank = rank;
  co.size = size;
  co.rendezvous_dir = dir;
  co.host = "127.0.0.1";
  co.timeout = absl::Seconds(60);
  auto c = ConnectGloo(co);
  if (!c.ok()) return std::string(c.status().message());
  const auto groups = RandomGroups(k.groups, k.group_size, 11, 200);
  RlUpdateOptions o;
  o.loss = PolicyLossPreset(k.objective);
  o.loss.kl_beta = k.kl_beta;
  o.loss.norm_length = 16;  // used by Dr.GRPO's aggregation only
  o.mini_batches = k.mini_batches;
  o.epochs = k.epochs;
  o.schedule.lr = 1e-4;  // the nano recipe's
  o.max_grad_norm = 1.0;
  o.routing_replay = false;
  auto reference = Make(k.preset, 4);
  std::unique_ptr<CausalLM> models[2] = {Make(k.preset, 3), Make(k.preset, 3)};
  RlUpdateStats stats[2];
  for (int run = 0; run < 2; ++run) {
    o.collective = run == 0 ? nullptr : c->get();
    auto opt = AdamW::Create(models[run]->backend(), models[run]->parameter_specs(), {});
    std::vector<Buffer> grads;
    for (int step = 0; step < 3; ++step) {
      auto s = RlUpdate(*models[run], reference.get(), *opt, groups, o, &grads);
      if (!s.ok()) return absl::StrCat("run ", run, ": ", s.status().message());
      stats[run] = *s;
    }
  }
  const double rel = RelativeDifference(*models[1], *models[0]);
  if (!(rel <= 1e-5)) return absl::StrCat("weights differ by ", rel, " relative");
  if (std::abs(stats[1].loss - stats[0].loss) > 1e-5 * (1 + std::abs(stats[0].loss))) {
    return absl::StrCat("loss ", stats[1].loss, " vs ", stats[0].loss);
  }
  if (std::abs(stats[1].entropy - stats[0].entropy) > 1e-5 * stats[0].entropy) {
    return absl::StrCat("entropy ", stats[1].entropy, " vs ", stats[0].entropy);
  }
  if (stats[1].tokens != stats[0].tokens) return "token counts differ";
  return "";
}

void ExpectSameAsOneProcess(const Case& k, int size) {
  const std::string dir =
      testing_collective::FreshDirectory(absl::StrCat("dp-", k.preset, "-", size));
  auto results = RunRanks(size, [&](int rank) { return CompareWithOneProcess(k, dir, rank, size); });
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(results[r].exit_code, 0) << k.preset << " " << size << " ranks, rank " << r << ": "
                                       << results[r].output;
  }
}

TEST(DataParallel, RanksApplyTheOneProcessUpdate) {
  const Case dense{"qwen2-nano", 4, 3, 2, 2, 0.04, Objective::kGrpo};
  const Case moe{"deepseek_v3-nano", 2, 4, 1, 1, 0.0, Objective::kDapo};
  for (int size : {2, 3}) ExpectSameAsOneProcess(dense, size);
  ExpectSameAsOneProcess(moe, 4);
}

TEST(DataParallel, MoreRanksThanSamplesLeavesSomeRanksIdle) {
  ExpectSameAsOneProcess({"llama-nano", 1, 2, 1, 1, 0.0, Objective::kDrGrpo}, 3);
}

TEST(DataParallel, GradientBucketsSumAcrossRanks) {
  const std::string dir = testing_collective::FreshDirectory("buckets");
  auto results = RunRanks(3, [&](int rank) -> std::string {
    CollectiveOptions co;
    co.rank = rank;
    co.size = 3;
    co.rendezvous_dir = dir;
    co.host = "127.0.0.1";
    auto c = ConnectGloo(co);
    if (!c.ok()) return std::string(c.status().message());
    auto model = Make("qwen2-nano", 1);
    std::vector<Buffer> grads = model->NewGradients();
    const auto& specs = model->parameter_specs();
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!specs[i].trainable) continue;
      std::vector<float> v(grads[i].numel());
      for (size_t k = 0; k < v.size(); ++k) v[k] = float((rank + 1) * ((i * 31 + k) % 13));
      grads[i].backend()->CopyHostToDevice(v.data(), grads[i].raw(), grads[i].bytes());
    }
    if (auto s = AllReduceGradients(**c, specs, &grads, /*bucket_elements=*/1000); !s.ok()) {
      return std::string(s.message());
    }
    std::vector<Tensor> host = model->ReadGradients(grads);
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!specs[i].trainable) continue;
      for (int64_t k = 0; k < host[i].numel(); ++k) {
        const float want = float(6 * ((i * 31 + k) % 13));
        if (host[i].data<float>()[k] != want) return absl::StrCat("param ", i, " element ", k);
      }
    }
    return "";
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(results[r].exit_code, 0) << results[r].output;
}

TEST(DataParallel, SplitByTokensIsContiguousAndBalanced) {
  EXPECT_EQ(SplitByTokens({5, 5, 5, 5}, 2), (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(SplitByTokens({10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2), (std::vector<size_t>{0, 1, 11}));
  EXPECT_EQ(SplitByTokens({3}, 3), (std::vector<size_t>{0, 0, 1, 1}));
  EXPECT_EQ(SplitByTokens({}, 2), (std::vector<size_t>{0, 0, 0}));
  EXPECT_EQ(SplitByTokens({4, 4, 4}, 1), (std::vector<size_t>{0, 3}));
}

TEST(DataParallel, GroupsMessageRoundTrips) {
  std::vector<RlGroup> groups = RandomGroups(3, 2, 5, 100);
  groups[1].samples[1].rollout_logprobs = {-0.5f, -1.25f};
  groups[2].prompt_routing = {1, 2, 3};
  groups[2].samples[0].routing = {4, 5};
  const std::string bytes = SerializeGroups(groups);
  auto back = ParseGroups(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  EXPECT_EQ(SerializeGroups(*back), bytes);
  EXPECT_EQ((*back)[1].samples[1].rollout_logprobs, groups[1].samples[1].rollout_logprobs);
  EXPECT_FALSE((*back)[0].samples[0].trained);
  EXPECT_EQ(ParseGroups(bytes.substr(0, bytes.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace grpo
