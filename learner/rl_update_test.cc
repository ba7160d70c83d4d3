// RlUpdate: the gradient it applies is the gradient of the policy loss over the packed
// completions (checked against central finite differences of Forward + ComputePolicyLoss in
// double-checked f32), routing replay reproduces the rollout engine's logprobs exactly, and the
// update moves the policy toward higher-advantage samples.
#include "learner/rl_update.h"

#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <random>

#include "learner/rl_test_util.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"
#include "rollout/engine.h"
#include "tokenizer/test_tokenizer.h"

namespace grpo {
namespace {

std::unique_ptr<CausalLM> Make(const std::string& preset, uint64_t seed) { return rl_test::MakeModel(preset, seed); }

// With a multi-turn sample: every other token of the last sample is out of the loss.
std::vector<RlGroup> RandomGroups(int64_t num_groups, int64_t g, uint64_t seed, int32_t vocab) {
  return rl_test::RandomGroups(num_groups, g, seed, vocab, {.max_completion_tokens = 6, .mask_tool_tokens = true});
}

// The loss RlUpdate minimizes, recomputed from scratch (old logprobs fixed).
double LossAt(CausalLM& model, const std::vector<RlGroup>& groups, const std::vector<float>& old_lp,
              const PolicyLossOptions& o, const Routing* routing) {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int64_t> offsets{0};
  std::vector<double> adv;
  std::vector<uint8_t> mask;
  for (const auto& g : groups) {
    for (const auto& s : g.samples) {
      std::vector<int32_t> seq = g.prompt;
      seq.insert(seq.end(), s.completion.begin(), s.completion.end());
      seqs.push_back(seq);
      offsets.push_back(offsets.back() + static_cast<int64_t>(s.completion.size()));
      adv.push_back(s.advantage);
      for (size_t j = 0; j < s.completion.size(); ++j) {
        mask.push_back(s.trained && (s.loss_mask.empty() || s.loss_mask[j]) ? 1 : 0);
      }
    }
  }
  ForwardOptions fo;
  fo.forced_routing = routing;
  auto out = model.Forward(TokenBatch::FromSequences(seqs), fo);
  EXPECT_TRUE(out.ok());
  std::vector<float> lp;
  size_t base = 0, k = 0;
  for (const auto& g : groups) {
    for (const auto& s : g.samples) {
      const size_t len = g.prompt.size() + s.completion.size();
      for (size_t j = 0; j < s.completion.size(); ++j) lp.push_back(out->logprobs[base + g.prompt.size() - 1 + j]);
      base += len - 1;
      ++k;
    }
  }
  PolicyLossInputs in;
  in.logprobs = lp;
  in.old_logprobs = old_lp.empty() ? std::span<const float>(lp) : std::span<const float>(old_lp);
  in.advantages = adv;
  in.offsets = offsets;
  in.mask = mask;
  auto r = ComputePolicyLoss(in, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r->loss;
}

TEST(RlUpdate, AppliedGradientIsTheLossGradient) {
  for (const std::string preset : {"llama-nano", "qwen3_moe-nano"}) {
    SCOPED_TRACE(preset);
    auto model = Make(preset, 3);
    const auto groups = RandomGroups(2, 3, 7, 200);
    auto opt = AdamW::Create(model->backend(), model->parameter_specs(), {});
    ASSERT_TRUE(opt.ok());
    RlUpdateOptions o;
    o.loss = PolicyLossPreset(Objective::kDapo);
    o.schedule.lr = 0;  // leave the weights alone: we only read the gradient
    o.max_grad_norm = 0;
    o.routing_replay = false;
    std::vector<Buffer> grads;
    auto stats = RlUpdate(*model, nullptr, *opt, groups, o, &grads);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->optimizer_steps, 1);
    // With one mini-batch the ratio is 1 (old = current), so the loss is -sum A * 1 / n and its
    // gradient is the policy gradient. Compare <grad, d> with a central difference along d,
    // holding old logprobs at their value at theta.
    std::vector<float> old_lp;
    Routing routing;  // MoE: keep the experts chosen at theta (the gradient does not see choices)
    {
      // old logprobs at theta, in completion order
      std::vector<std::vector<int32_t>> seqs;
      for (const auto& g : groups)
        for (const auto& s : g.samples) {
          auto seq = g.prompt;
          seq.insert(seq.end(), s.completion.begin(), s.completion.end());
          seqs.push_back(seq);
        }
      auto out = model->Forward(TokenBatch::FromSequences(seqs), {});
      ASSERT_TRUE(out.ok());
      routing = out->routing;
      size_t base = 0;
      for (const auto& g : groups)
        for (const auto& s : g.samples) {
          for (size_t j = 0; j < s.completion.size(); ++j) old_lp.push_back(out->logprobs[base + g.prompt.size() - 1 + j]);
          base += g.prompt.size() + s.completion.size() - 1;
        }
    }
    std::mt19937_64 rng(11);
    std::normal_distribution<float> nd(0, 1);
    // Host copies of the parameters and gradients; shifted values are written back.
    std::vector<Parameter> params = model->ReadParameters();
    const std::vector<Tensor> host_grads = model->ReadGradients(grads);
    std::vector<std::vector<float>> dir(params.size());
    double predicted = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      if (!params[i].spec.trainable) continue;
      dir[i].resize(params[i].value.numel());
      for (auto& d : dir[i]) d = nd(rng);
      const float* g = host_grads[i].data<float>();
      for (size_t j = 0; j < dir[i].size(); ++j) predicted += static_cast<double>(g[j]) * dir[i][j];
    }
    const float eps = 1e-3f;
    const Routing* fixed = routing.num_moe_layers > 0 ? &routing : nullptr;
    auto shift = [&](float s) {
      for (size_t i = 0; i < params.size(); ++i) {
        float* p = params[i].value.mutable_data<float>();
        for (size_t j = 0; j < dir[i].size(); ++j) p[j] += s * dir[i][j];
        ASSERT_TRUE(model->WriteParameter(i, params[i].value).ok());
      }
    };
    shift(eps);
    const double up = LossAt(*model, groups, old_lp, o.loss, fixed);
    shift(-2 * eps);
    const double down = LossAt(*model, groups, old_lp, o.loss, fixed);
    shift(eps);
    const double numeric = (up - down) / (2 * eps);
    EXPECT_NEAR(numeric, predicted, 3e-2 * std::abs(predicted) + 2e-3) << "numeric " << numeric;
    EXPECT_NE(predicted, 0.0);
  }
}

// The gradient of a sample whose last tokens are environment tokens (loss_mask 0) equals the
// gradient of the same sample without them: they contribute nothing, whatever their advantage.
TEST(RlUpdate, EnvironmentTokensContributeNoGradient) {
  auto model = Make("llama-nano", 3);
  std::vector<RlGroup> plain = RandomGroups(2, 3, 9, 200);
  for (auto& g : plain) {
    for (auto& s : g.samples) s.loss_mask.clear();
  }
  std::vector<RlGroup> with_tool = plain;
  std::mt19937_64 rng(5);
  for (auto& g : with_tool) {
    for (auto& s : g.samples) {
      s.loss_mask.assign(s.completion.size(), 1);
      for (int k = 0; k < 3; ++k) {
        s.completion.push_back(static_cast<int32_t>(rng() % 200));
        s.loss_mask.push_back(0);
      }
    }
  }
  auto gradient = [&](const std::vector<RlGroup>& groups, int64_t* tokens) {
    auto opt = AdamW::Create(model->backend(), model->parameter_specs(), {});
    EXPECT_TRUE(opt.ok());
    RlUpdateOptions o;
    o.loss = PolicyLossPreset(Objective::kDapo);  // token-mean over the batch: counts matter
    o.schedule.lr = 0;
    o.max_grad_norm = 0;
    std::vector<Buffer> grads;
    auto stats = RlUpdate(*model, nullptr, *opt, groups, o, &grads);
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    *tokens = stats->tokens;
    return model->ReadGradients(grads);
  };
  int64_t plain_tokens = 0, tool_tokens = 0;
  const std::vector<Tensor> want = gradient(plain, &plain_tokens);
  const std::vector<Tensor> got = gradient(with_tool, &tool_tokens);
  EXPECT_EQ(tool_tokens, plain_tokens);
  ASSERT_EQ(got.size(), want.size());
  double max_abs = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].numel(), want[i].numel());
    for (int64_t j = 0; j < want[i].numel(); ++j) {
      EXPECT_NEAR(got[i].data<float>()[j], want[i].data<float>()[j], 1e-6) << "parameter " << i << " entry " << j;
      max_abs = std::max(max_abs, static_cast<double>(std::abs(want[i].data<float>()[j])));
    }
  }
  EXPECT_GT(max_abs, 1e-4);  // a real gradient was compared
  // And the mask is checked against the tokens.
  with_tool[0].samples[1].loss_mask.pop_back();
  auto opt = AdamW::Create(model->backend(), model->parameter_specs(), {});
  ASSERT_TRUE(opt.ok());
  std::vector<Buffer> grads;
  auto bad = RlUpdate(*model, nullptr, *opt, with_tool, {}, &grads);
  EXPECT_NE(bad.status().message().find("loss mask"), std::string::npos) << bad.status();
}

