// Data-parallel ranks: N forked ranks joined over Gloo on loopback apply the update one process
// applies (the weights after RlUpdate equal the single-process weights within 1e-5 relative),
// gradient buckets sum exactly, the token split is balanced, and the groups message round-trips.
#include "learner/data_parallel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "collective/collective_test_lib.h"
#include "collective/gloo_collective.h"
#include "learner/gradient_reducer.h"
#include "learner/rl_test_util.h"

namespace grpo {
namespace {

using testing_collective::RunRanks;

std::string ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<CausalLM> Make(const std::string& preset, uint64_t seed) { return rl_test::MakeModel(preset, seed); }

std::vector<RlGroup> RandomGroups(int64_t num_groups, int64_t g, uint64_t seed, int32_t vocab) {
  return rl_test::RandomGroups(num_groups, g, seed, vocab, {.max_completion_tokens = 9});
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
  bool sharded = false;  // ZeRO-1: AdamW state sharded across the ranks
  bool reducer = false;  // gradients summed by a GradientReducer overlapped with the backward
};

// Runs RlUpdate twice per rank: alone (the reference) and as one of `size` ranks.
std::string CompareWithOneProcess(const Case& k, const std::string& dir, int rank, int size) {
  CollectiveOptions co = testing_collective::LoopbackOptions(dir, rank, size);
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
    const bool sharded = run == 1 && k.sharded;
    auto opt = AdamW::Create(models[run]->backend(), sharded ? std::vector<ParameterSpec>{}
                                                             : models[run]->parameter_specs(), {});
    std::optional<ShardedAdamW> zero;
    if (sharded) {
      auto z = ShardedAdamW::Create(models[run]->backend(), models[run]->parameter_specs(), {}, **c);
      if (!z.ok()) return std::string(z.status().message());
      zero.emplace(std::move(*z));
      o.sharded_optimizer = &*zero;
      const int64_t total = TrainableElements(models[run]->parameter_specs());
      const int64_t want = 2 * static_cast<int64_t>(EvenShards(total, size)[rank]);
      if (zero->state_elements() != want || (size > 1 && zero->state_elements() >= 2 * total)) {
        return absl::StrCat("rank holds ", zero->state_elements(), " state elements, want ", want);
      }
    }
    std::unique_ptr<GradientReducer> reducer;
    if (run == 1 && k.reducer) {
      auto red = GradientReducer::Create(**c, *models[run], {.bucket_elements = 5000, .overlap = true});
      if (!red.ok()) return std::string(red.status().message());
      reducer = std::move(*red);
      o.gradient_reducer = reducer.get();
    }
    std::vector<Buffer> grads;
    for (int step = 0; step < 3; ++step) {
      auto s = RlUpdate(*models[run], reference.get(), *opt, groups, o, &grads);
      if (!s.ok()) return absl::StrCat("run ", run, ": ", s.status().message());
      stats[run] = *s;
    }
    o.sharded_optimizer = nullptr;
    o.gradient_reducer = nullptr;
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
  int64_t samples = 0;  // RandomGroups leaves one sample out (trained false)
  for (const RlGroup& g : groups) {
    for (const RlSample& s : g.samples) samples += s.trained ? 1 : 0;
  }
  if (samples >= k.groups * k.group_size) return "every sample is trained: the count cannot tell a lost one";
  if (stats[0].samples_trained != samples || stats[1].samples_trained != samples) {
    return absl::StrCat("samples_trained ", stats[1].samples_trained, " (ranks) and ", stats[0].samples_trained,
                        " (one process), want ", samples);
  }
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

TEST(DataParallel, ShardedOptimizerRanksApplyTheOneProcessUpdate) {
  for (int size : {2, 3}) {
    ExpectSameAsOneProcess({"qwen2-nano", 4, 3, 2, 2, 0.04, Objective::kGrpo, /*sharded=*/true}, size);
  }
  ExpectSameAsOneProcess({"deepseek_v3-nano", 2, 4, 1, 1, 0.0, Objective::kDapo, /*sharded=*/true}, 4);
}

TEST(DataParallel, OverlappedReductionRanksApplyTheOneProcessUpdate) {
  ExpectSameAsOneProcess({"qwen2-nano", 4, 3, 2, 2, 0.04, Objective::kGrpo, true, /*reducer=*/true}, 2);
  ExpectSameAsOneProcess({"deepseek_v3-nano", 2, 4, 1, 1, 0.0, Objective::kDapo, true, /*reducer=*/true}, 4);
  ExpectSameAsOneProcess({"llama-nano", 4, 3, 2, 1, 0.0, Objective::kGrpo, false, /*reducer=*/true}, 3);
}

// Three RlUpdate calls (2 mini-batches each, ZeRO-1) with the reduction overlapped and with it
// after the backward: the same weights bit for bit, and the overlap did start buckets early.
std::string OverlapOnAndOff(const std::string& preset, const std::string& dir, int rank, int size) {
  const CollectiveOptions co = testing_collective::LoopbackOptions(dir, rank, size);
  auto c = ConnectGloo(co);
  if (!c.ok()) return std::string(c.status().message());
  const auto groups = RandomGroups(4, 3, 17, 200);
  std::unique_ptr<CausalLM> models[2] = {Make(preset, 3), Make(preset, 3)};
  for (int overlap = 0; overlap < 2; ++overlap) {
    CausalLM& model = *models[overlap];
    auto zero = ShardedAdamW::Create(model.backend(), model.parameter_specs(), {}, **c);
    auto reducer = GradientReducer::Create(**c, model, {.bucket_elements = 4000, .overlap = overlap == 1});
    auto noop = AdamW::Create(model.backend(), {}, {});
    if (!zero.ok() || !reducer.ok() || !noop.ok()) return "create";
    RlUpdateOptions o;
    o.mini_batches = 2;
    o.schedule.lr = 1e-3;
    o.routing_replay = false;
    o.collective = c->get();
    o.sharded_optimizer = &*zero;
    o.gradient_reducer = reducer->get();
    std::vector<Buffer> grads;
    for (int step = 0; step < 3; ++step) {
      if (auto s = RlUpdate(model, nullptr, *noop, groups, o, &grads); !s.ok()) return std::string(s.status().message());
    }
    if (((*reducer)->buckets_started_early() > 0) != (overlap == 1)) return "buckets started early or not";
  }
  for (size_t i = 0; i < models[0]->num_parameters(); ++i) {
    const Parameter a = models[0]->ReadParameter(i), b = models[1]->ReadParameter(i);
    if (std::memcmp(a.value.raw_data(), b.value.raw_data(), a.value.nbytes()) != 0) {
      return "weights differ: " + models[0]->parameter_specs()[i].name;
    }
  }
  return "";
}

TEST(DataParallel, OverlappedReductionGivesTheSameWeightsBitForBit) {
  for (const char* preset : {"qwen2-nano", "deepseek_v3-nano"}) {
    const std::string dir = testing_collective::FreshDirectory(absl::StrCat("overlap-", preset));
    auto results = RunRanks(3, [&](int rank) { return OverlapOnAndOff(preset, dir, rank, 3); });
    for (int r = 0; r < 3; ++r) EXPECT_EQ(results[r].exit_code, 0) << preset << " rank " << r << ": " << results[r].output;
  }
}

// Shards written by N ranks read back whole, with another rank count's layout, into a
// one-process AdamW, and into a new sharded AdamW (which writes the same bytes again).
std::string CheckShardCheckpoint(Collective& c, const std::string& dir) {
  auto model = Make("qwen2-nano", 3);
  const auto& specs = model->parameter_specs();
  auto zero = ShardedAdamW::Create(model->backend(), specs, {}, c);
  if (!zero.ok()) return std::string(zero.status().message());
  auto noop = AdamW::Create(model->backend(), {}, {});
  RlUpdateOptions o;
  o.collective = &c;
  o.sharded_optimizer = &*zero;
  o.schedule.lr = 1e-3;
  std::vector<Buffer> grads;
  if (auto s = RlUpdate(*model, nullptr, *noop, RandomGroups(2, 3, 7, 200), o, &grads); !s.ok()) {
    return std::string(s.status().message());
  }
  if (auto s = zero->SaveShard(dir); !s.ok()) return std::string(s.message());
  if (!c.Barrier().ok()) return "barrier";
  const int64_t total = TrainableElements(specs);
  auto whole = ReadOptimizerRange(dir, specs, 0, total);
  if (!whole.ok()) return std::string(whole.status().message());
  if (whole->step != 1) return absl::StrCat("step ", whole->step);
  // the whole state, gathered from the ranks' memory, equals what the files say
  std::vector<float> gathered(total, 0.0f);
  auto mine = ReadOptimizerRange(dir, specs, zero->shard_offset(), zero->state_elements() / 2);
  if (!mine.ok()) return std::string(mine.status().message());
  std::copy(mine->exp_avg.begin(), mine->exp_avg.end(), gathered.begin() + zero->shard_offset());
  if (!c.AllGather(absl::MakeSpan(gathered), EvenShards(total, c.size())).ok()) return "all_gather";
  if (gathered != whole->exp_avg) return "the shards do not add up to the whole state";
  bool nonzero = false;
  for (float x : whole->exp_avg_sq) nonzero |= x != 0;
  if (!nonzero) return "exp_avg_sq is all zero: nothing was trained";
  // another rank count's layout: 3 ranges, concatenated
  std::vector<float> joined;
  const std::vector<size_t> three = EvenShards(total, 3);
  for (int r = 0; r < 3; ++r) {
    auto part = ReadOptimizerRange(dir, specs, ShardOffset(three, r), three[r]);
    if (!part.ok()) return std::string(part.status().message());
    joined.insert(joined.end(), part->exp_avg_sq.begin(), part->exp_avg_sq.end());
  }
  if (joined != whole->exp_avg_sq) return "a 3-rank layout reads other values";
  // one process
  auto one = AdamW::Create(model->backend(), specs, {});
  if (auto s = LoadAnyOptimizerState(dir, &*one, specs); !s.ok()) return std::string(s.message());
  if (one->step() != 1) return "one-process step";
  int64_t at = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].trainable) continue;
    const Tensor m = one->exp_avg(i);
    if (!std::equal(m.data<float>(), m.data<float>() + m.numel(), whole->exp_avg.begin() + at)) {
      return "one-process load of " + specs[i].name;
    }
    at += m.numel();
  }
  // a new sharded optimizer loads its shard and writes the same bytes
  auto again = ShardedAdamW::Create(model->backend(), specs, {}, c);
  if (auto s = again->LoadShard(dir); !s.ok()) return std::string(s.message());
  const std::string copy = dir + "/copy" + std::to_string(c.rank());
  std::filesystem::create_directories(copy);
  if (auto s = again->SaveShard(copy); !s.ok()) return std::string(s.message());
  const std::string name = "/optimizer-shard-0000" + std::to_string(c.rank()) + "-of-0000" + std::to_string(c.size()) +
                           ".safetensors";
  if (ReadFileToString(copy + name) != ReadFileToString(dir + name)) return "reloaded shard differs";
  return "";
}

