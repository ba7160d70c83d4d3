// Parity of CausalLM with the PyTorch reference (model/testdata/torch_reference.py, autograd
// gradients, float64) on tiny random models of every family: per-token logprobs within 1e-5,
// entropies within 1e-5, every gradient within 1e-4 relative (||ours - ref|| / ||ref||), routing
// decisions identical; bf16 and fp8 checkpoints against the reference on the dequantized weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "model/causal_lm.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

using nlohmann::json;

struct Reference {
  std::vector<std::vector<float>> logprobs, entropy;
  json routing, routing_weights;
  double loss = 0;
  SafetensorsFile grads_file;
  std::vector<std::vector<float>> divergence;  // when the input asked for one
};

absl::StatusOr<Reference> RunReference(const std::string& model_dir, const json& input) {
  const std::string dir = testing::MakeTempDir("ref");
  const std::string in_path = dir + "/input.json";
  const std::string text = input.dump();
  GRPO_RETURN_IF_ERROR(testing::WriteBinaryFile(in_path, text.data(), text.size()));
  auto run = testing::RunReferenceScript("model/testdata/torch_reference.py", {model_dir, in_path, dir});
  if (!run.ok()) return run.status();
  GRPO_ASSIGN_OR_RETURN(std::string result_text, testing::ReadBinaryFile(dir + "/result.json"));
  json result = json::parse(result_text);
  GRPO_ASSIGN_OR_RETURN(SafetensorsFile grads, SafetensorsFile::Open(dir + "/grads.safetensors"));
  Reference ref{result.at("logprobs").get<std::vector<std::vector<float>>>(),
                result.at("entropy").get<std::vector<std::vector<float>>>(),
                result.value("routing", json::array()),
                result.value("routing_weights", json::array()),
                result.at("loss").get<double>(),
                std::move(grads)};
  if (result.contains("divergence")) {
    ref.divergence = result.at("divergence").get<std::vector<std::vector<float>>>();
  }
  return ref;
}

std::vector<std::vector<int32_t>> TestSequences(int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> seqs;
  for (int len : {7, 12, 1, 4}) {
    std::vector<int32_t> s(len);
    for (int32_t& t : s) t = tok(rng);
    seqs.push_back(s);
  }
  return seqs;
}

std::vector<std::vector<float>> TestWeights(const std::vector<std::vector<int32_t>>& seqs, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> w(-1.0f, 1.5f);
  std::vector<std::vector<float>> out;
  for (const auto& s : seqs) {
    std::vector<float> ws(std::max<size_t>(s.size(), 1) - 1);
    for (float& x : ws) x = w(rng);
    out.push_back(ws);
  }
  return out;
}

// Routing of sequence `s` in the reference's layout [moe_layer][position][k] (sorted ids),
// from ours (choice order, packed positions).
json OurRouting(const Routing& r, const TokenBatch& batch, int64_t s, bool weights_too, json* weights) {
  json layers = json::array(), wlayers = json::array();
  for (int64_t l = 0; l < r.num_moe_layers; ++l) {
    json positions = json::array(), wpositions = json::array();
    for (int64_t t = batch.offsets[s]; t < batch.offsets[s + 1]; ++t) {
      std::vector<std::pair<int32_t, float>> chosen;
      for (int64_t j = 0; j < r.top_k; ++j) {
        const int64_t i = (l * r.num_tokens + t) * r.top_k + j;
        chosen.emplace_back(r.experts[i], r.weights[i]);
      }
      std::sort(chosen.begin(), chosen.end());
      json ids = json::array(), ws = json::array();
      for (auto& [e, w] : chosen) {
        ids.push_back(e);
        ws.push_back(w);
      }
      positions.push_back(ids);
      wpositions.push_back(ws);
    }
    layers.push_back(positions);
    wlayers.push_back(wpositions);
  }
  if (weights_too) *weights = wlayers;
  return layers;
}

// The per-sequence weights end to end, as Backward takes them.
std::vector<float> Flat(const std::vector<std::vector<float>>& per_sequence) {
  std::vector<float> flat;
  for (const auto& w : per_sequence) flat.insert(flat.end(), w.begin(), w.end());
  return flat;
}

