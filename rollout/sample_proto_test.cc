#include "rollout/sample_proto.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tokenizer/test_tokenizer.h"

namespace grpo {
namespace {

constexpr FinishReason kReasons[] = {FinishReason::kStop, FinishReason::kLength, FinishReason::kAborted};

TEST(SampleProtoTest, FinishReasonRoundTripsAndHasOneText) {
  for (FinishReason r : kReasons) {
    auto back = FinishReasonFromProto(FinishReasonToProto(r));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, r);
  }
  EXPECT_EQ(FinishReasonToProto(FinishReason::kStop), grpo::v1::FINISH_REASON_STOP);
  EXPECT_EQ(FinishReasonToProto(FinishReason::kLength), grpo::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(FinishReasonToProto(FinishReason::kAborted), grpo::v1::FINISH_REASON_ABORTED);
  // The text users' files show (`grpo generate`, `grpo inspect --json`).
  EXPECT_EQ(std::string(FinishReasonName(FinishReason::kStop)), "stop");
  EXPECT_EQ(std::string(FinishReasonName(FinishReason::kLength)), "length");
  EXPECT_EQ(std::string(FinishReasonName(FinishReason::kAborted)), "aborted");
  auto unspecified = FinishReasonFromProto(grpo::v1::FINISH_REASON_UNSPECIFIED);
  ASSERT_FALSE(unspecified.ok());
  EXPECT_EQ(unspecified.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(FinishReasonFromProto(static_cast<grpo::v1::FinishReason>(7)).ok());
}

SampleResult MakeSample() {
  SampleResult s;
  s.index = 3;
  s.tokens = {5, 9, 2};
  s.logprobs = {-0.5f, -1.25f, -0.125f};
  s.raw_logprobs = {-0.75f, -1.5f, -0.25f};
  s.finish_reason = FinishReason::kStop;
  s.versions = {{7, 0}, {8, 2}};
  s.routing = {0, 1, 2, 3, 1, 0};  // T = 3, L = 1, K = 2
  return s;
}

TEST(SampleProtoTest, SampleRoundTrip) {
  const SampleResult s = MakeSample();
  GroupRequest req;
  req.seed = 42;
  req.return_raw_logprobs = true;
  req.return_routing = true;
  GroupResult group;
  group.num_moe_layers = 1;
  group.top_k = 2;
  grpo::v1::Sample p;
  SampleResultToProto(s, req, group, &p);
  EXPECT_EQ(p.sample_index(), 3u);
  EXPECT_EQ(p.seed(), 42u);
  EXPECT_EQ(p.finish_reason(), grpo::v1::FINISH_REASON_STOP);
  EXPECT_EQ(p.routing().num_moe_layers(), 1u);
  EXPECT_EQ(p.routing().top_k(), 2u);
  EXPECT_TRUE(p.text().empty());  // the caller's
  auto back = SampleResultFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->index, s.index);
  EXPECT_EQ(back->tokens, s.tokens);
  EXPECT_EQ(back->logprobs, s.logprobs);
  EXPECT_EQ(back->raw_logprobs, s.raw_logprobs);
  EXPECT_EQ(back->finish_reason, s.finish_reason);
  EXPECT_EQ(back->versions, s.versions);
  EXPECT_EQ(back->routing, s.routing);
}

TEST(SampleProtoTest, WhatTheRequestLeftOut) {
  const SampleResult s = MakeSample();
  GroupRequest req;
  req.sampling.temperature = 0.0;  // greedy: logprobs are 0
  GroupResult group;
  group.num_moe_layers = 1;
  group.top_k = 2;
  grpo::v1::Sample p;
  SampleResultToProto(s, req, group, &p);
  EXPECT_EQ(std::vector<float>(p.logprobs().begin(), p.logprobs().end()), std::vector<float>(3, 0.0f));
  EXPECT_EQ(p.raw_logprobs_size(), 0);
  EXPECT_FALSE(p.has_routing());
  req.return_routing = true;
  group.num_moe_layers = 0;  // a dense model
  grpo::v1::Sample dense;
  SampleResultToProto(s, req, group, &dense);
  EXPECT_FALSE(dense.has_routing());
}

TEST(SampleProtoTest, UnspecifiedFinishReasonIsAnError) {
  grpo::v1::Sample p;
  p.set_sample_index(4);
  p.add_token_ids(1);
  p.add_logprobs(-1.0f);
  auto r = SampleResultFromProto(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("sample 4"), std::string::npos) << r.status();
}

// A multi-turn sample: its environment spans survive the wire form, the mask derived from them
// is the same, turn texts decode each turn on its own, and spans beyond the tokens are refused.
TEST(SampleProtoTest, EnvironmentSpansRoundTripWithTurnTexts) {
  auto tok = tokenizer::testing::LoadTinyTokenizer();
  ASSERT_TRUE(tok.ok());
  SampleResult s;
  s.index = 1;
  s.finish_reason = FinishReason::kStop;
  s.versions = {{0, 0}};
  // "1+2</c>" generated, "{3}" appended by the tool, "=3" generated.
  for (char c : std::string("1+2</c>{3}=3")) s.tokens.push_back(static_cast<unsigned char>(c));
  s.logprobs.assign(s.tokens.size(), -0.5f);
  for (int i = 7; i < 10; ++i) s.logprobs[i] = 0.0f;
  s.environment_spans = {{7, 3, {.tool = "calculator", .call = "1+2</c>", .arguments = R"({"expression":"1+2"})",
                                 .output = "3", .result_start = "{", .result_end = "}"}}};
  // Routing of every token, the tool's included (L = 1, K = 2), travels as a single turn's does.
  for (int32_t t = 0; t < 12; ++t) s.routing.insert(s.routing.end(), {t % 4, (t + 1) % 4});
  GroupRequest req;
  req.seed = 4;
  req.return_routing = true;
  GroupResult moe;
  moe.num_moe_layers = 1;
  moe.top_k = 2;
  grpo::v1::Sample wire;
  SampleResultToProto(s, req, moe, &wire);
  ASSERT_TRUE(SetTurnTexts(*tok, {}, s, &wire).ok());
  EXPECT_EQ(std::vector<std::string>(wire.turn_texts().begin(), wire.turn_texts().end()),
            (std::vector<std::string>{"1+2</c>", "{3}", "=3"}));
  grpo::v1::Sample parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire.SerializeAsString()));
  auto back = SampleResultFromProto(parsed);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tokens, s.tokens);
  EXPECT_EQ(back->environment_spans, s.environment_spans);
  EXPECT_EQ(back->routing, s.routing);
  EXPECT_EQ(*GeneratedTokenMask(static_cast<int64_t>(back->tokens.size()), back->environment_spans),
            (std::vector<uint8_t>{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1}));

  grpo::v1::Sample single;
  SampleResult one = s;
  one.environment_spans.clear();
  ASSERT_TRUE(SetTurnTexts(*tok, {}, one, &single).ok());
  EXPECT_EQ(single.turn_texts_size(), 0);

  parsed.mutable_environment_spans(0)->set_num_tokens(9);  // beyond the 12 tokens
  auto bad = SampleResultFromProto(parsed);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace grpo
