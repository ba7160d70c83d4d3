// The engine's samples in their wire form (proto/sample.proto): the one conversion between
// SampleResult / FinishReason and grpo.v1.Sample / grpo.v1.FinishReason, used by the rollout
// server (rollout/service.cc), the trainer that stores samples (learner/trainer_rl.cc) and the
// client of remote rollout servers (learner/remote_rollout.cc).
#ifndef GRPO_ROLLOUT_SAMPLE_PROTO_H_
#define GRPO_ROLLOUT_SAMPLE_PROTO_H_

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "proto/sample.pb.h"
#include "rollout/engine.h"
#include "tokenizer/tokenizer.h"

namespace grpo {

grpo::v1::FinishReason FinishReasonToProto(FinishReason reason);
// DataLoss for FINISH_REASON_UNSPECIFIED or an unknown value (the proto says readers treat it
// as an error).
absl::StatusOr<FinishReason> FinishReasonFromProto(grpo::v1::FinishReason reason);
// The text in JSON Lines files: "stop", "length", "aborted" (proto/sample_text.h).
const char* FinishReasonName(FinishReason reason);

// Routing arrays (rollout/engine.h: token-major, L = num_moe_layers, K = top_k) in wire form.
void RoutingToProto(const std::vector<int32_t>& experts, int64_t num_moe_layers, int64_t top_k,
                    grpo::v1::TokenRouting* out);

// `sample` of a group generated for `request`: sample_index, token_ids, logprobs (0 for greedy
// requests, as the proto says), raw_logprobs (when the request asked for them), finish_reason,
// weight_versions, routing (when the request asked for it and `group` has MoE layers; its
// num_moe_layers and top_k are the group's), seed (the request's) and environment_spans.
// Sample.text and turn_texts are the caller's to set: they depend on a tokenizer and its decoding
// options (SetTurnTexts).
void SampleResultToProto(const SampleResult& sample, const GroupRequest& request, const GroupResult& group,
                         grpo::v1::Sample* out);

void EnvironmentSpanToProto(const EnvironmentSpan& span, grpo::v1::EnvironmentSpan* out);
EnvironmentSpan EnvironmentSpanFromProto(const grpo::v1::EnvironmentSpan& span);

// Sample.turn_texts of a multi-turn sample: each turn's tokens decoded on their own with
// `options` (model, environment, ..., model); cleared for a single-turn sample.
absl::Status SetTurnTexts(const tokenizer::Tokenizer& tok, const tokenizer::DecodeOptions& options,
                          const SampleResult& sample, grpo::v1::Sample* out);

// The SampleResult a remote engine sent. Errors: an unspecified finish_reason, environment spans
// out of order or beyond the tokens (DataLoss).
absl::StatusOr<SampleResult> SampleResultFromProto(const grpo::v1::Sample& sample);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_SAMPLE_PROTO_H_
