// Properties of CausalLM that need no reference: packing sequences together equals running them
// alone, replaying the chosen routing reproduces the free run bit for bit, recomputation gives
// the same gradients bit for bit, checkpoints round-trip, and bad models fail naming the tensor.
#include "model/causal_lm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "model/kv_cache.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

std::unique_ptr<CausalLM> NanoModel(const std::string& family, uint64_t seed = 1) {
  auto config = PresetConfig(family + "-nano");
  EXPECT_TRUE(config.ok());
  // A larger init spreads the router scores so MoE choices are not near-ties.
  auto model = CausalLM::Create(*config, InitParameters(*config, seed, 0.1), BackendForTests());
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return std::move(model).value();
}

std::vector<std::vector<int32_t>> RandomSequences(int64_t vocab, std::vector<int> lengths, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> seqs;
  for (int len : lengths) {
    std::vector<int32_t> s(len);
    for (int32_t& t : s) t = tok(rng);
    seqs.push_back(s);
  }
  return seqs;
}

class FamilyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyTest, PackingEqualsRunningAlone) {
  auto model = NanoModel(GetParam());
  const auto seqs = RandomSequences(model->config().vocab_size, {9, 3, 14, 150}, 4);
  auto packed = model->Forward(TokenBatch::FromSequences(seqs), {.need_entropy = true});
  ASSERT_TRUE(packed.ok());
  size_t i = 0;
  for (const auto& s : seqs) {
    auto alone = model->Forward(TokenBatch::FromSequences({s}), {.need_entropy = true});
    ASSERT_TRUE(alone.ok());
    for (size_t j = 0; j < alone->logprobs.size(); ++j, ++i) {
      EXPECT_NEAR(packed->logprobs[i], alone->logprobs[j], 2e-6);
      EXPECT_NEAR(packed->entropy[i], alone->entropy[j], 2e-6);
    }
  }
  EXPECT_EQ(i, packed->logprobs.size());
}

// return_logits gives the logits the logprobs come from, and a model's divergence to its own
// logits is 0 in both directions (PyTorch parity of the divergence: causal_lm_parity_test).
TEST_P(FamilyTest, ReturnedLogitsGiveTheLogprobsAndTheDivergenceToThemselvesIsZero) {
  auto model = NanoModel(GetParam());
  const int64_t V = model->config().vocab_size;
  const auto seqs = RandomSequences(V, {9, 1, 14}, 6);
  const TokenBatch batch = TokenBatch::FromSequences(seqs);
  auto out = model->Forward(batch, {.return_logits = true});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->logits.size(), out->logprobs.size() * V);
  int64_t i = 0;
  for (const auto& seq : seqs) {
    for (size_t j = 0; j + 1 < seq.size(); ++j, ++i) {
      const float* z = out->logits.data() + i * V;
      const double mx = *std::max_element(z, z + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(z[v] - mx);
      EXPECT_NEAR(out->logprobs[i], z[seq[j + 1]] - mx - std::log(sum), 1e-5) << "target " << i;
    }
  }
  for (Divergence kind : {Divergence::kReverseKl, Divergence::kForwardKl}) {
    DivergenceTargets d{kind, {0, 2, 5, 20}, {}};
    std::vector<float> teacher;
    for (int64_t r : d.rows) teacher.insert(teacher.end(), out->logits.begin() + r * V, out->logits.begin() + (r + 1) * V);
    d.teacher_logits = teacher;
    auto self = model->Forward(batch, {.divergence = &d});
    ASSERT_TRUE(self.ok()) << self.status().ToString();
    ASSERT_EQ(self->divergence.size(), 4u);
    for (float x : self->divergence) EXPECT_NEAR(x, 0.0f, 1e-6);
  }
}

TEST_P(FamilyTest, PackedGradientsAreTheSumOfSeparateOnes) {
  auto model = NanoModel(GetParam());
  const auto seqs = RandomSequences(model->config().vocab_size, {6, 10}, 8);
  std::vector<Buffer> packed_d, separate_d;
  ASSERT_TRUE(model->Forward(TokenBatch::FromSequences(seqs), {.keep_activations = true}).ok());
  ASSERT_TRUE(model->Backward(std::vector<float>(5 + 9, 1.0f), &packed_d).ok());
  for (const auto& s : seqs) {
    ASSERT_TRUE(model->Forward(TokenBatch::FromSequences({s}), {.keep_activations = true}).ok());
    ASSERT_TRUE(model->Backward(std::vector<float>(s.size() - 1, 1.0f), &separate_d).ok());
  }
  const std::vector<Tensor> packed_grads = model->ReadGradients(packed_d);
  const std::vector<Tensor> separate_grads = model->ReadGradients(separate_d);
  for (size_t p = 0; p < packed_grads.size(); ++p) {
    double diff = 0, norm = 0;
    for (int64_t e = 0; e < packed_grads[p].numel(); ++e) {
      const double a = packed_grads[p].data<float>()[e], b = separate_grads[p].data<float>()[e];
      diff += (a - b) * (a - b);
      norm += b * b;
    }
    if (norm == 0) continue;  // e.g. an expert no token chose
    EXPECT_LE(std::sqrt(diff / norm), 1e-5) << model->parameter_specs()[p].name;
  }
}