TEST(RlUpdate, RoutingReplayReproducesTheEngineLogprobs) {
  auto policy = Make("deepseek_v3-nano", 5);
  auto engine_model = Make("deepseek_v3-nano", 5);
  auto engine = RolloutEngine::Create(std::move(engine_model), {});
  ASSERT_TRUE(engine.ok());
  GroupRequest req;
  req.prompt = {5, 17, 33, 2, 91, 64};
  req.n = 4;
  req.max_new_tokens = 7;
  req.seed = 3;
  req.return_routing = true;
  req.return_raw_logprobs = true;
  auto res = (*engine)->GenerateGroups({req});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const GroupResult& gr = (*res)[0];
  std::vector<RlGroup> groups(1);
  groups[0].prompt = req.prompt;
  groups[0].prompt_routing = gr.prompt_routing;
  for (const auto& s : gr.samples) {
    RlSample rs;
    rs.completion = s.tokens;
    rs.routing = s.routing;
    rs.rollout_logprobs = s.raw_logprobs;
    rs.advantage = 0.5 - static_cast<double>(s.index % 2);
    groups[0].samples.push_back(rs);
  }
  // Token-level masking with a tight cap: a sample whose learner logprobs differed from the
  // rollout's would be masked (is_weight_mean < 1).
  RlUpdateOptions o;
  o.loss = PolicyLossPreset(Objective::kGrpo);
  o.loss.kl_beta = 0;
  o.loss.is_correction = IsCorrection::kTokenMask;
  o.loss.is_cap = std::exp(1e-5);
  o.schedule.lr = 1e-3;
  auto opt = AdamW::Create(policy->backend(), policy->parameter_specs(), {});
  std::vector<Buffer> grads;
  auto stats = RlUpdate(*policy, nullptr, *opt, groups, o, &grads);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->is_weight_mean, 1.0);
  // Replay is what makes them equal: without the engine's routing a wrong expert set is used.
  for (auto& s : groups[0].samples) {
    for (auto& e : s.routing) e = (e + 1) % 8;
  }
  auto policy2 = Make("deepseek_v3-nano", 5);
  auto opt2 = AdamW::Create(policy2->backend(), policy2->parameter_specs(), {});
  auto stats2 = RlUpdate(*policy2, nullptr, *opt2, groups, o, &grads);
  ASSERT_TRUE(stats2.ok()) << stats2.status().ToString();
  EXPECT_LT(stats2->is_weight_mean, 1.0);
}

