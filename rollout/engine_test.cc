// The engine against the model's own full forward (CausalLM::Forward on prompt + completion):
// logprobs, greedy argmax path and MoE routing agree for every family, with shared prefixes,
// chunked prefill and preemption under a tiny KV budget; samples do not depend on the batch;
// a sample depends only on its seed and index; a weight switch mid-generation is recorded per
// token and post-switch logprobs are the new weights'; cancel, drain, stop tokens, stop strings
// and request checks.
#include "rollout/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"
#include "tokenizer/test_tokenizer.h"

namespace grpo {
namespace {

std::unique_ptr<CausalLM> MakeModel(const std::string& preset, uint64_t seed) {
  auto config = PresetConfig(preset);
  EXPECT_TRUE(config.ok()) << preset;
  auto m = CausalLM::Create(*config, InitParameters(*config, seed, 0.1), BackendForTests());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

std::unique_ptr<RolloutEngine> MakeEngine(const std::string& preset, uint64_t seed, EngineOptions o = {}) {
  auto e = RolloutEngine::Create(MakeModel(preset, seed), o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

std::vector<int32_t> Prompt(int64_t len, int32_t salt) {
  std::vector<int32_t> p;
  for (int64_t i = 0; i < len; ++i) p.push_back(static_cast<int32_t>((i * 37 + salt * 11 + 3) % 256));
  return p;
}

// Forward over prompt + completion: logprobs of the completion tokens, and the routing.
ForwardOutput Score(CausalLM& model, const std::vector<int32_t>& prompt, const std::vector<int32_t>& completion) {
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), completion.begin(), completion.end());
  auto out = model.Forward(TokenBatch::FromSequences({seq}), {});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  out->logprobs.erase(out->logprobs.begin(), out->logprobs.end() - completion.size());
  return std::move(out).value();
}

// Routing of a sample (and, when given, of its group's prompt) against `want`, the Forward over
// prompt + the sample's tokens: token t's experts are those of position P - 1 + t, in every MoE layer.
void ExpectRoutingOf(const ModelConfig& c, int64_t P, const SampleResult& s, const ForwardOutput& want,
                     const std::vector<int32_t>* prompt_routing) {
  const int64_t L = c.NumMoeLayers(), K = c.num_experts_per_tok;
  const int64_t T = static_cast<int64_t>(s.tokens.size()), N = want.routing.num_tokens;
  ASSERT_EQ(static_cast<int64_t>(s.routing.size()), T * L * K);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t k = 0; k < K; ++k) {
        EXPECT_EQ(s.routing[(t * L + l) * K + k], want.routing.experts[(l * N + P - 1 + t) * K + k])
            << "token " << t << " layer " << l;
      }
    }
  }
  if (prompt_routing == nullptr) return;
  ASSERT_EQ(static_cast<int64_t>(prompt_routing->size()), (P - 1) * L * K);
  for (int64_t p = 0; p + 1 < P; ++p) {
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t k = 0; k < K; ++k) {
        EXPECT_EQ((*prompt_routing)[(p * L + l) * K + k], want.routing.experts[(l * N + p) * K + k]);
      }
    }
  }
}

// Checks logprobs (and raw ones), greedy argmax and routing of a group against Forward.
void CheckGroup(CausalLM& ref, const GroupRequest& req, const GroupResult& got) {
  ASSERT_EQ(static_cast<int64_t>(got.samples.size()), req.n);
  const ModelConfig& c = ref.config();
  const int64_t L = c.NumMoeLayers();
  const int64_t P = static_cast<int64_t>(req.prompt.size());
  for (int64_t i = 0; i < req.n; ++i) {
    const SampleResult& s = got.samples[i];
    EXPECT_EQ(s.index, i);
    ASSERT_FALSE(s.tokens.empty());
    EXPECT_NE(s.finish_reason, FinishReason::kAborted);
    EXPECT_EQ(s.versions, (std::vector<VersionSpan>{{0, 0}}));
    const ForwardOutput want = Score(ref, req.prompt, s.tokens);
    ASSERT_EQ(s.logprobs.size(), s.tokens.size());
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      if (req.return_raw_logprobs) {
        EXPECT_NEAR(s.raw_logprobs[t], want.logprobs[t], 1e-5) << "token " << t;
      }
      if (req.sampling.temperature == 1.0 || req.sampling.temperature == 0.0) {
        EXPECT_NEAR(s.logprobs[t], want.logprobs[t], 1e-5) << "token " << t;
      }
    }
    if (!req.return_raw_logprobs) {
      EXPECT_TRUE(s.raw_logprobs.empty());
    }
    if (req.sampling.temperature == 0.0) {  // each greedy token is the argmax of Forward
      std::vector<int32_t> prefix = req.prompt;
      for (int32_t token : s.tokens) {
        std::vector<std::vector<int32_t>> alts;
        for (int32_t a = 0; a < c.vocab_size; ++a) {
          alts.push_back(prefix);
          alts.back().push_back(a);
        }
        auto out = ref.Forward(TokenBatch::FromSequences(alts), {});
        ASSERT_TRUE(out.ok());
        const int64_t per = static_cast<int64_t>(prefix.size());  // targets per sequence
        int32_t best = 0;
        for (int32_t a = 1; a < c.vocab_size; ++a) {
          if (out->logprobs[(a + 1) * per - 1] > out->logprobs[(best + 1) * per - 1]) best = a;
        }
        EXPECT_EQ(token, best);
        prefix.push_back(token);
      }
    }
    if (req.return_routing && L > 0) {
      ExpectRoutingOf(c, P, s, want, i == 0 ? &got.prompt_routing : nullptr);
    } else {
      EXPECT_TRUE(s.routing.empty());
    }
  }
}