TEST_P(FamilyTest, ReplayingTheChosenRoutingReproducesTheFreeRunExactly) {
  auto model = NanoModel(GetParam());
  if (model->config().num_experts == 0) GTEST_SKIP() << "dense";
  const auto batch = TokenBatch::FromSequences(RandomSequences(model->config().vocab_size, {11, 5}, 3));
  auto free_run = model->Forward(batch, {.need_entropy = true});
  ASSERT_TRUE(free_run.ok());
  ASSERT_EQ(free_run->routing.num_moe_layers, model->config().NumMoeLayers());
  ForwardOptions replay;
  replay.need_entropy = true;
  replay.forced_routing = &free_run->routing;
  auto replayed = model->Forward(batch, replay);
  ASSERT_TRUE(replayed.ok());
  EXPECT_EQ(replayed->logprobs, free_run->logprobs);
  EXPECT_EQ(replayed->entropy, free_run->entropy);
  EXPECT_EQ(replayed->routing.experts, free_run->routing.experts);
  EXPECT_EQ(replayed->routing.weights, free_run->routing.weights);
}

TEST_P(FamilyTest, RecomputationGivesTheSameGradientsBitForBit) {
  auto model = NanoModel(GetParam());
  const auto batch = TokenBatch::FromSequences(RandomSequences(model->config().vocab_size, {8, 6}, 12));
  const std::vector<float> w(batch.num_targets(), 0.5f);
  std::vector<Buffer> saved_d, recomputed_d;
  ASSERT_TRUE(model->Forward(batch, {.keep_activations = true}).ok());
  ASSERT_TRUE(model->Backward(w, &saved_d).ok());
  ASSERT_TRUE(model->Forward(batch, {.keep_activations = true, .recompute = true}).ok());
  ASSERT_TRUE(model->Backward(w, &recomputed_d).ok());
  const std::vector<Tensor> saved = model->ReadGradients(saved_d);
  const std::vector<Tensor> recomputed = model->ReadGradients(recomputed_d);
  for (size_t p = 0; p < saved.size(); ++p) {
    ASSERT_EQ(std::memcmp(saved[p].raw_data(), recomputed[p].raw_data(), saved[p].nbytes()), 0)
        << model->parameter_specs()[p].name;
  }
}

// Backward announces every trainable parameter once, group by group in gradient_ready_order()
// (the head, each layer from the last, the embedding: more than one group), and a gradient read
// when it is announced already holds its final value, bit for bit (a tied embedding announced
// before the embedding's own backward, or a layer before its backward, would differ).
TEST_P(FamilyTest, GradientsAreFinalWhenAnnounced) {
  auto model = NanoModel(GetParam());
  const auto batch = TokenBatch::FromSequences(RandomSequences(model->config().vocab_size, {7, 12}, 21));
  const std::vector<float> w(batch.num_targets(), 0.25f);
  std::vector<Buffer> grads = model->NewGradients();
  std::vector<std::vector<size_t>> announced;
  std::vector<std::vector<float>> at_announcement(model->num_parameters());
  auto on_ready = [&](std::span<const size_t> params) {
    announced.emplace_back(params.begin(), params.end());
    for (size_t p : params) {
      at_announcement[p].resize(grads[p].numel());
      model->backend().CopyDeviceToHost(grads[p].raw(), at_announcement[p].data(), grads[p].bytes());
    }
    model->backend().Synchronize();
  };
  ASSERT_TRUE(model->Forward(batch, {.keep_activations = true}).ok());
  ASSERT_TRUE(model->Backward(w, &grads, on_ready).ok());
  EXPECT_EQ(announced, model->gradient_ready_order());
  EXPECT_GE(announced.size(), static_cast<size_t>(model->config().num_hidden_layers + 1));
  const std::vector<Tensor> final_grads = model->ReadGradients(grads);
  for (size_t p = 0; p < model->num_parameters(); ++p) {
    const std::string& name = model->parameter_specs()[p].name;
    const int times = std::count_if(announced.begin(), announced.end(), [&](const std::vector<size_t>& g) {
      return std::count(g.begin(), g.end(), p) > 0;
    });
    ASSERT_EQ(times, model->parameter_specs()[p].trainable ? 1 : 0) << name;
    if (times == 0) continue;
    ASSERT_EQ(std::memcmp(at_announcement[p].data(), final_grads[p].raw_data(), final_grads[p].nbytes()), 0) << name;
  }
  // the first group is the head's, the last the embedding's
  const auto& specs = model->parameter_specs();
  EXPECT_EQ(specs[announced.front().back()].name.rfind("model.layers.", 0), std::string::npos);
  EXPECT_NE(std::find_if(announced.back().begin(), announced.back().end(),
                         [&](size_t p) { return specs[p].name == "model.embed_tokens.weight"; }),
            announced.back().end());
}