// A tool whose calls end at `marker` and whose answer is always "{#7#}".
class FixedTool : public Environment {
 public:
  explicit FixedTool(std::string marker) : marker_(std::move(marker)) {}
  const std::string& call_end() const override { return marker_; }
  absl::StatusOr<ToolResult> Call(const std::string&) override {
    return ToolResult{.tool = "fixed", .output = "#7#", .result_start = "{", .result_end = "}"};
  }

 private:
  std::string marker_;
};

// Two characters from the middle of `tokens`' text: a tool-call marker the same greedy sample
// completes again.
std::string MarkerInText(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& tokens) {
  tokenizer::StreamDecoder dec(tok);
  std::string text;
  for (int32_t t : tokens) text += dec.Push(t).value_or("");
  EXPECT_GT(text.size(), 2u) << "the greedy text is too short for this test";
  return text.size() > 2 ? text.substr(text.size() / 2, 2) : "";
}

// Routing replay of two-turn samples (tool use) on an MoE model: the routing the learner replays
// equals the engine's at every position (prompt, generated tokens, and the environment's tokens,
// whose routing the engine took from the prefill of the tool result), and under it the learner's
// logprobs of the generated tokens equal the engine's; wrong experts at the environment's
// positions alone would change them. qwen3_moe: every layer is MoE, so the experts of an
// environment position reach the next turn through the next layer's attention (with MoE in the
// last layer only, they would shape only the masked tokens' own logits).
TEST(RlUpdate, RoutingReplayOfTwoTurnSamplesReproducesTheEngineLogprobs) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok());
  auto policy = Make("qwen3_moe-nano", 5);
  EngineOptions eo;
  eo.tokenizer = &*tok;
  auto engine = RolloutEngine::Create(Make("qwen3_moe-nano", 5), eo);
  ASSERT_TRUE(engine.ok());
  GroupRequest req;
  req.prompt = {5, 17, 33, 2, 91, 64};
  req.sampling.temperature = 0.0;
  req.max_new_tokens = 24;
  req.return_routing = true;
  req.return_raw_logprobs = true;
  auto free_run = (*engine)->GenerateGroups({req});
  ASSERT_TRUE(free_run.ok()) << free_run.status();
  req.environment = std::make_shared<FixedTool>(MarkerInText(*tok, (*free_run)[0].samples[0].tokens));
  req.max_tool_calls = 1;
  req.max_new_tokens = 36;
  auto res = (*engine)->GenerateGroups({req});
  ASSERT_TRUE(res.ok()) << res.status();
  const GroupResult& gr = (*res)[0];
  const SampleResult& sample = gr.samples[0];
  ASSERT_EQ(sample.environment_spans.size(), 1u);
  const EnvironmentSpan& span = sample.environment_spans[0];
  ASSERT_GT(static_cast<int64_t>(sample.tokens.size()), span.first_token + span.num_tokens) << "no second turn";
  std::vector<RlGroup> groups(1);
  groups[0].prompt = req.prompt;
  groups[0].prompt_routing = gr.prompt_routing;
  RlSample rs;
  rs.completion = sample.tokens;
  rs.routing = sample.routing;
  rs.rollout_logprobs = sample.raw_logprobs;
  rs.advantage = 0.5;
  auto mask = GeneratedTokenMask(static_cast<int64_t>(sample.tokens.size()), sample.environment_spans);
  ASSERT_TRUE(mask.ok());
  rs.loss_mask = *mask;
  groups[0].samples.push_back(rs);

  // The replayed routing is the engine's, position by position.
  const ModelConfig& cfg = policy->config();
  const int64_t L = cfg.NumMoeLayers(), K = cfg.num_experts_per_tok;
  const int64_t P = static_cast<int64_t>(req.prompt.size()), T = static_cast<int64_t>(sample.tokens.size());
  auto replay = ReplayRouting(groups, L, K);
  ASSERT_TRUE(replay.ok()) << replay.status();
  const int64_t N = replay->num_tokens;
  ASSERT_EQ(N, P + T);
  for (int64_t pos = 0; pos + 1 < P + T; ++pos) {
    const int32_t* engine_experts =
        pos < P - 1 ? gr.prompt_routing.data() + pos * L * K : sample.routing.data() + (pos - (P - 1)) * L * K;
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t k = 0; k < K; ++k) {
        EXPECT_EQ(replay->experts[(l * N + pos) * K + k], engine_experts[l * K + k]) << "position " << pos;
      }
    }
  }
  // Under it, the learner's logprobs of the generated tokens are the engine's.
  std::vector<int32_t> seq = req.prompt;
  seq.insert(seq.end(), sample.tokens.begin(), sample.tokens.end());
  ForwardOptions fo;
  fo.forced_routing = &*replay;
  auto out = policy->Forward(TokenBatch::FromSequences({seq}), fo);
  ASSERT_TRUE(out.ok()) << out.status();
  for (int64_t t = 0; t < T; ++t) {
    if ((*mask)[t]) {
      EXPECT_NEAR(out->logprobs[P - 1 + t], sample.raw_logprobs[t], 1e-5) << "token " << t;
    }
  }

  RlUpdateOptions o;
  o.loss = PolicyLossPreset(Objective::kGrpo);
  o.loss.kl_beta = 0;
  o.loss.is_correction = IsCorrection::kTokenMask;  // a token off by more than 1e-5 is masked
  o.loss.is_cap = std::exp(1e-5);
  o.schedule.lr = 1e-3;
  auto opt = AdamW::Create(policy->backend(), policy->parameter_specs(), {});
  std::vector<Buffer> grads;
  auto stats = RlUpdate(*policy, nullptr, *opt, groups, o, &grads);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->is_weight_mean, 1.0);
  // Other experts for the environment's tokens only: the next turn's logprobs move.
  for (int64_t t = span.first_token; t < span.first_token + span.num_tokens; ++t) {
    for (int64_t j = 0; j < L * K; ++j) groups[0].samples[0].routing[t * L * K + j] += 1;
  }
  for (int32_t& e : groups[0].samples[0].routing) e %= static_cast<int32_t>(cfg.num_experts);
  auto policy2 = Make("qwen3_moe-nano", 5);
  auto opt2 = AdamW::Create(policy2->backend(), policy2->parameter_specs(), {});
  auto stats2 = RlUpdate(*policy2, nullptr, *opt2, groups, o, &grads);
  ASSERT_TRUE(stats2.ok()) << stats2.status();
  EXPECT_LT(stats2->is_weight_mean, 1.0);
}