std::vector<GroupRequest> MixedRequests() {
  std::vector<GroupRequest> rs(4);
  rs[0].prompt = Prompt(5, 1);  // a shared prefix: 3 samples fork one prefill
  rs[0].n = 3;
  rs[0].max_new_tokens = 10;
  rs[0].seed = 1;
  rs[0].return_raw_logprobs = true;
  rs[0].return_routing = true;
  rs[1].prompt = Prompt(9, 2);  // greedy, alone
  rs[1].sampling.temperature = 0.0;
  rs[1].max_new_tokens = 6;
  rs[2].prompt = Prompt(13, 3);  // filtered sampling: raw logprobs checked
  rs[2].n = 4;
  rs[2].sampling.temperature = 0.8;
  rs[2].sampling.top_k = 20;
  rs[2].max_new_tokens = 7;
  rs[2].seed = 5;
  rs[2].return_raw_logprobs = true;
  rs[3].prompt = Prompt(3, 4);  // greedy group
  rs[3].n = 2;
  rs[3].sampling.temperature = 0.0;
  rs[3].max_new_tokens = 5;
  rs[3].return_routing = true;
  return rs;
}

class EngineFamilyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineFamilyTest, MatchesForwardWithSharedPrefixesChunkedPrefillAndPreemption) {
  const std::string preset = GetParam() + "-nano";
  auto ref = MakeModel(preset, 5);
  const std::vector<GroupRequest> rs = MixedRequests();
  EngineOptions roomy;
  roomy.block_size = 4;
  auto engine = MakeEngine(preset, 5, roomy);
  auto got = engine->GenerateGroups(rs);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (size_t r = 0; r < rs.size(); ++r) {
    SCOPED_TRACE("request " + std::to_string(r));
    CheckGroup(*ref, rs[r], (*got)[r]);
  }
  EXPECT_EQ(engine->stats().preemptions, 0);
  EXPECT_EQ(engine->stats().free_blocks, engine->stats().total_blocks);
  EXPECT_NE((*got)[0].samples[0].tokens, (*got)[0].samples[1].tokens);  // own RNG per sample

  // A tiny pool (10 blocks of 4 positions) and 3-token prefill chunks: preemption and recompute.
  EngineOptions tight;
  tight.block_size = 4;
  tight.num_blocks = 10;
  tight.max_prefill_tokens_per_step = 3;
  auto small = MakeEngine(preset, 5, tight);
  auto again = small->GenerateGroups(rs);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_GT(small->stats().preemptions, 0);
  EXPECT_EQ(small->stats().free_blocks, 10);
  for (size_t r = 0; r < rs.size(); ++r) {
    SCOPED_TRACE("tight, request " + std::to_string(r));
    CheckGroup(*ref, rs[r], (*again)[r]);
    for (int64_t i = 0; i < rs[r].n; ++i) {
      EXPECT_EQ((*again)[r].samples[i].tokens, (*got)[r].samples[i].tokens);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, EngineFamilyTest,
                         ::testing::Values("llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3"),
                         [](const auto& info) { return info.param; });

// Collects the results of asynchronously submitted groups.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::map<int, GroupResult> done;
  GroupCallbacks For(int key) {
    GroupCallbacks cb;
    cb.on_done = [this, key](GroupResult r) {
      std::lock_guard<std::mutex> l(mu);
      done[key] = std::move(r);
      cv.notify_all();
    };
    return cb;
  }
  void WaitFor(size_t n) {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(60), [&] { return done.size() >= n; })) << "hung";
  }
};

TEST(EngineTest, ManyGroupsInAMinimalPoolAllFinishWithTheSameSamples) {
  std::vector<GroupRequest> rs;
  for (int k = 0; k < 10; ++k) {
    GroupRequest r;
    r.prompt = Prompt(3 + (k * 7) % 13, 40 + k);
    r.n = 1 + k % 4;
    r.max_new_tokens = 4 + (k * 5) % 11;
    r.seed = 200 + k;
    rs.push_back(r);
  }
  auto roomy = MakeEngine("qwen3-nano", 5);
  auto want = roomy->GenerateGroups(rs);
  ASSERT_TRUE(want.ok());
  // Pools where the largest request's single sample just fits, with several block sizes,
  // prefill budgets and batch limits.
  struct Setup {
    int64_t block_size, prefill, max_running;
  };
  for (const Setup& setup : {Setup{4, 5, 256}, Setup{2, 3, 2}, Setup{8, 64, 3}, Setup{1, 1, 256}}) {
    SCOPED_TRACE("block size " + std::to_string(setup.block_size));
    EngineOptions o;
    o.block_size = setup.block_size;
    o.max_prefill_tokens_per_step = setup.prefill;
    o.max_running_sequences = setup.max_running;
    const int64_t bs = setup.block_size;
    for (const GroupRequest& r : rs) {
      const int64_t p = static_cast<int64_t>(r.prompt.size());
      o.num_blocks = std::max(o.num_blocks, (p + bs - 1) / bs + (p + r.max_new_tokens - 1 + bs - 1) / bs - p / bs);
    }
    auto tight = MakeEngine("qwen3-nano", 5, o);
    Collector c;
    for (size_t k = 0; k < rs.size(); ++k) ASSERT_TRUE(tight->Submit(rs[k], c.For(static_cast<int>(k))).ok());
    c.WaitFor(rs.size());
    EXPECT_GT(tight->stats().preemptions, 0);
    for (size_t k = 0; k < rs.size(); ++k) {
      for (int64_t i = 0; i < rs[k].n; ++i) {
        EXPECT_EQ(c.done[static_cast<int>(k)].samples[i].tokens, (*want)[k].samples[i].tokens) << k << "/" << i;
      }
    }
    EXPECT_EQ(tight->stats().free_blocks, o.num_blocks);
  }
}