// Every trainable parameter's gradient within 1e-4 relative of the reference's; untrainable ones
// have none there.
void ExpectGradientsMatch(const CausalLM& model, const std::vector<Buffer>& grads_d, const Reference& ref) {
  const std::vector<Tensor> grads = model.ReadGradients(grads_d);
  const auto& specs = model.parameter_specs();
  int compared = 0;
  for (size_t p = 0; p < specs.size(); ++p) {
    const std::string& name = specs[p].name;
    if (!specs[p].trainable) {
      EXPECT_FALSE(ref.grads_file.Contains(name)) << name << " must not get a gradient";
      continue;
    }
    auto want = ref.grads_file.Get(name);
    ASSERT_TRUE(want.ok()) << "reference has no gradient for " << name;
    const Tensor ref_g = want->ToF32();
    ASSERT_EQ(ref_g.numel(), grads[p].numel()) << name;
    double diff = 0, norm = 0;
    for (int64_t e = 0; e < ref_g.numel(); ++e) {
      const double a = grads[p].data<float>()[e], b = ref_g.data<float>()[e];
      diff += (a - b) * (a - b);
      norm += b * b;
    }
    ASSERT_GT(norm, 0.0) << name << ": reference gradient is zero; the test would prove nothing";
    EXPECT_LE(std::sqrt(diff / norm), 1e-4) << "gradient of " << name;
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(ref.grads_file.num_tensors()));
}

class ParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ParityTest, LogprobsEntropyRoutingAndGradientsMatchPyTorch) {
  GRPO_REQUIRE_TORCH();
  const std::string model_dir = testing::TinyModelsDir() + "/" + GetParam();
  auto model = CausalLM::Load(model_dir, BackendForTests());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelConfig& c = (*model)->config();
  const auto seqs = TestSequences(c.vocab_size, 17);
  const auto weights = TestWeights(seqs, 23);
  auto ref = RunReference(model_dir, {{"sequences", seqs}, {"weights", weights}});
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();

  const TokenBatch batch = TokenBatch::FromSequences(seqs);
  ForwardOptions opts;
  opts.need_entropy = true;
  opts.keep_activations = true;
  auto out = (*model)->Forward(batch, opts);
  ASSERT_TRUE(out.ok()) << out.status().ToString();

  // Logprobs and entropies, sequence by sequence.
  size_t i = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    ASSERT_EQ(ref->logprobs[s].size(), seqs[s].size() - 1);
    for (size_t j = 0; j < ref->logprobs[s].size(); ++j, ++i) {
      EXPECT_NEAR(out->logprobs[i], ref->logprobs[s][j], 1e-5) << "seq " << s << " token " << j;
      EXPECT_NEAR(out->entropy[i], ref->entropy[s][j], 1e-5) << "seq " << s << " token " << j;
    }
  }
  ASSERT_EQ(i, out->logprobs.size());

  // Routing: identical expert sets per token and MoE layer; combine weights close.
  if (c.num_experts > 0) {
    ASSERT_EQ(ref->routing.size(), seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) {
      json our_weights;
      const json ours = OurRouting(out->routing, batch, static_cast<int64_t>(s), true, &our_weights);
      EXPECT_EQ(ours, ref->routing[s]) << "routing of sequence " << s;
      for (size_t l = 0; l < ours.size(); ++l)
        for (size_t t = 0; t < ours[l].size(); ++t)
          for (size_t j = 0; j < ours[l][t].size(); ++j)
            EXPECT_NEAR(our_weights[l][t][j].get<double>(),
                        ref->routing_weights[s][l][t][j].get<double>(), 1e-5);
    }
  }

  // Gradients of sum w * logprob.
  std::vector<Buffer> grads_d;
  ASSERT_TRUE((*model)->Backward(Flat(weights), &grads_d).ok());
  ExpectGradientsMatch(**model, grads_d, *ref);
}