// Training attention saves one log-sum-exp per row and head, not the [L, L] probabilities: the
// backend memory high-water mark of a training forward + backward grows linearly with the
// sequence length (one layer and a tiny width, so attention would dominate were it quadratic:
// at 4096 tokens the probabilities alone would be num_attention_heads x 64 MiB).
TEST_P(FamilyTest, TrainingMemoryGrowsLinearlyWithTheSequenceLength) {
  ModelConfig c = *PresetConfig(GetParam() + "-nano");
  c.num_hidden_layers = 1;
  c.first_k_dense_replace = 0;
  c.max_position_embeddings = 4096;
  auto model = std::move(CausalLM::Create(c, InitParameters(c, 1), CpuBackend()).value());
  std::vector<int64_t> peak;
  for (int len : {1024, 2048, 4096}) {
    const auto batch = TokenBatch::FromSequences(RandomSequences(c.vocab_size, {len}, 5));
    const std::vector<float> w(batch.num_targets(), 1.0f);
    std::vector<Buffer> grads;
    const int64_t before = CpuBackendMemoryStats().live_bytes;
    ResetCpuBackendPeak();
    ASSERT_TRUE(model->Forward(batch, {.keep_activations = true}).ok());
    ASSERT_TRUE(model->Backward(w, &grads).ok());
    model->ReleaseActivations();
    peak.push_back(CpuBackendMemoryStats().peak_bytes - before);
  }
  const double r1 = static_cast<double>(peak[1]) / peak[0], r2 = static_cast<double>(peak[2]) / peak[1];
  EXPECT_GT(r1, 1.5) << peak[0] << " " << peak[1];
  EXPECT_LT(r1, 2.5) << peak[0] << " " << peak[1];
  EXPECT_GT(r2, 1.5) << peak[1] << " " << peak[2];
  EXPECT_LT(r2, 2.5) << peak[1] << " " << peak[2];
  // And in absolute terms: under a quarter of what the probabilities would take at 4096 tokens.
  EXPECT_LT(peak[2], c.num_attention_heads * int64_t{4096} * 4096 * 4 / 4);
}

TEST_P(FamilyTest, SaveAndLoadRoundTrip) {
  auto model = NanoModel(GetParam());
  const std::string dir = testing::MakeTempDir("roundtrip");
  // Sharded on purpose: small shards force an index file.
  const std::vector<Parameter> saved = model->ReadParameters();
  ASSERT_TRUE(SaveModel(model->config(), saved, dir, 64 * 1024).ok());
  auto loaded = CausalLM::Load(dir, BackendForTests());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const std::vector<Parameter> read = (*loaded)->ReadParameters();
  ASSERT_EQ(read.size(), saved.size());
  for (size_t p = 0; p < saved.size(); ++p) {
    const Tensor& a = saved[p].value;
    const Tensor& b = read[p].value;
    ASSERT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << model->parameter_specs()[p].name;
  }
}

// Log-softmax of one row of logits at `target`.
double LogProb(const float* logits, int64_t vocab, int32_t target) {
  double mx = logits[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max<double>(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] - mx);
  return logits[target] - mx - std::log(sum);
}