TEST(EngineTest, SameSeedSameSamplesAloneAndInABusyBatch) {
  GroupRequest r;
  r.prompt = Prompt(7, 9);
  r.n = 3;
  r.max_new_tokens = 16;
  r.seed = 42;
  r.return_raw_logprobs = true;
  auto alone_engine = MakeEngine("qwen3_moe-nano", 5);
  auto alone = alone_engine->GenerateGroups({r});
  ASSERT_TRUE(alone.ok());

  EngineOptions o;
  o.block_size = 4;
  o.num_blocks = 40;
  o.max_prefill_tokens_per_step = 8;
  auto engine = MakeEngine("qwen3_moe-nano", 5, o);
  Collector c;
  std::vector<GroupRequest> others;
  for (int k = 0; k < 6; ++k) {
    GroupRequest x;
    x.prompt = Prompt(2 + 5 * k, 20 + k);
    x.n = 1 + k % 3;
    x.max_new_tokens = 3 + 4 * k;
    x.seed = 100 + k;
    others.push_back(x);
  }
  ASSERT_TRUE(engine->Submit(others[0], c.For(10)).ok());
  ASSERT_TRUE(engine->Submit(others[1], c.For(11)).ok());
  GroupCallbacks cb = c.For(0);
  RolloutEngine* e = engine.get();
  // More requests arrive while r runs (submitted from its prefill callback, between steps).
  cb.on_prefill = [&, e](const GroupResult&) {
    for (int k = 2; k < 6; ++k) EXPECT_TRUE(e->Submit(others[k], c.For(10 + k)).ok());
  };
  ASSERT_TRUE(engine->Submit(r, cb).ok());
  c.WaitFor(7);
  const GroupResult& busy = c.done[0];
  for (int64_t i = 0; i < r.n; ++i) {
    EXPECT_EQ(busy.samples[i].tokens, (*alone)[0].samples[i].tokens) << "sample " << i;
    for (size_t t = 0; t < busy.samples[i].tokens.size(); ++t) {
      EXPECT_NEAR(busy.samples[i].raw_logprobs[t], (*alone)[0].samples[i].raw_logprobs[t], 1e-5);
    }
  }
  EXPECT_NE(busy.samples[0].tokens, busy.samples[1].tokens);
  EXPECT_EQ(engine->stats().free_blocks, 40);
}

// Sample i's RNG is seeded by (seed, i): sample 0 of a group of 1 is sample 0 of a group of 5.
// A stop token ends a sample right after it is drawn, with "stop".
TEST(EngineTest, SamplesDependOnlyOnSeedAndIndexAndStopTokensStop) {
  auto engine = MakeEngine("qwen3_moe-nano", 5);
  GroupRequest r;
  r.prompt = Prompt(4, 6);
  r.max_new_tokens = 8;
  r.seed = 99;
  r.n = 1;
  auto alone = engine->GenerateGroups({r});
  r.n = 5;
  auto many = engine->GenerateGroups({r});
  ASSERT_TRUE(alone.ok() && many.ok());
  EXPECT_EQ((*alone)[0].samples[0].tokens, (*many)[0].samples[0].tokens);
  for (const SampleResult& s : (*many)[0].samples) EXPECT_EQ(s.finish_reason, FinishReason::kLength);
  // Stop at the first token sample 2 drew: it ends right there.
  r.stop_tokens = {(*many)[0].samples[2].tokens[0]};
  auto stopped = engine->GenerateGroups({r});
  ASSERT_TRUE(stopped.ok());
  const SampleResult& s2 = (*stopped)[0].samples[2];
  EXPECT_EQ(s2.tokens, std::vector<int32_t>{r.stop_tokens[0]});
  EXPECT_EQ(s2.finish_reason, FinishReason::kStop);
  for (const SampleResult& s : (*stopped)[0].samples) {
    const std::vector<int32_t>& free_run = (*many)[0].samples[s.index].tokens;
    // Every sample is its free run up to and including its first stop token.
    size_t end = 0;
    while (end < free_run.size() && free_run[end] != r.stop_tokens[0]) ++end;
    const size_t want = std::min(end + 1, free_run.size());
    EXPECT_EQ(s.tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + want)) << s.index;
    EXPECT_EQ(s.finish_reason, end < free_run.size() ? FinishReason::kStop : FinishReason::kLength) << s.index;
  }
}

