// Data-parallel ranks: N forked ranks joined over Gloo on loopback apply the update one process
// applies (the weights after RlUpdate equal the single-process weights within 1e-5 relative),
// gradient buckets sum exactly, the token split is balanced, and the groups message round-trips.
#include "learner/data_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "collective/collective_test_lib.h"
#include "collective/gloo_collective.h"
#include "core/safetensors.h"
#include "learner/gradient_buckets.h"
#include "learner/gradient_reducer.h"
#include "learner/rl_test_util.h"
#include "model/presets.h"

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

// ZeRO-1 over `model` on this rank: buckets of `bucket` floats.
absl::StatusOr<GradientBuckets> Layout(const CausalLM& model, const Collective& c, int64_t bucket) {
  return GradientBuckets::Create(model.parameter_specs(), model.gradient_ready_order(), bucket, c.size(), c.rank());
}

absl::StatusOr<ShardedAdamW> MakeZero(CausalLM& model, Collective& c, int64_t bucket) {
  GRPO_ASSIGN_OR_RETURN(GradientBuckets layout, Layout(model, c, bucket));
  return ShardedAdamW::Create(model.backend(), model.parameter_specs(), layout, {}, c);
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
  bool divergence = false;  // full-distribution distillation to random teacher logits, no advantages
};

