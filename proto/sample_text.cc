#include "proto/sample_text.h"

namespace grpo {

const char* FinishReasonText(grpo::v1::FinishReason reason) {
  switch (reason) {
    case grpo::v1::FINISH_REASON_STOP: return "stop";
    case grpo::v1::FINISH_REASON_LENGTH: return "length";
    case grpo::v1::FINISH_REASON_ABORTED: return "aborted";
    default: return "unspecified";
  }
}

}  // namespace grpo