TEST(EngineTest, WeightSwitchMidGenerationIsRecordedPerToken) {
  const std::string preset = "deepseek_v3-nano";
  auto old_ref = MakeModel(preset, 5), new_ref = MakeModel(preset, 6);
  auto engine = MakeEngine(preset, 5);
  EXPECT_EQ(engine->weight_version(), 0u);
  // Checks before anything is staged.
  std::vector<Parameter> bad = new_ref->ReadParameters();
  bad.resize(1);
  bad[0].spec.name = "model.no_such.weight";
  EXPECT_EQ(engine->StageWeights(1, bad).code(), absl::StatusCode::kInvalidArgument);
  bad = {new_ref->ReadParameters()[0]};
  bad[0].value = Tensor::Zeros(DType::kF32, {3, 3});
  EXPECT_NE(engine->StageWeights(1, bad).message().find("shape"), std::string::npos);
  EXPECT_EQ(engine->StageWeights(0, new_ref->ReadParameters()).code(), absl::StatusCode::kInvalidArgument);

  GroupRequest r;
  r.prompt = Prompt(6, 3);
  r.n = 2;
  r.max_new_tokens = 12;
  r.seed = 3;
  r.return_raw_logprobs = true;
  Collector c;
  GroupCallbacks cb = c.For(0);
  RolloutEngine* e = engine.get();
  std::vector<Parameter> fresh = new_ref->ReadParameters();
  // Staged right after the first tokens were drawn: from the second token on, version 1.
  cb.on_prefill = [&, e](const GroupResult&) { EXPECT_TRUE(e->StageWeights(1, fresh).ok()); };
  ASSERT_TRUE(engine->Submit(r, cb).ok());
  c.WaitFor(1);
  EXPECT_EQ(engine->weight_version(), 1u);
  for (const SampleResult& s : c.done[0].samples) {
    EXPECT_EQ(s.finish_reason, FinishReason::kLength);
    ASSERT_EQ(s.tokens.size(), 12u);
    EXPECT_EQ(s.versions, (std::vector<VersionSpan>{{0, 0}, {1, 1}}));
    const ForwardOutput before = Score(*old_ref, r.prompt, s.tokens);
    const ForwardOutput after = Score(*new_ref, r.prompt, s.tokens);
    EXPECT_NEAR(s.logprobs[0], before.logprobs[0], 1e-5);
    for (size_t t = 1; t < s.tokens.size(); ++t) EXPECT_NEAR(s.logprobs[t], after.logprobs[t], 1e-5) << t;
  }
  // A later request runs entirely on the new weights.
  auto later = engine->GenerateGroups({r});
  ASSERT_TRUE(later.ok());
  EXPECT_EQ((*later)[0].samples[0].versions, (std::vector<VersionSpan>{{1, 0}}));
  EXPECT_EQ(engine->StageWeights(1, fresh).code(), absl::StatusCode::kInvalidArgument);  // stale
}

// A model serving FP8 block matrices takes an f32 update in its own format: after the switch it
// computes exactly what a model built from the new weights in FP8 computes.
TEST(EngineTest, WeightUpdateOfAnFp8ServingModel) {
  auto config = PresetConfig("qwen3_moe-nano");
  ASSERT_TRUE(config.ok());
  ServeOptions fp8;
  fp8.serve_format = WeightFormat::kFp8Block;
  auto serving = CausalLM::Create(*config, InitParameters(*config, 5, 0.1), BackendForTests(), fp8);
  auto want = CausalLM::Create(*config, InitParameters(*config, 6, 0.1), BackendForTests(), fp8);
  ASSERT_TRUE(serving.ok() && want.ok()) << serving.status().ToString();
  ASSERT_TRUE((*serving)->serves_quantized());
  auto engine = RolloutEngine::Create(std::move(serving).value(), {});
  ASSERT_TRUE(engine.ok());
  ASSERT_TRUE((*engine)->StageWeights(1, InitParameters(*config, 6, 0.1)).ok());
  (*engine)->WaitForStagedWeights();
  GroupRequest r;
  r.prompt = Prompt(5, 8);
  r.n = 2;
  r.max_new_tokens = 6;
  r.seed = 4;
  r.return_raw_logprobs = true;
  auto got = (*engine)->GenerateGroups({r});
  ASSERT_TRUE(got.ok());
  for (const SampleResult& s : (*got)[0].samples) {
    EXPECT_EQ(s.versions, (std::vector<VersionSpan>{{1, 0}}));
    const ForwardOutput w = Score(**want, r.prompt, s.tokens);
    for (size_t t = 0; t < s.tokens.size(); ++t) EXPECT_NEAR(s.raw_logprobs[t], w.logprobs[t], 1e-5) << t;
  }
}

TEST(EngineTest, CancelAbortsAndFreesBlocksAndDrainRefusesNewWork) {
  auto engine = MakeEngine("llama-nano", 5);
  const int64_t total = engine->stats().total_blocks;
  GroupRequest r;
  r.prompt = Prompt(10, 1);
  r.n = 4;
  r.max_new_tokens = 3000;
  std::mutex mu;
  std::condition_variable cv;
  bool prefilled = false;
  Collector c;
  GroupCallbacks cb = c.For(0);
  cb.on_prefill = [&](const GroupResult&) {
    std::lock_guard<std::mutex> l(mu);
    prefilled = true;
    cv.notify_all();
  };
  auto id = engine->Submit(r, cb);
  ASSERT_TRUE(id.ok());
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return prefilled; });
  }
  engine->Cancel(*id);
  c.WaitFor(1);
  for (const SampleResult& s : c.done[0].samples) {
    EXPECT_EQ(s.finish_reason, FinishReason::kAborted);
    EXPECT_LT(s.tokens.size(), 3000u);
  }
  EXPECT_EQ(engine->stats().free_blocks, total);
  // Drain with no grace aborts what runs; afterwards nothing is accepted.
  ASSERT_TRUE(engine->Submit(r, c.For(1)).ok());
  auto [completed, aborted] = engine->Drain(absl::ZeroDuration());
  EXPECT_EQ(completed + aborted, 1);
  EXPECT_EQ(engine->Submit(r, {}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine->stats().free_blocks, total);
}