TEST_P(FamilyTest, IncrementalDecodingOverTheKvCacheEqualsTheFullForward) {
  auto model = NanoModel(GetParam());
  const ModelConfig& c = model->config();
  const auto seqs = RandomSequences(c.vocab_size, {10, 7, 12}, 21);
  auto full = model->Forward(TokenBatch::FromSequences(seqs), {});
  ASSERT_TRUE(full.ok());
  // Reference logprobs and routing per sequence and position.
  std::vector<std::vector<float>> want(seqs.size());
  for (size_t s = 0, i = 0; s < seqs.size(); ++s)
    for (size_t j = 0; j + 1 < seqs[s].size(); ++j) want[s].push_back(full->logprobs[i++]);

  DenseKvCache cache(c, 3, 16, model->backend());
  // Sequences advance with different chunk sizes in the same steps: prefill chunks of 4, 1 and
  // 3 tokens, then one token per step. Cache sequence ids are permuted on purpose.
  const std::vector<int64_t> cache_seq = {2, 0, 1};
  const std::vector<int64_t> first_chunk = {4, 1, 3};
  std::vector<int64_t> done(3, 0);
  int64_t compared = 0;
  while (true) {
    StepInput in;
    std::vector<size_t> members;
    for (size_t s = 0; s < seqs.size(); ++s) {
      const int64_t len = static_cast<int64_t>(seqs[s].size());
      if (done[s] >= len) continue;
      const int64_t n = done[s] == 0 ? first_chunk[s] : 1;
      in.tokens.insert(in.tokens.end(), seqs[s].begin() + done[s], seqs[s].begin() + done[s] + n);
      in.offsets.push_back(static_cast<int64_t>(in.tokens.size()));
      in.past.push_back(done[s]);
      in.cache_seq.push_back(cache_seq[s]);
      members.push_back(s);
    }
    if (members.empty()) break;
    auto step = model->ForwardStep(in, cache);
    ASSERT_TRUE(step.ok()) << step.status().ToString();
    const std::vector<float> logits = DownloadF32(model->backend(), step->logits);
    for (size_t m = 0; m < members.size(); ++m) {
      const size_t s = members[m];
      const int64_t n = in.offsets[m + 1] - in.offsets[m];
      done[s] += n;
      if (done[s] < static_cast<int64_t>(seqs[s].size())) {
        const double lp = LogProb(logits.data() + m * c.vocab_size, c.vocab_size, seqs[s][done[s]]);
        EXPECT_NEAR(lp, want[s][done[s] - 1], 2e-5) << "sequence " << s << " position " << done[s];
        ++compared;
      }
    }
  }
  // Every target but the n-1 inside each first chunk of n tokens.
  EXPECT_EQ(compared, (9 + 6 + 11) - (3 + 0 + 2));
}

// Sequences longer than the attention kernels' row blocks: the blocked causal attention of
// Forward against the cached-row attention of ForwardStep (a separate implementation).
TEST_P(FamilyTest, LongSequenceForwardEqualsChunkedPrefill) {
  auto model = NanoModel(GetParam());
  const ModelConfig& c = model->config();
  const auto seq = RandomSequences(c.vocab_size, {200}, 31)[0];
  auto full = model->Forward(TokenBatch::FromSequences({seq}), {});
  ASSERT_TRUE(full.ok());
  DenseKvCache cache(c, 1, 200, model->backend());
  for (int64_t done = 0; done < 150; done += 50) {
    StepInput in;
    in.tokens.assign(seq.begin() + done, seq.begin() + done + 50);
    in.offsets = {0, 50};
    in.past = {done};
    in.cache_seq = {0};
    auto step = model->ForwardStep(in, cache);
    ASSERT_TRUE(step.ok()) << step.status().ToString();
    const int64_t next = done + 50;
    EXPECT_NEAR(LogProb(DownloadF32(model->backend(), step->logits).data(), c.vocab_size, seq[next]), full->logprobs[next - 1], 2e-5)
        << "position " << next;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest,
                         ::testing::Values("llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3"),
                         [](const auto& info) { return info.param; });

TEST(CausalLM, Fp8CheckpointLoadsTheDequantizedWeights) {
  auto model = NanoModel("deepseek_v3");
  ModelConfig fp8_config = model->config();
  fp8_config.fp8_checkpoint = true;
  const std::string dir = testing::MakeTempDir("fp8");
  ASSERT_TRUE(SaveModel(fp8_config, model->ReadParameters(), dir).ok());
  auto files = SafetensorsDir::Open(dir);
  ASSERT_TRUE(files.ok());
  auto q = files->Info("model.layers.0.self_attn.kv_b_proj.weight");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->dtype, DType::kF8E4M3);
  EXPECT_TRUE(files->Contains("model.layers.0.self_attn.kv_b_proj.weight_scale_inv"));
  EXPECT_EQ(files->Info("model.embed_tokens.weight")->dtype, DType::kF32);
  auto loaded = CausalLM::Load(dir, BackendForTests());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE((*loaded)->config().fp8_checkpoint);
  const auto a = model->ReadParameters();
  const auto b = (*loaded)->ReadParameters();
  for (size_t p = 0; p < a.size(); ++p) {
    for (int64_t e = 0; e < a[p].value.numel(); ++e) {
      const float x = a[p].value.data<float>()[e], y = b[p].value.data<float>()[e];
      // e4m3 keeps 3 mantissa bits: relative error below 2^-4 (absolute below the block's
      // subnormal step for tiny values).
      ASSERT_LE(std::fabs(x - y), std::fabs(x) * 0.0625f + 1e-3f) << a[p].spec.name;
    }
  }
}