// Full-distribution distillation: the divergence to a teacher's logits at a subset of targets,
// and the gradients of sum w * logprob + sum u * divergence, against PyTorch autograd.
TEST_P(ParityTest, DivergenceToTeacherLogitsAndItsGradientsMatchPyTorch) {
  GRPO_REQUIRE_TORCH();
  const std::string model_dir = testing::TinyModelsDir() + "/" + GetParam();
  auto model = CausalLM::Load(model_dir, BackendForTests());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const int64_t V = (*model)->config().vocab_size;
  const auto seqs = TestSequences(V, 17);  // the sequences of the test above: every expert gets tokens
  const auto weights = TestWeights(seqs, 37);
  std::mt19937 rng(41);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  std::uniform_real_distribution<float> u(0.2f, 1.0f);
  for (Divergence kind : {Divergence::kReverseKl, Divergence::kForwardKl}) {
    // Every third target has no divergence row (weight 0 and zero logits in the reference).
    DivergenceTargets d;
    d.kind = kind;
    std::vector<float> teacher;
    json ref_logits = json::array(), ref_weights = json::array();
    std::vector<float> div_weights;
    int64_t target = 0;
    for (const auto& seq : seqs) {
      json seq_logits = json::array(), seq_weights = json::array();
      for (size_t j = 0; j + 1 < seq.size(); ++j, ++target) {
        std::vector<float> row(V, 0.0f);
        float w = 0.0f;
        if (target % 3 != 1) {
          for (float& x : row) x = logit(rng);
          w = u(rng);
          d.rows.push_back(target);
          teacher.insert(teacher.end(), row.begin(), row.end());
          div_weights.push_back(w);
        }
        seq_logits.push_back(row);
        seq_weights.push_back(w);
      }
      ref_logits.push_back(seq_logits);
      ref_weights.push_back(seq_weights);
    }
    d.teacher_logits = teacher;
    const char* name = kind == Divergence::kReverseKl ? "reverse_kl" : "forward_kl";
    auto ref = RunReference(model_dir, {{"sequences", seqs}, {"weights", weights},
                                        {"divergence", {{"kind", name}, {"teacher_logits", ref_logits},
                                                        {"weights", ref_weights}}}});
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    ForwardOptions opts;
    opts.keep_activations = true;
    opts.divergence = &d;
    auto out = (*model)->Forward(TokenBatch::FromSequences(seqs), opts);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ASSERT_EQ(out->divergence.size(), d.rows.size());
    size_t row = 0;
    target = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (size_t j = 0; j < ref->divergence[s].size(); ++j, ++target) {
        if (target % 3 == 1) continue;
        EXPECT_NEAR(out->divergence[row], ref->divergence[s][j], 1e-5 * (1 + ref->divergence[s][j]))
            << name << " seq " << s << " target " << j;
        ++row;
      }
    }
    EXPECT_EQ(row, d.rows.size());
    std::vector<Buffer> grads_d;
    ASSERT_TRUE((*model)->Backward(Flat(weights), div_weights, &grads_d).ok()) << name;
    ExpectGradientsMatch(**model, grads_d, *ref);
  }
}

TEST_P(ParityTest, ForcedRoutingMatchesPyTorchForcedRouting) {
  GRPO_REQUIRE_TORCH();
  const std::string model_dir = testing::TinyModelsDir() + "/" + GetParam();
  auto model = CausalLM::Load(model_dir, BackendForTests());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelConfig& c = (*model)->config();
  if (c.num_experts == 0) GTEST_SKIP() << "dense model";
  const auto seqs = TestSequences(c.vocab_size, 99);
  const TokenBatch batch = TokenBatch::FromSequences(seqs);
  // A routing that is not the model's own choice: deterministic pseudo-random distinct experts.
  Routing forced;
  forced.num_moe_layers = c.NumMoeLayers();
  forced.num_tokens = batch.num_tokens();
  forced.top_k = c.num_experts_per_tok;
  std::mt19937 rng(5);
  for (int64_t l = 0; l < forced.num_moe_layers; ++l) {
    for (int64_t t = 0; t < forced.num_tokens; ++t) {
      std::vector<int32_t> all(c.num_experts);
      for (int32_t e = 0; e < c.num_experts; ++e) all[e] = e;
      std::shuffle(all.begin(), all.end(), rng);
      forced.experts.insert(forced.experts.end(), all.begin(), all.begin() + forced.top_k);
    }
  }
  json forced_json = json::array();
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    Routing sorted = forced;
    sorted.weights.assign(forced.experts.size(), 0.0f);
    forced_json.push_back(OurRouting(sorted, batch, s, false, nullptr));
  }
  auto ref = RunReference(model_dir, {{"sequences", seqs}, {"forced_routing", forced_json}});
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  ForwardOptions opts;
  opts.forced_routing = &forced;
  auto out = (*model)->Forward(batch, opts);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  size_t i = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (size_t j = 0; j < ref->logprobs[s].size(); ++j, ++i) {
      EXPECT_NEAR(out->logprobs[i], ref->logprobs[s][j], 1e-5) << "seq " << s << " token " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ParityTest,
                         ::testing::Values("llama", "llama_sharded", "qwen2", "qwen2_tied", "qwen3", "qwen3_moe",
                                           "deepseek_v3", "deepseek_v3_noq", "deepseek_v3_fp8",
                                           "qwen3_bf16"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace grpo