TEST(RlUpdate, RaisesTheLogprobOfPositiveAdvantageSamples) {
  auto model = Make("qwen2-nano", 9);
  auto groups = RandomGroups(4, 4, 21, 200);
  groups[0].samples[0].trained = true;
  auto opt = AdamW::Create(model->backend(), model->parameter_specs(), {});
  RlUpdateOptions o;
  o.loss = PolicyLossPreset(Objective::kDrGrpo);
  o.loss.norm_length = 8;
  o.schedule.lr = 3e-3;
  o.mini_batches = 2;
  o.epochs = 2;
  std::vector<Buffer> grads;
  auto before = [&] {
    std::vector<double> per_sample;
    for (const auto& g : groups)
      for (const auto& s : g.samples) {
        auto seq = g.prompt;
        seq.insert(seq.end(), s.completion.begin(), s.completion.end());
        auto out = model->Forward(TokenBatch::FromSequences({seq}), {});
        double sum = 0;
        for (size_t j = 0; j < s.completion.size(); ++j) sum += out->logprobs[g.prompt.size() - 1 + j];
        per_sample.push_back(sum);
      }
    return per_sample;
  };
  const auto lp0 = before();
  auto stats = RlUpdate(*model, nullptr, *opt, groups, o, &grads);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->optimizer_steps, 4);
  const auto lp1 = before();
  double corr = 0;
  size_t k = 0;
  for (const auto& g : groups)
    for (const auto& s : g.samples) corr += s.advantage * (lp1[k] - lp0[k]), ++k;
  EXPECT_GT(corr, 0.0);
}