// Device memory running out at any allocation of a step (FailCpuGuardedAllocation: the forward
// step's activations and uploads, the sampler's outputs) aborts that step's groups with a clear
// error on stderr; the engine frees their blocks and serves the next request normally.
TEST(EngineTest, AllocationFailureInAStepAbortsItsGroupsAndTheEngineGoesOn) {
  auto config = PresetConfig("qwen3_moe-nano");
  ASSERT_TRUE(config.ok());
  auto model = CausalLM::Create(*config, InitParameters(*config, 5, 0.1), CpuGuardedBackend());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto created = RolloutEngine::Create(std::move(model).value(), {});
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  RolloutEngine& engine = **created;
  const int64_t total = engine.stats().total_blocks;
  GroupRequest r;
  r.prompt = Prompt(6, 1);
  r.n = 2;
  r.max_new_tokens = 3;
  r.return_routing = true;
  int failed = 0;
  for (int64_t n = 1; n < 1000; ++n) {  // the n-th allocation after Submit fails
    Collector c;
    testing::internal::CaptureStderr();
    FailCpuGuardedAllocation(n);
    ASSERT_TRUE(engine.Submit(r, c.For(0)).ok());
    c.WaitFor(1);
    FailCpuGuardedAllocation(0);
    const std::string err = testing::internal::GetCapturedStderr();
    const bool aborted = c.done[0].samples[0].finish_reason == FinishReason::kAborted;
    EXPECT_EQ(aborted, err.find("out of memory in the forward step") != std::string::npos)
        << "allocation " << n << ": " << err;
    EXPECT_EQ(engine.stats().free_blocks, total) << "allocation " << n;
    if (!aborted) break;  // the whole request ran before its n-th allocation
    ++failed;
  }
  EXPECT_GT(failed, 100);  // every allocation of the prefill and decode steps was tried (283)
  Collector c;
  ASSERT_TRUE(engine.Submit(r, c.For(0)).ok());
  c.WaitFor(1);
  for (const SampleResult& s : c.done[0].samples) {
    EXPECT_NE(s.finish_reason, FinishReason::kAborted);
    EXPECT_EQ(s.tokens.size(), 3u);
  }
}

// qwen2-nano's greedy continuation of Prompt(4, 2) (24 tokens) as streamed text, which the
// stop-string and tool tests cut at two characters from its middle (a stop string, a marker).
struct GreedyText {
  GroupRequest request;            // greedy, max_new_tokens 24
  std::vector<int32_t> tokens;     // what the engine generated for it
  std::vector<std::string> texts;  // texts[i]: the streamed text after tokens[0..i]
  std::string middle;              // two characters from the middle of the whole text
  size_t completed_at = 0;         // the first token whose text contains `middle`
};

void RunGreedyText(RolloutEngine& engine, const tokenizer::Tokenizer& tok, GreedyText* out) {
  out->request.prompt = Prompt(4, 2);
  out->request.sampling.temperature = 0.0;
  out->request.max_new_tokens = 24;
  auto free_run = engine.GenerateGroups({out->request});
  ASSERT_TRUE(free_run.ok()) << free_run.status();
  out->tokens = (*free_run)[0].samples[0].tokens;
  tokenizer::StreamDecoder dec(tok);
  std::string text;
  for (int32_t t : out->tokens) {
    auto piece = dec.Push(t);
    ASSERT_TRUE(piece.ok()) << piece.status();
    text += *piece;
    out->texts.push_back(text);
  }
  ASSERT_GT(text.size(), 2u) << "the greedy text is too short for this test";
  out->middle = text.substr(text.size() / 2, 2);
  while (out->texts[out->completed_at].find(out->middle) == std::string::npos) ++out->completed_at;
}

TEST(EngineTest, StopStringsEndASampleOnTheTokenThatCompletesThem) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok());
  EngineOptions o;
  o.tokenizer = &*tok;
  auto engine = MakeEngine("qwen2-nano", 5, o);
  GreedyText free_run;  // a stop string that shows up in the middle of the free run
  ASSERT_NO_FATAL_FAILURE(RunGreedyText(*engine, *tok, &free_run));
  GroupRequest r = free_run.request;
  r.stop_strings = {free_run.middle};
  auto stopped = engine->GenerateGroups({r});
  ASSERT_TRUE(stopped.ok());
  const SampleResult& s = (*stopped)[0].samples[0];
  EXPECT_EQ(s.finish_reason, FinishReason::kStop);
  const std::vector<int32_t>& tokens = free_run.tokens;
  EXPECT_EQ(s.tokens, std::vector<int32_t>(tokens.begin(), tokens.begin() + free_run.completed_at + 1));
}

// A tool whose marker is `marker` and whose answer is always "{#7#}" (byte tokens 123 35 55 35
// 125 of the tiny tokenizer); it records the text it was called with.
class FixedTool : public Environment {
 public:
  explicit FixedTool(std::string marker) : marker_(std::move(marker)) {}
  const std::string& call_end() const override { return marker_; }
  absl::StatusOr<ToolResult> Call(const std::string& completion) override {
    calls.push_back(completion);
    ToolResult r;
    r.tool = "fixed";
    r.output = output;
    r.result_start = "{";
    r.result_end = "}";
    return r;
  }
  std::vector<std::string> calls;
  std::string output = "#7#";

 private:
  std::string marker_;
};

