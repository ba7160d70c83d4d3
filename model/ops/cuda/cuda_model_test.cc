// Whole models on the CUDA backend against the CPU backend: a tiny random model of each family
// (the presets' "-nano" configs), the same weights on both, packed sequences of odd lengths.
// Logprobs and entropies agree within 1e-4 relative, every parameter's gradient within 1e-3
// relative (||gpu - cpu|| / ||cpu||), MoE routing chooses the same experts. Prints "RELERR
// <what> <value>" lines for tools/gpu_check.sh. Needs a GPU (tagged `gpu`).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/ops/cuda/cuda_backend.h"
#include "model/ops/cuda/cuda_devices.h"
#include "model/presets.h"

namespace grpo {
namespace {

std::unique_ptr<CausalLM> NanoModel(const std::string& family, Backend& backend) {
  auto config = PresetConfig(family + "-nano");
  EXPECT_TRUE(config.ok()) << config.status();
  // A larger init spreads the router scores so MoE choices are not near-ties.
  auto model = CausalLM::Create(*config, InitParameters(*config, 7, 0.1), backend);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(model).value();
}

double RelativeError(const float* gpu, const float* cpu, int64_t n, const std::string& what) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_FALSE(std::isnan(gpu[i])) << what << ": NaN at " << i;
    diff += (static_cast<double>(gpu[i]) - cpu[i]) * (static_cast<double>(gpu[i]) - cpu[i]);
    norm += static_cast<double>(cpu[i]) * cpu[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

class CudaModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const absl::Status available = CudaAvailability();
    ASSERT_TRUE(available.ok()) << available;
  }
};

TEST_P(CudaModelTest, LogprobsAndEveryGradientMatchTheCpu) {
  auto cpu = NanoModel(GetParam(), CpuBackend());
  auto gpu = NanoModel(GetParam(), CudaBackend());
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(cpu->config().vocab_size - 1));
  std::vector<std::vector<int32_t>> seqs;
  for (int len : {9, 1, 33, 70}) {
    std::vector<int32_t> s(len);
    for (int32_t& t : s) t = tok(rng);
    seqs.push_back(s);
  }
  const TokenBatch batch = TokenBatch::FromSequences(seqs);
  const ForwardOptions options{.need_entropy = true, .keep_activations = true};
  auto c = cpu->Forward(batch, options);
  auto g = gpu->Forward(batch, options);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->routing.experts, c->routing.experts) << "the GPU chose other experts";
  const int64_t n = static_cast<int64_t>(c->logprobs.size());
  ASSERT_EQ(static_cast<int64_t>(g->logprobs.size()), n);
  const double lp = RelativeError(g->logprobs.data(), c->logprobs.data(), n, "logprobs");
  const double ent = RelativeError(g->entropy.data(), c->entropy.data(), n, "entropy");
  std::printf("RELERR %s/logprobs %.3g\nRELERR %s/entropy %.3g\n", GetParam().c_str(), lp, GetParam().c_str(), ent);
  EXPECT_LE(lp, 1e-4);
  EXPECT_LE(ent, 1e-4);

  std::vector<float> weights(n);
  for (int64_t i = 0; i < n; ++i) weights[i] = std::sin(0.37f * i);  // signed, like advantages
  std::vector<Buffer> cpu_grads, gpu_grads;
  ASSERT_TRUE(cpu->Backward(weights, &cpu_grads).ok());
  ASSERT_TRUE(gpu->Backward(weights, &gpu_grads).ok());
  const std::vector<Tensor> cg = cpu->ReadGradients(cpu_grads);
  const std::vector<Tensor> gg = gpu->ReadGradients(gpu_grads);
  ASSERT_EQ(cg.size(), gg.size());
  double worst = 0;
  for (size_t p = 0; p < cg.size(); ++p) {
    ASSERT_EQ(cg[p].numel(), gg[p].numel()) << p;
    const std::string name = cpu->parameter_specs()[p].name;
    const double rel = RelativeError(gg[p].data<float>(), cg[p].data<float>(), cg[p].numel(), name);
    worst = std::max(worst, rel);
    EXPECT_LE(rel, 1e-3) << name;
  }
  std::printf("RELERR %s/gradients(worst) %.3g\n", GetParam().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(Families, CudaModelTest,
                         ::testing::Values("llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace grpo