// The learner's logprobs of every completion token of `groups`, sample by sample.
std::vector<std::vector<float>> CompletionLogprobs(CausalLM& model, const std::vector<RlGroup>& groups) {
  std::vector<std::vector<float>> out;
  for (const auto& g : groups) {
    for (const auto& s : g.samples) {
      auto seq = g.prompt;
      seq.insert(seq.end(), s.completion.begin(), s.completion.end());
      auto f = model.Forward(TokenBatch::FromSequences({seq}), {});
      EXPECT_TRUE(f.ok());
      out.emplace_back(f->logprobs.begin() + static_cast<int64_t>(g.prompt.size()) - 1, f->logprobs.end());
    }
  }
  return out;
}

TEST(RlUpdate, ReportsTheRolloutLearnerMismatch) {
  for (const int64_t mini_batches : {1, 2}) {  // old logprobs from the training forward / a pass of their own
    SCOPED_TRACE(mini_batches);
    auto model = Make("qwen2-nano", 4);
    auto groups = RandomGroups(2, 3, 8, 200);
    const auto lp = CompletionLogprobs(*model, groups);
    // Rollout logprobs off by known amounts: token j of sample k by (k + 1) * (j + 1) * 1e-3.
    // Environment tokens (loss_mask 0: every third token, and RandomGroups' own in the last
    // sample) carry 0 as their rollout logprob, as the engine reports them: they were not sampled,
    // so they are left out of the mismatch.
    double sum = 0, max = 0;
    int64_t n = 0, k = 0;
    for (auto& g : groups) {
      for (auto& s : g.samples) {
        if (s.loss_mask.empty()) s.loss_mask.assign(s.completion.size(), 1);
        for (size_t j = 0; j < s.completion.size(); ++j) {
          if (j % 3 == 2) s.loss_mask[j] = 0;
          if (s.loss_mask[j] == 0) {
            s.rollout_logprobs.push_back(0.0f);
            continue;
          }
          const float off = static_cast<float>((k + 1) * (j + 1) * 1e-3);
          s.rollout_logprobs.push_back(lp[k][j] + off);
          const double d = std::fabs(static_cast<double>(s.rollout_logprobs.back()) - lp[k][j]);
          sum += d;
          max = std::max(max, d);
          ++n;
        }
        ++k;
      }
    }
    auto opt = AdamW::Create(model->backend(), model->parameter_specs(), {});
    RlUpdateOptions o;
    o.loss = PolicyLossPreset(Objective::kGrpo);
    o.loss.kl_beta = 0;
    o.mini_batches = mini_batches;
    o.schedule.lr = 1e-3;
    std::vector<Buffer> grads;
    auto stats = RlUpdate(*model, nullptr, *opt, groups, o, &grads);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->mismatch_tokens, n);
    // Forward of one sequence and of the packed batch agree to rounding.
    EXPECT_NEAR(stats->mismatch_max_abs_logprob, max, 1e-5);
    EXPECT_NEAR(stats->mismatch_mean_abs_logprob, sum / n, 1e-5);
    EXPECT_GT(stats->mismatch_max_abs_logprob, 0.01);
  }
  // Samples without rollout logprobs: nothing measured.
  auto model = Make("qwen2-nano", 4);
  auto opt = AdamW::Create(model->backend(), model->parameter_specs(), {});
  RlUpdateOptions o;
  o.loss = PolicyLossPreset(Objective::kGrpo);
  o.loss.kl_beta = 0;
  std::vector<Buffer> grads;
  auto stats = RlUpdate(*model, nullptr, *opt, RandomGroups(2, 3, 8, 200), o, &grads);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->mismatch_tokens, 0);
  EXPECT_EQ(stats->mismatch_max_abs_logprob, 0.0);
}

