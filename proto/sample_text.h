// The text form of grpo.v1 FinishReason, as JSON Lines files show it (`grpo generate` samples,
// `grpo inspect --json`): "stop", "length", "aborted". One table for every writer, so the
// rollout engine's reasons (rollout/sample_proto.h FinishReasonName) and stored samples read the
// same.
#ifndef GRPO_PROTO_SAMPLE_TEXT_H_
#define GRPO_PROTO_SAMPLE_TEXT_H_

#include "proto/sample.pb.h"

namespace grpo {

// "stop", "length", "aborted"; "unspecified" for FINISH_REASON_UNSPECIFIED or a value this
// build does not know.
const char* FinishReasonText(grpo::v1::FinishReason reason);

}  // namespace grpo

#endif  // GRPO_PROTO_SAMPLE_TEXT_H_
