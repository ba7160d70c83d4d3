// libFuzzer target: the request path of RolloutService.Generate. Not a Bazel target:
// tools/fuzz_smoke.sh builds it with clang, ASan and UBSan and runs it under its memory limits.
//
// The input is a serialized grpo.v1.GenerateRequest, taken as the server takes it: converted
// and checked by GroupRequestFromProto (with a tokenizer, so prompt_text and stop strings are
// live) and then by the engine's Validate, for a random qwen3_moe-nano model (vocabulary widened
// to cover the test tokenizer's ids) with a small KV pool. A request that passes both is
// generated, cut down to at most 2 samples of at most 3 new tokens (smaller than what was
// validated, so still valid; generating the full request would only cost time), and its samples
// are converted to their wire form as the server sends them.
// Properties: no crash or sanitizer report; a refused request is InvalidArgument (or
// ResourceExhausted from Validate, the KV pool) with a message; an accepted one respects the
// server's limits (prompt tokens, group size, positions); generation succeeds with one sample per
// index, each with 1..max_new_tokens tokens in the vocabulary and finite logprobs, a stop or
// length finish, and the routing sizes the wire form declares.
// With GRPO_FUZZ_SEED_DIR set, a few well-formed requests are written there first (the corpus).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include "model/presets.h"
#include "rollout/engine.h"
#include "rollout/sample_proto.h"
#include "rollout/service.h"
#include "tokenizer/test_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "rollout_request_fuzz: property failed: %s\n", #cond); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

struct Server {
  std::unique_ptr<grpo::tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<grpo::RolloutEngine> engine;
  grpo::RolloutServeOptions options;
};

const Server& S() {
  static const Server* s = [] {
    auto* s = new Server;
    auto tok = grpo::tokenizer::testing::LoadTinyTokenizer();
    if (!tok.ok()) std::abort();
    s->tokenizer = std::make_unique<grpo::tokenizer::Tokenizer>(std::move(*tok));
    auto config = grpo::PresetConfig("qwen3_moe-nano");
    if (!config.ok()) std::abort();
    config->vocab_size = 320;  // the test tokenizer's ids go up to 303
    auto model = grpo::CausalLM::Create(*config, grpo::InitParameters(*config, 5, 0.1), grpo::CpuBackend());
    if (!model.ok()) std::abort();
    grpo::EngineOptions eo;
    eo.num_blocks = 24;  // 384 positions at 16 per block: ResourceExhausted is reachable
    eo.tokenizer = s->tokenizer.get();
    auto engine = grpo::RolloutEngine::Create(std::move(*model), eo);
    if (!engine.ok()) std::abort();
    s->engine = std::move(*engine);
    s->options.max_prompt_tokens = 64;
    s->options.max_group_size = 16;  // prompt_text limit: 64 x the longest token's bytes
    return s;
  }();
  return *s;
}

void WriteSeeds(const std::string& dir) {
  std::vector<grpo::v1::GenerateRequest> seeds(4);
  for (int32_t t : {5, 9, 200, 31, 64, 7}) seeds[0].add_prompt_token_ids(t);
  seeds[0].set_group_size(3);
  seeds[0].mutable_sampling()->set_max_new_tokens(4);
  seeds[0].mutable_sampling()->set_seed(11);
  seeds[0].mutable_sampling()->set_return_routing(true);
  seeds[0].mutable_sampling()->set_return_raw_logprobs(true);
  seeds[1].set_prompt_text("hello world <x> <|im_end|>");
  seeds[1].set_group_size(2);
  seeds[1].mutable_sampling()->set_max_new_tokens(3);
  seeds[1].mutable_sampling()->set_temperature(0.7);
  seeds[1].mutable_sampling()->set_top_p(0.9);
  seeds[1].mutable_sampling()->set_top_k(20);
  seeds[1].mutable_sampling()->add_stop_strings("ll");
  seeds[1].mutable_sampling()->add_stop_token_ids(300);
  seeds[2].add_prompt_token_ids(1);
  seeds[2].set_group_size(1);
  seeds[2].mutable_sampling()->set_max_new_tokens(2);
  seeds[2].mutable_sampling()->set_temperature(0);
  seeds[2].mutable_sampling()->set_min_p(0.05);
  seeds[3].set_request_id("r");
  seeds[3].set_prompt_text("aaaa");
  seeds[3].set_group_size(16);
  seeds[3].mutable_sampling()->set_max_new_tokens(300);
  int n = 0;
  for (const auto& s : seeds) {
    std::ofstream(dir + "/seed" + std::to_string(n++), std::ios::binary) << s.SerializeAsString();
  }
}

bool Refusal(const absl::Status& s) {
  return (s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kResourceExhausted) &&
         !s.message().empty();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // not a line per invalid UTF-8 string refused
  if (const char* dir = std::getenv("GRPO_FUZZ_SEED_DIR")) WriteSeeds(dir);
  S();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  grpo::v1::GenerateRequest p;
  if (!p.ParseFromArray(data, static_cast<int>(size))) return 0;
  const Server& s = S();
  const grpo::ModelConfig& config = s.engine->config();

  absl::StatusOr<grpo::GroupRequest> r =
      grpo::GroupRequestFromProto(p, config, s.tokenizer.get(), s.options, /*drawn_seed=*/3);
  if (!r.ok()) {
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument && !r.status().message().empty());
    return 0;
  }
  CHECK(!r->prompt.empty() && static_cast<int64_t>(r->prompt.size()) <= s.options.max_prompt_tokens);
  CHECK(r->n >= 1 && r->n <= s.options.max_group_size);
  CHECK(r->max_new_tokens >= 1);
  if (const absl::Status v = s.engine->Validate(*r); !v.ok()) {
    CHECK(Refusal(v));
    return 0;
  }
  CHECK(static_cast<int64_t>(r->prompt.size()) + r->max_new_tokens <= config.max_position_embeddings);

  grpo::GroupRequest run = *r;
  run.n = std::min<int64_t>(run.n, 2);
  run.max_new_tokens = std::min<int64_t>(run.max_new_tokens, 3);
  CHECK(s.engine->Validate(run).ok());
  absl::StatusOr<std::vector<grpo::GroupResult>> out = s.engine->GenerateGroups({run});
  CHECK(out.ok() && out->size() == 1);
  const grpo::GroupResult& g = (*out)[0];
  CHECK(static_cast<int64_t>(g.samples.size()) == run.n);
  for (int64_t i = 0; i < run.n; ++i) {
    const grpo::SampleResult& sample = g.samples[i];
    CHECK(sample.index == i);
    CHECK(!sample.tokens.empty() && static_cast<int64_t>(sample.tokens.size()) <= run.max_new_tokens);
    CHECK(sample.logprobs.size() == sample.tokens.size());
    for (int32_t t : sample.tokens) CHECK(t >= 0 && t < config.vocab_size);
    for (float l : sample.logprobs) CHECK(std::isfinite(l) && l <= 1e-5f);
    CHECK(sample.finish_reason == grpo::FinishReason::kStop || sample.finish_reason == grpo::FinishReason::kLength);
    grpo::v1::Sample wire;
    grpo::SampleResultToProto(sample, run, g, &wire);
    CHECK(wire.token_ids_size() == static_cast<int>(sample.tokens.size()));
    if (wire.has_routing()) {
      const auto& rt = wire.routing();
      CHECK(rt.experts_size() == static_cast<int>(sample.tokens.size() * rt.num_moe_layers() * rt.top_k()));
    }
    (void)s.tokenizer->Decode(sample.tokens);  // Sample.text; ids past the tokenizer's are an error
  }
  return 0;
}