// A partial rollout: the engine takes version 1 after each sample's first token, so every sample
// spans versions 0 and 1. The learner (holding version 1) trains on all of it, and the mismatch it
// measures per token is exactly that of the version-0 tokens: each token is corrected against the
// logprob of the weights that sampled it.
TEST(RlUpdate, APartialRolloutSpanningTwoVersionsTrainsPerToken) {
  auto config = PresetConfig("qwen2-nano");
  ASSERT_TRUE(config.ok());
  auto engine = RolloutEngine::Create(Make("qwen2-nano", 4), {});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  auto learner = Make("qwen2-nano", 5);
  GroupRequest r;
  r.prompt = {5, 9, 13, 2};
  r.n = 3;
  r.max_new_tokens = 6;
  r.seed = 11;
  r.return_raw_logprobs = true;
  std::promise<GroupResult> done;
  GroupCallbacks cb;
  RolloutEngine* e = engine->get();
  const std::vector<Parameter> v1 = learner->ReadParameters();
  cb.on_prefill = [e, &v1](const GroupResult&) { EXPECT_TRUE(e->StageWeights(1, v1).ok()); };
  cb.on_done = [&done](GroupResult g) { done.set_value(std::move(g)); };
  ASSERT_TRUE((*engine)->Submit(r, cb).ok());
  const GroupResult g = done.get_future().get();

  std::vector<RlGroup> groups(1);
  groups[0].prompt = r.prompt;
  int64_t n = 0;
  for (const SampleResult& s : g.samples) {
    ASSERT_EQ(s.versions, (std::vector<VersionSpan>{{0, 0}, {1, 1}}));
    RlSample rs;
    rs.completion = s.tokens;
    rs.rollout_logprobs = s.raw_logprobs;
    rs.advantage = static_cast<double>(groups[0].samples.size()) - 1.0;
    groups[0].samples.push_back(std::move(rs));
    n += static_cast<int64_t>(s.tokens.size());
  }
  const auto lp = CompletionLogprobs(*learner, groups);
  double sum = 0, max = 0;
  for (size_t k = 0; k < g.samples.size(); ++k) {
    const double d = std::fabs(static_cast<double>(g.samples[k].raw_logprobs[0]) - lp[k][0]);
    sum += d;
    max = std::max(max, d);
    for (size_t t = 1; t < lp[k].size(); ++t) EXPECT_NEAR(g.samples[k].raw_logprobs[t], lp[k][t], 1e-5) << k << " " << t;
  }
  auto opt = AdamW::Create(learner->backend(), learner->parameter_specs(), {});
  RlUpdateOptions o;
  o.loss = PolicyLossPreset(Objective::kGrpo);
  o.loss.kl_beta = 0;
  o.loss.is_correction = IsCorrection::kTokenTis;
  o.schedule.lr = 1e-3;
  std::vector<Buffer> grads;
  auto stats = RlUpdate(*learner, nullptr, *opt, groups, o, &grads);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->tokens, n);  // every token of every sample trained
  EXPECT_EQ(stats->mismatch_tokens, n);
  EXPECT_GT(max, 1e-3);  // the two versions differ
  EXPECT_NEAR(stats->mismatch_max_abs_logprob, max, 1e-5);
  EXPECT_NEAR(stats->mismatch_mean_abs_logprob, sum / static_cast<double>(n), 1e-5);
  EXPECT_NE(CompletionLogprobs(*learner, groups), lp);  // the update moved the policy
}