// Multi-turn tool use: the first turn is the free run up to the token completing the marker, the
// environment's tokens follow (logprob 0, masked), generation goes on, and every generated
// token's logprob equals one Forward over prompt + all tokens; each position is forwarded once
// (no re-prefill), also when the environment's tokens are fed in 2-token prefill chunks.
TEST(EngineTest, ToolCallsAppendEnvironmentTokensAndKeepTheCache) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok());
  EngineOptions o;
  o.tokenizer = &*tok;
  o.block_size = 4;
  auto engine = MakeEngine("qwen2-nano", 5, o);
  auto ref = MakeModel("qwen2-nano", 5);
  GreedyText free_run;
  ASSERT_NO_FATAL_FAILURE(RunGreedyText(*engine, *tok, &free_run));
  const std::vector<int32_t>& free_tokens = free_run.tokens;
  const std::vector<std::string>& texts = free_run.texts;
  const std::string& marker = free_run.middle;
  const size_t at = free_run.completed_at;
  GroupRequest r = free_run.request;
  r.return_raw_logprobs = true;

  auto env = std::make_shared<FixedTool>(marker);
  r.environment = env;
  r.max_tool_calls = 2;
  r.max_new_tokens = 40;
  const int64_t before = engine->stats().forwarded_tokens;
  auto got = engine->GenerateGroups({r});
  ASSERT_TRUE(got.ok()) << got.status();
  const SampleResult& s = (*got)[0].samples[0];
  const int64_t T = static_cast<int64_t>(s.tokens.size());
  ASSERT_FALSE(s.environment_spans.empty());
  ASSERT_FALSE(env->calls.empty());
  EXPECT_EQ(env->calls[0], texts[at]);
  const EnvironmentSpan& span = s.environment_spans[0];
  EXPECT_EQ(span.first_token, static_cast<int64_t>(at) + 1);
  EXPECT_EQ(span.num_tokens, 5);
  EXPECT_EQ(span.result.output, "#7#");
  EXPECT_EQ(std::vector<int32_t>(s.tokens.begin(), s.tokens.begin() + at + 1),
            std::vector<int32_t>(free_tokens.begin(), free_tokens.begin() + at + 1));
  EXPECT_EQ(std::vector<int32_t>(s.tokens.begin() + at + 1, s.tokens.begin() + at + 6),
            (std::vector<int32_t>{123, 35, 55, 35, 125}));
  ASSERT_GT(T, span.first_token + span.num_tokens) << "no second turn";
  EXPECT_LE(static_cast<int64_t>(s.environment_spans.size()), r.max_tool_calls);

  auto mask = GeneratedTokenMask(T, s.environment_spans);
  ASSERT_TRUE(mask.ok());
  ASSERT_EQ(mask->back(), 1) << "the last token is generated";
  const ForwardOutput want = Score(*ref, r.prompt, s.tokens);
  ASSERT_EQ(static_cast<int64_t>(s.raw_logprobs.size()), T);
  for (int64_t t = 0; t < T; ++t) {
    if ((*mask)[t]) {
      EXPECT_NEAR(s.raw_logprobs[t], want.logprobs[t], 1e-5) << "token " << t;
    } else {
      EXPECT_EQ(s.logprobs[t], 0.0f) << "token " << t;
      EXPECT_EQ(s.raw_logprobs[t], 0.0f) << "token " << t;
    }
  }
  // Prompt and every token but the last, each forwarded once.
  EXPECT_EQ(engine->stats().forwarded_tokens - before, static_cast<int64_t>(r.prompt.size()) + T - 1);

  // The environment's tokens fed in 2-token chunks: the same sample, the same forwarded count.
  EngineOptions chunked = o;
  chunked.max_prefill_tokens_per_step = 2;
  auto small = MakeEngine("qwen2-nano", 5, chunked);
  auto again = small->GenerateGroups({r});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)[0].samples[0].tokens, s.tokens);
  EXPECT_EQ((*again)[0].samples[0].environment_spans, s.environment_spans);
  EXPECT_EQ(small->stats().forwarded_tokens, static_cast<int64_t>(r.prompt.size()) + T - 1);

  // A result longer than max_tool_output_tokens is cut; bytes that are not UTF-8 become U+FFFD.
  r.max_tool_output_tokens = 2;
  env->output = "#7\xff";
  auto cut = engine->GenerateGroups({r});
  ASSERT_TRUE(cut.ok()) << cut.status();
  const SampleResult& c = (*cut)[0].samples[0];
  ASSERT_FALSE(c.environment_spans.empty());
  EXPECT_EQ(c.environment_spans[0].num_tokens, 2);
  EXPECT_EQ(c.environment_spans[0].result.output, "#7\xef\xbf\xbd");
  EXPECT_EQ(std::vector<int32_t>(c.tokens.begin() + at + 1, c.tokens.begin() + at + 3), (std::vector<int32_t>{123, 35}));
}

// Two characters from the middle of the greedy text of `r` on `engine` (a tool-call marker that
// the sample completes) and the index of the token completing them.
std::pair<std::string, int64_t> MarkerInGreedyText(RolloutEngine& engine, const tokenizer::Tokenizer& tok,
                                                   GroupRequest r) {
  r.environment = nullptr;
  r.return_routing = false;
  auto free_run = engine.GenerateGroups({r});
  EXPECT_TRUE(free_run.ok()) << free_run.status();
  if (!free_run.ok()) return {"", -1};
  tokenizer::StreamDecoder dec(tok);
  std::vector<std::string> texts;
  std::string text;
  for (int32_t t : (*free_run)[0].samples[0].tokens) {
    text += dec.Push(t).value_or("");
    texts.push_back(text);
  }
  EXPECT_GT(text.size(), 2u) << "the greedy text is too short for this test";
  if (text.size() <= 2) return {"", -1};
  const std::string marker = text.substr(text.size() / 2, 2);
  int64_t at = 0;
  while (texts[at].find(marker) == std::string::npos) ++at;
  return {marker, at};
}