// UpdateParameters gives the model another model's weights: afterwards it computes exactly what
// a model created with them does. A bad update is refused whole.
TEST(CausalLM, UpdateParametersTakesAnotherModelsWeights) {
  for (const WeightFormat format : {WeightFormat::kF32, WeightFormat::kFp8Block}) {
    const auto config = PresetConfig("qwen3_moe-nano");
    ASSERT_TRUE(config.ok());
    auto model = CausalLM::Create(*config, InitParameters(*config, 1, 0.1), BackendForTests(), {.serve_format = format});
    auto want = CausalLM::Create(*config, InitParameters(*config, 2, 0.1), BackendForTests(), {.serve_format = format});
    ASSERT_TRUE(model.ok() && want.ok());
    const TokenBatch batch = TokenBatch::FromSequences(RandomSequences(config->vocab_size, {12, 5}, 3));
    auto before = (*model)->Forward(batch, {});
    auto target = (*want)->Forward(batch, {});
    ASSERT_TRUE(before.ok() && target.ok());
    ASSERT_NE(before->logprobs, target->logprobs);

    std::vector<std::pair<int64_t, Parameter>> updates;
    for (size_t i = 0; i < (*want)->num_parameters(); ++i) updates.emplace_back(i, (*want)->ReadParameter(i));
    // One bad entry (a shape that does not fit) refuses the whole update.
    auto bad = updates;
    bad.back().second.value = Tensor::Zeros(DType::kF32, {3});
    const absl::Status refused = (*model)->UpdateParameters(std::move(bad));
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(refused.message()).find("is F32 [3], the model holds"), std::string::npos) << refused;
    auto unchanged = (*model)->Forward(batch, {});
    ASSERT_TRUE(unchanged.ok());
    EXPECT_EQ(unchanged->logprobs, before->logprobs);

    ASSERT_TRUE((*model)->UpdateParameters(std::move(updates)).ok());
    auto after = (*model)->Forward(batch, {});
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(after->logprobs, target->logprobs);  // bit for bit
  }
}