// With the backend in batch-invariant mode and the engine serving the learner's weights, the
// rollout logprobs are the learner's old logprobs bit for bit: no mismatch, IS weights exactly 1,
// and on-policy (one mini-batch) ratios exactly 1.
TEST(RlUpdate, BatchInvariantRolloutsAreExactlyOnPolicy) {
  ASSERT_TRUE(BackendForTests().SetBatchInvariant(true));
  for (const std::string preset : {"qwen3-nano", "deepseek_v3-nano"}) {
    for (const int64_t mini_batches : {1, 2}) {
      SCOPED_TRACE(preset + " mini_batches " + std::to_string(mini_batches));
      auto policy = Make(preset, 6);
      auto engine = RolloutEngine::Create(Make(preset, 6), {});
      ASSERT_TRUE(engine.ok());
      std::vector<GroupRequest> requests(2);
      for (size_t g = 0; g < requests.size(); ++g) {
        requests[g].prompt = {5, 17, 33, 2, static_cast<int32_t>(91 + g)};
        requests[g].n = 3;
        requests[g].max_new_tokens = 6;
        requests[g].seed = g;
        requests[g].return_raw_logprobs = true;
      }
      auto res = (*engine)->GenerateGroups(requests);
      ASSERT_TRUE(res.ok()) << res.status().ToString();
      std::vector<RlGroup> groups(requests.size());
      for (size_t g = 0; g < requests.size(); ++g) {
        groups[g].prompt = requests[g].prompt;
        for (const auto& s : (*res)[g].samples) {
          RlSample rs;
          rs.completion = s.tokens;
          rs.rollout_logprobs = s.raw_logprobs;
          rs.advantage = 0.5 - static_cast<double>(s.index % 2);
          groups[g].samples.push_back(rs);
        }
      }
      RlUpdateOptions o;
      o.loss = PolicyLossPreset(Objective::kGrpo);
      o.loss.kl_beta = 0;
      o.loss.is_correction = IsCorrection::kTokenTis;
      o.mini_batches = mini_batches;
      o.routing_replay = false;  // the learner's router makes the rollout's choices by itself
      o.schedule.lr = 1e-3;
      auto opt = AdamW::Create(policy->backend(), policy->parameter_specs(), {});
      std::vector<Buffer> grads;
      auto stats = RlUpdate(*policy, nullptr, *opt, groups, o, &grads);
      ASSERT_TRUE(stats.ok()) << stats.status().ToString();
      EXPECT_GT(stats->mismatch_tokens, 0);
      EXPECT_EQ(stats->mismatch_max_abs_logprob, 0.0);
      EXPECT_EQ(stats->is_weight_mean, 1.0);
      if (mini_batches == 1) {
        EXPECT_EQ(stats->ratio_max, 1.0);
      }
    }
  }
  BackendForTests().SetBatchInvariant(false);
}

// The distillation tests' update: DAPO's token-mean loss, 3 epochs at lr 3e-3.
RlUpdateOptions DistillOptions() {
  RlUpdateOptions o;
  o.loss = PolicyLossPreset(Objective::kDapo);
  o.schedule.lr = 3e-3;
  o.epochs = 3;
  return o;
}

// On-policy distillation: per-token advantages -(student - teacher) from a teacher model move the
// student's logprobs of the sampled tokens the way the teacher's differ (up where the teacher
// gives the token more probability, down where less), with no rule reward at all.
TEST(RlUpdate, TokenAdvantagesFromATeacherMoveTheStudentTowardIt) {
  auto student = Make("llama-nano", 2);
  auto teacher = Make("llama-nano", 30);
  auto groups = RandomGroups(2, 4, 12, 200);
  groups[0].samples[0].trained = true;
  const auto s0 = CompletionLogprobs(*student, groups), t = CompletionLogprobs(*teacher, groups);
  size_t k = 0;
  for (auto& g : groups) {
    for (auto& s : g.samples) {
      s.advantage = 0;
      auto a = DistillationAdvantages(s0[k], t[k], 1.0);
      ASSERT_TRUE(a.ok());
      s.token_advantages = *a;
      ++k;
    }
  }
  RlUpdateOptions o = DistillOptions();
  auto opt = AdamW::Create(student->backend(), student->parameter_specs(), {});
  std::vector<Buffer> grads;
  auto stats = RlUpdate(*student, nullptr, *opt, groups, o, &grads);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_GT(stats->grad_norm, 0.0);
  const auto s1 = CompletionLogprobs(*student, groups);
  double corr = 0;
  k = 0;
  for (auto& g : groups) {
    for (auto& s : g.samples) {
      for (size_t j = 0; j < s.completion.size(); ++j) {
        corr += s.token_advantages[j] * (s1[k][j] - s0[k][j]);
      }
      ++k;
    }
  }
  EXPECT_GT(corr, 0.0);
  // Token advantages on some samples only: refused.
  groups[1].samples[2].token_advantages.clear();
  auto bad = RlUpdate(*student, nullptr, *opt, groups, o, &grads);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("token advantages"), std::string::npos);
}