// Runs RlUpdate twice per rank: alone (the reference) and as one of `size` ranks.
std::string CompareWithOneProcess(const Case& k, const std::string& dir, int rank, int size) {
  CollectiveOptions co = testing_collective::LoopbackOptions(dir, rank, size);
  co.timeout = absl::Seconds(60);
  auto c = ConnectGloo(co);
  if (!c.ok()) return std::string(c.status().message());
  auto groups = RandomGroups(k.groups, k.group_size, 11, 200);
  RlUpdateOptions o;
  if (k.divergence) {
    const int64_t V = PresetConfig(k.preset)->vocab_size;
    std::mt19937 rng(13);
    std::normal_distribution<float> logit(0.0f, 2.0f);
    for (RlGroup& g : groups) {
      for (RlSample& s : g.samples) {
        s.advantage = 0;
        s.teacher_logits.resize(s.completion.size() * V);
        for (float& x : s.teacher_logits) x = logit(rng);
      }
    }
    o.divergence = Divergence::kReverseKl;
  }
  o.loss = PolicyLossPreset(k.objective);
  o.loss.kl_beta = k.kl_beta;
  o.loss.norm_length = 16;  // used by Dr.GRPO's aggregation only
  o.loss.divergence_coef = k.divergence ? 1.0 : 0.0;
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
      auto z = MakeZero(*models[run], **c, 5000);
      if (!z.ok()) return std::string(z.status().message());
      zero.emplace(std::move(*z));
      o.sharded_optimizer = &*zero;
      // each rank holds its shard of every bucket: 1/N of the state, give or take one per bucket
      const int64_t total = TrainableElements(models[run]->parameter_specs());
      const int64_t buckets = static_cast<int64_t>(zero->layout().buckets().size());
      if (std::abs(zero->state_elements() - 2 * total / size) > 2 * buckets) {
        return absl::StrCat("rank holds ", zero->state_elements(), " state elements of ", 2 * total);
      }
    }
    std::unique_ptr<GradientReducer> reducer;
    if (run == 1 && k.reducer) {
      if (!zero) return "a gradient reducer feeds the sharded optimizer";
      auto red = GradientReducer::Create(**c, models[run]->backend(), zero->layout(), {.overlap = true});
      if (!red.ok()) return std::string(red.status().message());
      reducer = std::move(*red);
      // host staging: the own vector (1/N) and 2 bucket images, less than one whole gradient
      const int64_t staging = reducer->host_elements() + zero->host_elements();
      const int64_t total = zero->layout().total_elements();
      if (staging != zero->layout().own_elements() + 2 * zero->layout().max_bucket_elements() || staging >= total) {
        return absl::StrCat("host staging of ", staging, " floats for ", total, " parameters");
      }
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
  if (k.divergence) {  // the divergence term moved the weights, and every rank saw the same value
    const double moved = RelativeDifference(*models[0], *Make(k.preset, 3));
    if (!(moved > 1e-4)) return absl::StrCat("the update moved the weights by only ", moved, " relative");
    if (!(stats[0].divergence > 0) ||
        std::abs(stats[1].divergence - stats[0].divergence) > 1e-5 * stats[0].divergence) {
      return absl::StrCat("divergence ", stats[1].divergence, " vs ", stats[0].divergence);
    }
  }
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
  // Full-distribution distillation: each rank computes the divergence of its own samples.
  ExpectSameAsOneProcess({"qwen2-nano", 4, 3, 2, 2, 0.0, Objective::kGrpo, false, false, /*divergence=*/true}, 2);
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
  ExpectSameAsOneProcess({"llama-nano", 4, 3, 2, 1, 0.0, Objective::kGrpo, true, /*reducer=*/true}, 3);
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
    auto zero = MakeZero(model, **c, 4000);
    if (!zero.ok()) return std::string(zero.status().message());
    auto reducer = GradientReducer::Create(**c, model.backend(), zero->layout(), {.overlap = overlap == 1});
    auto noop = AdamW::Create(model.backend(), {}, {});
    if (!reducer.ok() || !noop.ok()) return "create";
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

// Writes rank c.rank()'s range of the contiguous layout (EvenShards of the flat vector) in the
// earlier shard format, "grpo.adamw.shard.v1".
absl::Status WriteContiguousShard(Collective& c, const OptimizerRange& whole, const std::string& dir) {
  const std::vector<size_t> counts = EvenShards(whole.exp_avg.size(), c.size());
  const size_t offset = ShardOffset(counts, c.rank()), n = counts[c.rank()];
  Tensor m = Tensor::Zeros(DType::kF32, {static_cast<int64_t>(n)}), v = Tensor::Zeros(DType::kF32, {static_cast<int64_t>(n)});
  std::memcpy(m.mutable_raw_data(), whole.exp_avg.data() + offset, n * sizeof(float));
  std::memcpy(v.mutable_raw_data(), whole.exp_avg_sq.data() + offset, n * sizeof(float));
  return WriteSafetensors(absl::StrCat(dir, "/optimizer-shard-0000", c.rank(), "-of-0000", c.size(), ".safetensors"),
                          {{"exp_avg", m}, {"exp_avg_sq", v}},
                          {{"format", "grpo.adamw.shard.v1"},
                           {"step", std::to_string(whole.step)},
                           {"offset", std::to_string(offset)},
                           {"total", std::to_string(whole.exp_avg.size())}});
}

// A new sharded AdamW (buckets of `bucket` floats) loads its shard from `from` and saves it to
// `to` (every rank; returns once all have).
std::string Reshard(CausalLM& model, Collective& c, int64_t bucket, const std::string& from, const std::string& to) {
  auto zero = MakeZero(model, c, bucket);
  if (!zero.ok()) return std::string(zero.status().message());
  if (auto s = zero->LoadShard(from); !s.ok()) return std::string(s.message());
  std::filesystem::create_directories(to);
  if (auto s = zero->SaveShard(to); !s.ok()) return std::string(s.message());
  return c.Barrier().ok() ? "" : "barrier";
}

// Shards written by N ranks (their shard of every bucket) tile the flat vector and read back
// whole, with another rank count's layout, into a one-process AdamW, and into new sharded AdamWs:
// with the same buckets (the same bytes again), with other buckets, and from the earlier
// contiguous shard format.
std::string CheckShardCheckpoint(Collective& c, const std::string& dir) {
  auto model = Make("qwen2-nano", 3);
  const auto& specs = model->parameter_specs();
  auto zero = MakeZero(*model, c, 3000);
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
  // every element is in exactly one rank's runs, and the runs' values make up the whole state
  auto mine = ReadOptimizerRuns(dir, specs, zero->layout().own_runs());
  if (!mine.ok()) return std::string(mine.status().message());
  std::vector<float> placed(total, 0.0f), owners(total, 0.0f);
  int64_t at = 0;
  for (const FlatRun& r : zero->layout().own_runs()) {
    for (int64_t k = 0; k < r.count; ++k, ++at) placed[r.flat_offset + k] = mine->exp_avg[at], owners[r.flat_offset + k] += 1;
  }
  if (!c.AllReduceSum(absl::MakeSpan(placed)).ok() || !c.AllReduceSum(absl::MakeSpan(owners)).ok()) return "all_reduce";
  if (std::count(owners.begin(), owners.end(), 1.0f) != total) return "the ranks' runs do not tile the state";
  if (placed != whole->exp_avg) return "the shards do not add up to the whole state";
  bool nonzero = false;
  for (float x : whole->exp_avg_sq) nonzero |= x != 0;
  if (!nonzero) return "exp_avg_sq is all zero: nothing was trained";
  // another rank count's layout: 3 contiguous ranges, concatenated
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
  at = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].trainable) continue;
    const Tensor m = one->exp_avg(i);
    if (!std::equal(m.data<float>(), m.data<float>() + m.numel(), whole->exp_avg.begin() + at)) {
      return "one-process load of " + specs[i].name;
    }
    at += m.numel();
  }
  const std::string name = absl::StrCat("/optimizer-shard-0000", c.rank(), "-of-0000", c.size(), ".safetensors");
  // the same buckets: the same bytes
  if (auto e = Reshard(*model, c, 3000, dir, dir + "/same"); !e.empty()) return e;
  if (ReadFileToString(dir + "/same" + name) != ReadFileToString(dir + name)) return "reloaded shard differs";
  // other buckets: another layout of the same state
  if (auto e = Reshard(*model, c, 1000, dir, dir + "/other"); !e.empty()) return e;
  auto other = ReadOptimizerRange(dir + "/other", specs, 0, total);
  if (!other.ok()) return std::string(other.status().message());
  if (other->exp_avg != whole->exp_avg || other->exp_avg_sq != whole->exp_avg_sq) return "1000-float buckets reshard";
  // the earlier contiguous format, loaded into this layout: the same bytes as the shard saved
  std::filesystem::create_directories(dir + "/v1");
  if (auto s = WriteContiguousShard(c, *whole, dir + "/v1"); !s.ok()) return std::string(s.message());
  if (!c.Barrier().ok()) return "barrier";
  if (auto e = Reshard(*model, c, 3000, dir + "/v1", dir + "/from-v1"); !e.empty()) return e;
  if (ReadFileToString(dir + "/from-v1" + name) != ReadFileToString(dir + name)) return "a v1 shard loads other values";
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
  groups[2].samples[1].teacher_logits = {0.5f, -3.0f, 7.25f, 1e-3f};
  const std::string bytes = SerializeGroups(groups);
  auto back = ParseGroups(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  EXPECT_EQ(SerializeGroups(*back), bytes);
  EXPECT_EQ((*back)[1].samples[1].rollout_logprobs, groups[1].samples[1].rollout_logprobs);
  EXPECT_FALSE((*back)[0].samples[0].trained);
  EXPECT_EQ((*back)[0].samples[1].token_advantages, groups[0].samples[1].token_advantages);
  EXPECT_EQ((*back)[1].samples[0].loss_mask, groups[1].samples[0].loss_mask);
  EXPECT_EQ((*back)[2].samples[1].teacher_logits, groups[2].samples[1].teacher_logits);
  EXPECT_EQ(ParseGroups(bytes.substr(0, bytes.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace grpo