TEST(CausalLM, UpdateParametersNamesWhatIsWrong) {
  const auto config = PresetConfig("llama-nano");
  ASSERT_TRUE(config.ok());
  auto model = CausalLM::Create(*config, InitParameters(*config, 1, 0.1), BackendForTests());
  ASSERT_TRUE(model.ok());
  const Parameter first = (*model)->ReadParameter(0);
  auto update = [&](int64_t index, Parameter p) {
    std::vector<std::pair<int64_t, Parameter>> u;
    u.emplace_back(index, std::move(p));
    const absl::Status s = (*model)->UpdateParameters(std::move(u));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  const int64_t n = static_cast<int64_t>((*model)->num_parameters());
  EXPECT_NE(update(n, {first.spec, first.value.Clone(), {}}).find("outside [0, " + std::to_string(n) + ")"),
            std::string::npos);
  EXPECT_NE(update(1, {first.spec, first.value.Clone(), {}}).find("the model's parameter 1 is"), std::string::npos);
  EXPECT_NE(update(0, {first.spec, *first.value.CastTo(DType::kBF16), {}}).find("is BF16"), std::string::npos);
}

// Device values: a model made from f32 device buffers converted on the device (QuantizeOnDevice,
// CreateOnDevice) holds exactly what Create converts on the host, and UpdateParameterBuffers
// swaps in another model's values (a wrong dtype refuses the whole update, naming it).
TEST(CausalLM, DeviceValuesMatchTheHostConversion) {
  for (const WeightFormat format : {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kFp8Block}) {
    SCOPED_TRACE(WeightFormatName(format));
    Backend& be = BackendForTests();
    const auto config = PresetConfig("deepseek_v3-nano");
    ASSERT_TRUE(config.ok());
    auto host = CausalLM::Create(*config, InitParameters(*config, 1, 0.1), be, {.serve_format = format});
    auto masters = CausalLM::Create(*config, InitParameters(*config, 1, 0.1), be);
    auto next = CausalLM::Create(*config, InitParameters(*config, 2, 0.1), be);
    ASSERT_TRUE(host.ok() && masters.ok() && next.ok());
    auto held = [&](const CausalLM& from) {
      std::vector<DeviceParameter> out;
      for (size_t i = 0; i < from.num_parameters(); ++i) {
        const Shape& shape = from.parameter_specs()[i].shape;
        const int64_t rows = shape.size() == 2 ? shape[0] : 1;
        out.push_back(QuantizeOnDevice(be, from.parameter_buffer(i), rows, NumElements(shape) / rows,
                                       (*host)->parameter_dtype(i), nullptr));
      }
      return out;
    };
    auto device = CausalLM::CreateOnDevice(*config, held(**masters), be);
    ASSERT_TRUE(device.ok()) << device.status();
    EXPECT_EQ((*device)->serves_quantized(), format != WeightFormat::kF32);
    const std::vector<Parameter> a = (*host)->ReadParameters(), b = (*device)->ReadParameters();
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].value.dtype(), b[i].value.dtype()) << a[i].spec.name;
      EXPECT_EQ(0, std::memcmp(a[i].value.raw_data(), b[i].value.raw_data(), a[i].value.nbytes())) << a[i].spec.name;
      ASSERT_EQ(a[i].scale_inv.defined(), b[i].scale_inv.defined()) << a[i].spec.name;
      if (a[i].scale_inv.defined()) {
        ASSERT_EQ(a[i].scale_inv.shape(), b[i].scale_inv.shape()) << a[i].spec.name;
        EXPECT_EQ(0, std::memcmp(a[i].scale_inv.raw_data(), b[i].scale_inv.raw_data(), a[i].scale_inv.nbytes()));
      }
    }
    const TokenBatch batch = TokenBatch::FromSequences(RandomSequences(config->vocab_size, {9, 4}, 3));
    auto x = (*host)->Forward(batch, {});
    auto y = (*device)->Forward(batch, {});
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->logprobs, y->logprobs);

    std::vector<DeviceParameter> values = held(**next);
    std::vector<std::pair<int64_t, DeviceParameter>> bad;
    bad.emplace_back(0, DeviceParameter{Buffer(&be, 3, DType::kF32), Buffer()});
    bad.emplace_back(1, std::move(values[1]));
    const absl::Status refused = (*device)->UpdateParameterBuffers(std::move(bad));
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(refused.message()).find("F32 of 3 elements"), std::string::npos) << refused;
    auto unchanged = (*device)->Forward(batch, {});
    ASSERT_TRUE(unchanged.ok());
    EXPECT_EQ(unchanged->logprobs, y->logprobs);

    values = held(**next);
    std::vector<std::pair<int64_t, DeviceParameter>> updates;
    for (size_t i = 0; i < values.size(); ++i) updates.emplace_back(i, std::move(values[i]));
    ASSERT_TRUE((*device)->UpdateParameterBuffers(std::move(updates)).ok());
    auto want = CausalLM::Create(*config, InitParameters(*config, 2, 0.1), be, {.serve_format = format});
    ASSERT_TRUE(want.ok());
    auto after = (*device)->Forward(batch, {});
    auto target = (*want)->Forward(batch, {});
    ASSERT_TRUE(after.ok() && target.ok());
    EXPECT_EQ(after->logprobs, target->logprobs);  // bit for bit
    EXPECT_NE(after->logprobs, y->logprobs);
  }
}

TEST(CausalLM, ErrorsNameWhatIsWrong) {
  auto model = NanoModel("qwen3");
  auto bad_token = model->Forward(TokenBatch::FromSequences({{1, 2, 9999}}), {});
  ASSERT_FALSE(bad_token.ok());
  EXPECT_NE(bad_token.status().message().find("9999"), std::string::npos);
  std::vector<Buffer> grads;
  EXPECT_EQ(model->Backward({}, &grads).code(), absl::StatusCode::kFailedPrecondition);

  auto moe = NanoModel("qwen3_moe");
  Routing wrong;
  wrong.num_moe_layers = 1;
  ForwardOptions opts;
  opts.forced_routing = &wrong;
  auto forced = moe->Forward(TokenBatch::FromSequences({{1, 2, 3}}), opts);
  ASSERT_FALSE(forced.ok());
  EXPECT_NE(forced.status().message().find("forced routing"), std::string::npos);
  // The cached path checks a forced routing the same way, expert ids included.
  Routing bad_expert;
  bad_expert.num_moe_layers = moe->config().NumMoeLayers();
  bad_expert.num_tokens = 2;
  bad_expert.top_k = moe->config().num_experts_per_tok;
  bad_expert.experts.assign(bad_expert.num_moe_layers * 2 * bad_expert.top_k, 999);
  DenseKvCache cache(moe->config(), 1, 4, moe->backend());
  auto step = moe->ForwardStep({.tokens = {1, 2}, .offsets = {0, 2}, .past = {0}, .cache_seq = {0}},
                               cache, &bad_expert);
  ASSERT_FALSE(step.ok());
  EXPECT_NE(step.status().message().find("names expert 999"), std::string::npos) << step.status().message();

  // A checkpoint missing one tensor, and one with a misshaped tensor.
  const std::string dir = testing::MakeTempDir("broken");
  std::vector<Parameter> params = model->ReadParameters();
  ASSERT_TRUE(SaveModel(model->config(), params, dir).ok());
  NamedTensors tensors;
  for (const Parameter& p : params) {
    if (p.spec.name != "model.layers.1.self_attn.k_norm.weight") tensors.emplace_back(p.spec.name, p.value);
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  auto missing = CausalLM::Load(dir, BackendForTests());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing tensor 'model.layers.1.self_attn.k_norm.weight'"),
            std::string::npos)
      << missing.status().message();
  tensors.emplace_back("model.layers.1.self_attn.k_norm.weight", Tensor::Zeros(DType::kF32, {3}));
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  auto misshaped = CausalLM::Load(dir, BackendForTests());
  ASSERT_FALSE(misshaped.ok());
  EXPECT_NE(misshaped.status().message().find("has shape [3], expected [16]"), std::string::npos)
      << misshaped.status().message();
  tensors.back().second = params[0].value;  // wrong name for this tensor is fine; add an unknown one
  tensors.back().first = "model.layers.1.self_attn.k_norm.weight";
  tensors.back().second = Tensor::Zeros(DType::kF32, {16});
  tensors.emplace_back("model.layers.0.mystery.weight", Tensor::Zeros(DType::kF32, {2}));
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  auto unknown = CausalLM::Load(dir, BackendForTests());
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unexpected tensor 'model.layers.0.mystery.weight'"),
            std::string::npos)
      << unknown.status().message();

  FILE* f = std::fopen((dir + "/config.json").c_str(), "w");
  std::fputs("{\"model_type\": \"gpt_neox\", \"vocab_size\": 10}", f);
  std::fclose(f);
  auto family = CausalLM::Load(dir, BackendForTests());
  ASSERT_FALSE(family.ok());
  EXPECT_NE(family.status().message().find("'gpt_neox' is not supported"), std::string::npos);
}