TEST(DataParallel, ShardCheckpointsLoadWithAnyRankCount) {
  const std::string dir = testing_collective::FreshDirectory("shards");
  auto results = RunRanks(2, [&](int rank) -> std::string {
    const CollectiveOptions co = testing_collective::LoopbackOptions(dir + "/rdv", rank, 2);
    auto c = ConnectGloo(co);
    if (!c.ok()) return std::string(c.status().message());
    return CheckShardCheckpoint(**c, dir);
  });
  for (int r = 0; r < 2; ++r) EXPECT_EQ(results[r].exit_code, 0) << results[r].output;
}

TEST(DataParallel, MoreRanksThanSamplesLeavesSomeRanksIdle) {
  ExpectSameAsOneProcess({"llama-nano", 1, 2, 1, 1, 0.0, Objective::kDrGrpo}, 3);
  // an idle rank runs no backward and still takes part in every bucket's reduction
  ExpectSameAsOneProcess({"llama-nano", 1, 2, 1, 1, 0.0, Objective::kDrGrpo, true, /*reducer=*/true}, 3);
}

TEST(DataParallel, GradientBucketsSumAcrossRanks) {
  const std::string dir = testing_collective::FreshDirectory("buckets");
  auto results = RunRanks(3, [&](int rank) -> std::string {
    const CollectiveOptions co = testing_collective::LoopbackOptions(dir, rank, 3);
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
  groups[0].samples[1].token_advantages = {0.25, -1.5};
  groups[1].samples[0].loss_mask = {1, 0, 1};
  const std::string bytes = SerializeGroups(groups);
  auto back = ParseGroups(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  EXPECT_EQ(SerializeGroups(*back), bytes);
  EXPECT_EQ((*back)[1].samples[1].rollout_logprobs, groups[1].samples[1].rollout_logprobs);
  EXPECT_FALSE((*back)[0].samples[0].trained);
  EXPECT_EQ((*back)[0].samples[1].token_advantages, groups[0].samples[1].token_advantages);
  EXPECT_EQ((*back)[1].samples[0].loss_mask, groups[1].samples[0].loss_mask);
  EXPECT_EQ(ParseGroups(bytes.substr(0, bytes.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace grpo