// Routing of a multi-turn sample on MoE models: every token has the experts of the forward step
// that produced it, the environment's tokens included (their step is the prefill of the result),
// equal to one Forward over prompt + all tokens at every position; also with the result fed in
// 2-token chunks under a pool small enough to preempt, and when a result spends the token budget
// (the sample ends after the result is fed, each position still forwarded once).
TEST(EngineTest, ToolCallsOnMoeModelsReturnTheRoutingOfEveryToken) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok());
  for (const std::string preset : {"qwen3_moe-nano", "deepseek_v3-nano"}) {
    SCOPED_TRACE(preset);
    EngineOptions o;
    o.tokenizer = &*tok;
    o.block_size = 4;
    auto engine = MakeEngine(preset, 5, o);
    auto ref = MakeModel(preset, 5);
    GroupRequest r;
    r.prompt = Prompt(5, 2);
    r.sampling.temperature = 0.0;
    r.max_new_tokens = 24;
    r.return_raw_logprobs = true;
    r.return_routing = true;
    const auto [marker, at] = MarkerInGreedyText(*engine, *tok, r);
    ASSERT_GE(at, 0);
    r.environment = std::make_shared<FixedTool>(marker);
    r.max_tool_calls = 2;
    r.max_new_tokens = 40;
    const int64_t P = static_cast<int64_t>(r.prompt.size());

    // 2-token chunks, and a pool of the 12 blocks one sample needs, shared by three greedy samples
    // and a group of two that runs to 40 tokens (11 blocks each): preemption.
    EngineOptions tight = o;
    tight.max_prefill_tokens_per_step = 2;
    tight.num_blocks = 12;
    tight.tool_call_threads = 0;  // FixedTool records its calls unguarded
    auto small = MakeEngine(preset, 5, tight);
    GroupRequest three = r;
    three.n = 3;
    GroupRequest other;
    other.prompt = Prompt(5, 3);
    other.n = 2;
    other.seed = 3;
    other.max_new_tokens = 40;
    for (auto [e, req] : {std::pair{engine.get(), r}, std::pair{small.get(), three}}) {
      std::vector<GroupRequest> batch = {req};
      if (e == small.get()) batch.push_back(other);
      auto got = e->GenerateGroups(batch);
      ASSERT_TRUE(got.ok()) << got.status();
      for (const SampleResult& s : (*got)[0].samples) {
        SCOPED_TRACE("sample " + std::to_string(s.index));
        const ForwardOutput want = Score(*ref, req.prompt, s.tokens);
        ExpectRoutingOf(ref->config(), P, s, want, &(*got)[0].prompt_routing);
        auto mask = GeneratedTokenMask(static_cast<int64_t>(s.tokens.size()), s.environment_spans);
        ASSERT_TRUE(mask.ok());
        for (size_t t = 0; t < s.tokens.size(); ++t) {
          if ((*mask)[t]) {
            EXPECT_NEAR(s.raw_logprobs[t], want.logprobs[t], 1e-5) << "token " << t;
          }
        }
      }
      const SampleResult& s0 = (*got)[0].samples[0];
      ASSERT_FALSE(s0.environment_spans.empty());
      ASSERT_GT(static_cast<int64_t>(s0.tokens.size()), s0.environment_spans[0].first_token + 5) << "no second turn";
    }
    EXPECT_GT(small->stats().preemptions, 0);

    // The first result spends the budget after 2 of its 5 tokens: the sample ends (length) with
    // those tokens' routing, fed once.
    r.max_new_tokens = at + 3;
    const int64_t before = engine->stats().forwarded_tokens;
    auto cut = engine->GenerateGroups({r});
    ASSERT_TRUE(cut.ok()) << cut.status();
    const SampleResult& c = (*cut)[0].samples[0];
    EXPECT_EQ(c.finish_reason, FinishReason::kLength);
    ASSERT_EQ(static_cast<int64_t>(c.tokens.size()), at + 3);
    ASSERT_EQ(c.environment_spans.size(), 1u);
    EXPECT_EQ(c.environment_spans[0].num_tokens, 2);
    ExpectRoutingOf(ref->config(), P, c, Score(*ref, r.prompt, c.tokens), nullptr);
    EXPECT_EQ(engine->stats().forwarded_tokens - before, P + at + 3 - 1);
  }
}

// A tool that holds each call until `engine` has forwarded `wait_tokens` more positions (other
// samples decoding meanwhile) or 20 s have passed, and records how many it saw; then answers
// "{#7#}" as FixedTool does. Without an engine it answers at once.
class WaitingTool : public Environment {
 public:
  WaitingTool(std::string marker, const RolloutEngine* engine, int64_t wait_tokens)
      : marker_(std::move(marker)), engine_(engine), wait_tokens_(wait_tokens) {}
  const std::string& call_end() const override { return marker_; }
  absl::StatusOr<ToolResult> Call(const std::string&) override {
    if (engine_ != nullptr) {
      const int64_t start = engine_->stats().forwarded_tokens;
      const absl::Time deadline = absl::Now() + absl::Seconds(20);
      while (engine_->stats().forwarded_tokens - start < wait_tokens_ && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      absl::MutexLock l(&mu_);
      progressed_.push_back(engine_->stats().forwarded_tokens - start);
    }
    return ToolResult{.tool = "fixed", .output = "#7#", .result_start = "{", .result_end = "}"};
  }
  std::vector<int64_t> progressed() {
    absl::MutexLock l(&mu_);
    return progressed_;
  }

 private:
  std::string marker_;
  const RolloutEngine* engine_;
  int64_t wait_tokens_;
  absl::Mutex mu_;
  std::vector<int64_t> progressed_ ABSL_GUARDED_BY(mu_);
};

// Logprobs of the same tokens computed in batches of other compositions: a tool result rejoins its
// sample when the call returns, so which rows share a forward (and so the last bits of an f32
// sum) depends on timing outside batch-invariant mode; the engine's contract is 1e-5.
void ExpectLogprobsNear(const std::vector<float>& got, const std::vector<float>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t t = 0; t < got.size(); ++t) EXPECT_NEAR(got[t], want[t], 1e-5) << what << " token " << t;
}