// The host<->device traffic of one decode step (three sequences, one new token each, sampled)
// of model `c`, after a prefill.
TransferStats DecodeStepTransfers(const ModelConfig& c) {
  auto model = CausalLM::Create(c, InitParameters(c, 3, 0.1), BackendForTests());
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return {};
  Backend& be = (*model)->backend();
  DenseKvCache cache(c, 3, 16, be);
  StepInput prefill{.tokens = {1, 2, 3, 4, 5, 6}, .offsets = {0, 2, 4, 6}, .past = {0, 0, 0},
                    .cache_seq = {0, 1, 2}};
  EXPECT_TRUE((*model)->ForwardStep(prefill, cache).ok());
  be.Synchronize();
  be.ResetTransferStats();
  StepInput step{.tokens = {7, 8, 9}, .offsets = {0, 1, 2, 3}, .past = {2, 2, 2}, .cache_seq = {0, 1, 2}};
  auto out = (*model)->ForwardStep(step, cache);
  EXPECT_TRUE(out.ok());
  if (!out.ok()) return {};
  const std::vector<SamplingRow> rows = {{.temperature = 0.0, .row = 0},
                                         {.temperature = 1.0, .uniform = 0.5, .row = 1},
                                         {.temperature = 0.7, .top_k = 4, .uniform = 0.25, .row = 2}};
  const SampledTokens sampled = (*model)->SampleNext(*out, rows);
  EXPECT_EQ(sampled.tokens.size(), 3u);
  return be.transfer_stats();
}

TEST(CausalLM, DivergenceRowsAndWeightsAreChecked) {
  auto model = NanoModel("qwen3");
  const int64_t V = model->config().vocab_size;
  const TokenBatch batch = TokenBatch::FromSequences(RandomSequences(V, {5, 4}, 2));  // 7 targets
  const std::vector<float> two_rows(2 * V, 0.5f);
  auto forward = [&](std::vector<int64_t> rows, size_t logits) {
    DivergenceTargets d{Divergence::kReverseKl, std::move(rows), std::span<const float>(two_rows).first(logits)};
    return model->Forward(batch, {.divergence = &d}).status();
  };
  EXPECT_TRUE(forward({1, 6}, 2 * V).ok());
  EXPECT_NE(forward({3, 3}, 2 * V).message().find("strictly increasing"), std::string::npos);
  EXPECT_NE(forward({4, 2}, 2 * V).message().find("strictly increasing"), std::string::npos);
  EXPECT_NE(forward({-1, 2}, 2 * V).message().find("not a target"), std::string::npos);
  EXPECT_NE(forward({1, 7}, 2 * V).message().find("not a target"), std::string::npos);
  EXPECT_NE(forward({1, 2}, V).message().find("teacher logits for 2 rows"), std::string::npos);

  DivergenceTargets d{Divergence::kForwardKl, {1, 6}, two_rows};
  ASSERT_TRUE(model->Forward(batch, {.keep_activations = true, .divergence = &d}).ok());
  std::vector<Buffer> grads;
  const std::vector<float> weights(7, 0.0f), one(1, 1.0f);
  const absl::Status st = model->Backward(weights, one, &grads);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("1 divergence weights for 2 divergence rows"), std::string::npos) << st;
  model->ReleaseActivations();
}

