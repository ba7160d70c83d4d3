#include "rollout/sample_proto.h"

#include <string>

#include "proto/sample_text.h"

namespace grpo {

grpo::v1::FinishReason FinishReasonToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return grpo::v1::FINISH_REASON_STOP;
    case FinishReason::kLength: return grpo::v1::FINISH_REASON_LENGTH;
    case FinishReason::kAborted: return grpo::v1::FINISH_REASON_ABORTED;
  }
  return grpo::v1::FINISH_REASON_UNSPECIFIED;
}

absl::StatusOr<FinishReason> FinishReasonFromProto(grpo::v1::FinishReason reason) {
  switch (reason) {
    case grpo::v1::FINISH_REASON_STOP: return FinishReason::kStop;
    case grpo::v1::FINISH_REASON_LENGTH: return FinishReason::kLength;
    case grpo::v1::FINISH_REASON_ABORTED: return FinishReason::kAborted;
    default: break;
  }
  return absl::DataLossError("sample has finish_reason " + std::to_string(static_cast<int>(reason)) +
                             " (unspecified or unknown)");
}

const char* FinishReasonName(FinishReason reason) { return FinishReasonText(FinishReasonToProto(reason)); }

void RoutingToProto(const std::vector<int32_t>& experts, int64_t num_moe_layers, int64_t top_k,
                    grpo::v1::TokenRouting* out) {
  out->set_num_moe_layers(static_cast<uint32_t>(num_moe_layers));
  out->set_top_k(static_cast<uint32_t>(top_k));
  for (int32_t e : experts) out->add_experts(static_cast<uint32_t>(e));
}

void SampleResultToProto(const SampleResult& s, const GroupRequest& request, const GroupResult& group,
                         grpo::v1::Sample* out) {
  out->set_sample_index(static_cast<uint32_t>(s.index));
  out->mutable_token_ids()->Add(s.tokens.begin(), s.tokens.end());
  const bool greedy = request.sampling.temperature == 0.0;
  for (float lp : s.logprobs) out->add_logprobs(greedy ? 0.0f : lp);
  if (request.return_raw_logprobs) out->mutable_raw_logprobs()->Add(s.raw_logprobs.begin(), s.raw_logprobs.end());
  out->set_finish_reason(FinishReasonToProto(s.finish_reason));
  for (const VersionSpan& v : s.versions) {
    grpo::v1::WeightVersionSpan* span = out->add_weight_versions();
    span->set_version(v.version);
    span->set_first_token(static_cast<uint32_t>(v.first_token));
  }
  if (request.return_routing && group.num_moe_layers > 0) {
    RoutingToProto(s.routing, group.num_moe_layers, group.top_k, out->mutable_routing());
  }
  out->set_seed(request.seed);
  for (const EnvironmentSpan& e : s.environment_spans) EnvironmentSpanToProto(e, out->add_environment_spans());
}

void EnvironmentSpanToProto(const EnvironmentSpan& e, grpo::v1::EnvironmentSpan* out) {
  out->set_first_token(static_cast<uint32_t>(e.first_token));
  out->set_num_tokens(static_cast<uint32_t>(e.num_tokens));
  out->set_tool(e.result.tool);
  out->set_call(e.result.call);
  out->set_arguments(e.result.arguments);
  out->set_output(e.result.output);
  out->set_result_start(e.result.result_start);
  out->set_result_end(e.result.result_end);
}

EnvironmentSpan EnvironmentSpanFromProto(const grpo::v1::EnvironmentSpan& e) {
  EnvironmentSpan out;
  out.first_token = e.first_token();
  out.num_tokens = e.num_tokens();
  out.result = {.tool = e.tool(), .call = e.call(), .arguments = e.arguments(), .output = e.output(),
                .result_start = e.result_start(), .result_end = e.result_end()};
  return out;
}

absl::Status SetTurnTexts(const tokenizer::Tokenizer& tok, const tokenizer::DecodeOptions& options,
                          const SampleResult& s, grpo::v1::Sample* out) {
  out->clear_turn_texts();
  if (s.environment_spans.empty()) return absl::OkStatus();
  const std::span<const int32_t> ids(s.tokens);
  int64_t at = 0;
  for (const EnvironmentSpan& e : s.environment_spans) {
    GRPO_ASSIGN_OR_RETURN(std::string model_turn, tok.Decode(ids.subspan(at, e.first_token - at), options));
    GRPO_ASSIGN_OR_RETURN(std::string env_turn, tok.Decode(ids.subspan(e.first_token, e.num_tokens), options));
    out->add_turn_texts(std::move(model_turn));
    out->add_turn_texts(std::move(env_turn));
    at = e.first_token + e.num_tokens;
  }
  GRPO_ASSIGN_OR_RETURN(std::string last, tok.Decode(ids.subspan(at), options));
  out->add_turn_texts(std::move(last));
  return absl::OkStatus();
}

absl::StatusOr<SampleResult> SampleResultFromProto(const grpo::v1::Sample& s) {
  SampleResult out;
  auto reason = FinishReasonFromProto(s.finish_reason());
  if (!reason.ok()) return grpo::WithContext(reason.status(), "sample " + std::to_string(s.sample_index()));
  out.finish_reason = *reason;
  out.index = s.sample_index();
  out.tokens.assign(s.token_ids().begin(), s.token_ids().end());
  out.logprobs.assign(s.logprobs().begin(), s.logprobs().end());
  out.raw_logprobs.assign(s.raw_logprobs().begin(), s.raw_logprobs().end());
  for (const auto& v : s.weight_versions()) out.versions.push_back({v.version(), v.first_token()});
  for (uint32_t e : s.routing().experts()) out.routing.push_back(static_cast<int32_t>(e));
  for (const auto& e : s.environment_spans()) out.environment_spans.push_back(EnvironmentSpanFromProto(e));
  if (absl::Status spans = GeneratedTokenMask(static_cast<int64_t>(out.tokens.size()), out.environment_spans).status();
      !spans.ok()) {
    return absl::DataLossError("sample " + std::to_string(s.sample_index()) + ": " + std::string(spans.message()));
  }
  return out;
}

}  // namespace grpo