// A tool call runs off the loop thread: while one sample waits for its call, the other samples
// keep decoding (the engine forwards positions during the call; with calls on the loop thread it
// could not forward any), and the samples equal those of the serial path (tool_call_threads 0).
TEST(EngineTest, ToolCallsDoNotStallOtherSamples) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok());
  EngineOptions o;
  o.tokenizer = &*tok;
  auto engine = MakeEngine("qwen2-nano", 5, o);
  GreedyText free_run;
  ASSERT_NO_FATAL_FAILURE(RunGreedyText(*engine, *tok, &free_run));
  GroupRequest caller = free_run.request;
  const std::string marker = free_run.middle;  // completed by token 24 at the latest
  caller.max_new_tokens = 40;
  caller.max_tool_calls = 1;
  GroupRequest other;
  other.prompt = Prompt(5, 3);
  other.n = 2;
  other.seed = 3;
  other.max_new_tokens = 200;  // still decoding when the caller's call (by its token 40) is pending

  auto waiting = std::make_shared<WaitingTool>(marker, engine.get(), 8);
  caller.environment = waiting;
  auto got = engine->GenerateGroups({caller, other});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(waiting->progressed().size(), 1u) << "no tool call";
  EXPECT_GE(waiting->progressed()[0], 8) << "the other samples did not decode while the call was pending";

  EngineOptions serial_options = o;
  serial_options.tool_call_threads = 0;
  auto serial = MakeEngine("qwen2-nano", 5, serial_options);
  caller.environment = std::make_shared<WaitingTool>(marker, nullptr, 0);
  auto want = serial->GenerateGroups({caller, other});
  ASSERT_TRUE(want.ok()) << want.status();
  for (size_t g = 0; g < 2; ++g) {
    for (size_t i = 0; i < (*want)[g].samples.size(); ++i) {
      const SampleResult& a = (*got)[g].samples[i];
      const SampleResult& b = (*want)[g].samples[i];
      EXPECT_EQ(a.tokens, b.tokens) << g << "/" << i;
      ExpectLogprobsNear(a.logprobs, b.logprobs, std::to_string(g) + "/" + std::to_string(i));
      EXPECT_EQ(a.environment_spans, b.environment_spans) << g << "/" << i;
      EXPECT_EQ(a.finish_reason, b.finish_reason) << g << "/" << i;
    }
  }
  EXPECT_EQ((*got)[0].samples[0].environment_spans.size(), 1u);
}

TEST(EngineTest, RejectsBadRequestsWithClearErrors) {
  EngineOptions o;
  o.block_size = 4;
  o.num_blocks = 8;
  auto engine = MakeEngine("llama-nano", 5, o);
  GroupRequest r;
  r.prompt = Prompt(4, 1);
  r.max_new_tokens = 8;
  EXPECT_TRUE(engine->Validate(r).ok());
  GroupRequest x = r;
  x.prompt.clear();
  EXPECT_EQ(engine->Validate(x).code(), absl::StatusCode::kInvalidArgument);
  x = r;
  x.prompt[1] = 256;
  EXPECT_NE(engine->Validate(x).message().find("vocabulary"), std::string::npos);
  x = r;
  x.n = 0;
  EXPECT_EQ(engine->Validate(x).code(), absl::StatusCode::kInvalidArgument);
  x = r;
  x.max_new_tokens = 40000;
  EXPECT_NE(engine->Validate(x).message().find("max_position_embeddings"), std::string::npos);
  x = r;
  x.max_new_tokens = 60;  // one sample needs more than the 8 blocks
  EXPECT_EQ(engine->Validate(x).code(), absl::StatusCode::kResourceExhausted);
  x = r;
  x.stop_strings = {"abc"};
  EXPECT_NE(engine->Validate(x).message().find("tokenizer"), std::string::npos);
  x = r;
  x.environment = std::shared_ptr<Environment>(MakeCalculatorEnvironment());
  EXPECT_NE(engine->Validate(x).message().find("environment (tool use) needs a tokenizer"), std::string::npos);
  x = r;
  x.sampling.top_p = 0.0;
  EXPECT_NE(engine->GenerateGroups({r, x}).status().message().find("request 1"), std::string::npos);
}

// Issue 19 (generate --kv-memory-mb 1e8): the KV pool is allocated whole at Create, so it is
// checked against the memory budget first, whoever asks for it.
TEST(EngineMemory, KvPoolBeyondTheBudgetIsRefusedAtCreate) {
  ::setenv("GRPO_MEMORY_LIMIT_MB", "64", 1);
  EngineOptions o;
  o.kv_memory_bytes = int64_t{100000000} << 20;
  auto engine = RolloutEngine::Create(MakeModel("qwen3-nano", 1), o);
  ::unsetenv("GRPO_MEMORY_LIMIT_MB");
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(engine.status().message().find("the rollout engine needs at least"), std::string::npos)
      << engine.status().ToString();
  // A block count or block size whose bytes overflow: refused, not wrapped around.
  EngineOptions blocks;
  blocks.num_blocks = int64_t{1} << 60;
  EXPECT_EQ(RolloutEngine::Create(MakeModel("qwen3-nano", 1), blocks).status().code(),
            absl::StatusCode::kResourceExhausted);
  EngineOptions block_size;
  block_size.block_size = int64_t{1} << 60;
  EXPECT_EQ(RolloutEngine::Create(MakeModel("qwen3-nano", 1), block_size).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace grpo