// A decode step moves ids in and ids + logprobs out: O(batch) bytes, the same for a model 8x
// wider (nothing of model size crosses: logits stay on the device, the backend samples), and
// for MoE models the same with 4x the experts and 2x the MoE layers (the routing and the expert
// permutation stay on the device).
TEST(CausalLM, DecodeStepTransfersDoNotGrowWithTheModel) {
  // In: ids, positions, last-row indices and the block tables (one block per sequence here:
  // 3 x 4 ints); out: ids, logprobs, raw logprobs.
  constexpr int64_t kIn = 3 * 4 * 4, kOut = 3 * 3 * 4;
  for (int64_t scale : {1, 8}) {
    ModelConfig c = *PresetConfig("qwen2-nano");
    c.hidden_size *= scale;
    c.intermediate_size *= scale;
    c.head_dim *= scale;
    const TransferStats st = DecodeStepTransfers(c);
    EXPECT_EQ(st.host_to_device_bytes, kIn) << "qwen2 x" << scale;
    EXPECT_EQ(st.device_to_host_bytes, kOut) << "qwen2 x" << scale;
  }
  for (const char* preset : {"qwen3_moe-nano", "deepseek_v3-nano"}) {
    for (int64_t scale : {1, 2}) {
      ModelConfig c = *PresetConfig(preset);
      c.num_experts *= 2 * scale;  // 2x, then 4x
      c.num_hidden_layers *= scale;
      ASSERT_GT(c.NumMoeLayers(), 0);
      const TransferStats st = DecodeStepTransfers(c);
      EXPECT_EQ(st.host_to_device_bytes, kIn) << preset << " x" << scale;
      EXPECT_EQ(st.device_to_host_bytes, kOut) << preset << " x" << scale;
    }
  }
}

// An MoE decode step downloads its routing only when asked (StepInput::return_routing): then
// each MoE layer's experts and combine weights of the new tokens come back; otherwise nothing
// of the routing does.
TEST(CausalLM, MoeDecodeStepDownloadsRoutingOnlyWhenAsked) {
  const ModelConfig c = *PresetConfig("qwen3_moe-nano");
  auto model = CausalLM::Create(c, InitParameters(c, 3, 0.1), BackendForTests());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Backend& be = (*model)->backend();
  const int64_t moe = c.NumMoeLayers(), E = c.num_experts, k = c.num_experts_per_tok;
  ASSERT_GT(moe, 0);
  DenseKvCache cache(c, 2, 16, be);
  StepInput prefill{.tokens = {1, 2, 3, 4}, .offsets = {0, 2, 4}, .past = {0, 0}, .cache_seq = {0, 1}};
  ASSERT_TRUE((*model)->ForwardStep(prefill, cache).ok());
  for (bool asked : {false, true}) {
    be.Synchronize();
    be.ResetTransferStats();
    StepInput step{.tokens = {5, 6}, .offsets = {0, 1, 2}, .past = {2, 2}, .cache_seq = {0, 1},
                   .return_routing = asked};
    auto out = (*model)->ForwardStep(step, cache);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    const int64_t routing_bytes = asked ? moe * 2 * k * (4 + 4) : 0;
    EXPECT_EQ(be.transfer_stats().device_to_host_bytes, routing_bytes) << asked;
    EXPECT_EQ(out->routing.experts.size(), asked ? static_cast<size_t>(moe * 2 * k) : 0u);
    if (asked) {
      for (int32_t e : out->routing.experts) EXPECT_TRUE(e >= 0 && e < E) << e;
    }
  }
}

TEST(Presets, RealArchitecturesHaveTheirKnownSizes) {
  // Parameter counts of the published models (embeddings included), within 1%.
  const std::vector<std::pair<std::string, double>> known = {
      {"qwen2.5-0.5b", 0.494e9}, {"qwen2.5-7b", 7.62e9}, {"qwen3-0.6b", 0.596e9},
      {"qwen3-30b-a3b", 30.5e9}, {"llama3.1-8b", 8.03e9}, {"deepseek-v3", 671e9},
  };
  for (const auto& [name, count] : known) {
    auto c = PresetConfig(name);
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_NEAR(static_cast<double>(c->NumParameters()), count, count * 0.01) << name;
  }
  EXPECT_FALSE(PresetConfig("gpt5").ok());
}

}  // namespace
}  // namespace grpo