// The mean divergence of `model` from the samples' teacher logits over their completion tokens.
double MeanDivergence(CausalLM& model, const std::vector<RlGroup>& groups, Divergence kind) {
  double sum = 0;
  int64_t n = 0;
  for (const auto& g : groups) {
    for (const auto& s : g.samples) {
      auto seq = g.prompt;
      seq.insert(seq.end(), s.completion.begin(), s.completion.end());
      DivergenceTargets d{kind, {}, s.teacher_logits};
      for (size_t j = 0; j < s.completion.size(); ++j) d.rows.push_back(static_cast<int64_t>(g.prompt.size() - 1 + j));
      auto f = model.Forward(TokenBatch::FromSequences({seq}), {.divergence = &d});
      EXPECT_TRUE(f.ok()) << f.status();
      for (float x : f->divergence) sum += x;
      n += static_cast<int64_t>(f->divergence.size());
    }
  }
  return sum / static_cast<double>(n);
}

// Full-distribution distillation: the teacher's logits at every completion position; an update
// with divergence_coef > 0 and no rule reward lowers the student's divergence from the teacher
// in either direction, and reports it.
TEST(RlUpdate, FullDistributionDistillationLowersTheDivergence) {
  auto teacher = Make("qwen3-nano", 30);
  for (Divergence kind : {Divergence::kReverseKl, Divergence::kForwardKl}) {
    auto student = Make("qwen3-nano", 2);
    auto groups = RandomGroups(2, 4, 12, 200);
    for (auto& g : groups) {
      for (auto& s : g.samples) {
        auto seq = g.prompt;
        seq.insert(seq.end(), s.completion.begin(), s.completion.end());
        auto f = teacher->Forward(TokenBatch::FromSequences({seq}), {.return_logits = true});
        ASSERT_TRUE(f.ok());
        const int64_t V = teacher->config().vocab_size;
        s.teacher_logits.assign(f->logits.begin() + (g.prompt.size() - 1) * V, f->logits.end());
        s.advantage = 0;
      }
    }
    const double before = MeanDivergence(*student, groups, kind);
    RlUpdateOptions o = DistillOptions();
    o.loss.divergence_coef = 1.0;
    o.divergence = kind;
    auto opt = AdamW::Create(student->backend(), student->parameter_specs(), {});
    std::vector<Buffer> grads;
    auto stats = RlUpdate(*student, nullptr, *opt, groups, o, &grads);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    const double after = MeanDivergence(*student, groups, kind);
    EXPECT_GT(before, 0.1);
    EXPECT_LT(after, 0.8 * before) << "before " << before;
    EXPECT_GT(stats->divergence, after);  // the mean over the three steps, the first at `before`
    EXPECT_LT(stats->divergence, before * 1.0001);
    // Teacher logits on some samples only, or with divergence_coef 0: refused.
    auto missing = groups;
    missing[1].samples[2].teacher_logits.clear();
    auto bad = RlUpdate(*student, nullptr, *opt, missing, o, &grads);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("teacher logits"), std::string::npos) << bad.status();
    o.loss.divergence_coef = 0;
    bad = RlUpdate(*student, nullptr, *opt, groups, o, &grads);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("divergence_coef is 0"), std::string::npos) << bad.status();
  }
}

TEST(RlUpdate, RejectsBadInputs) {
  auto model = Make("llama-nano", 1);
  auto opt = AdamW::Create(model->backend(), model->parameter_specs(), {});
  std::vector<Buffer> grads;
  RlUpdateOptions o;
  EXPECT_FALSE(RlUpdate(*model, nullptr, *opt, {}, o, &grads).ok());
  auto groups = RandomGroups(3, 2, 1, 200);
  o.mini_batches = 2;
  EXPECT_FALSE(RlUpdate(*model, nullptr, *opt, groups, o, &grads).ok());
  o.mini_batches = 1;
  o.loss.kl_beta = 0.1;
  EXPECT_FALSE(RlUpdate(*model, nullptr, *opt, groups, o, &grads).ok());
  o.loss.kl_beta = 0;
  o.loss.is_correction = IsCorrection::kTokenTis;
  auto st = RlUpdate(*model, nullptr, *opt, groups, o, &grads);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("rollout logprobs"), std::string::npos);
}

}  // namespace
}  // namespace grpo
