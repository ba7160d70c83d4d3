#include "proto/sample_text.h"

#include <gtest/gtest.h>

#include <string>

namespace grpo {
namespace {

TEST(SampleTextTest, FinishReasonText) {
  EXPECT_EQ(std::string(FinishReasonText(grpo::v1::FINISH_REASON_STOP)), "stop");
  EXPECT_EQ(std::string(FinishReasonText(grpo::v1::FINISH_REASON_LENGTH)), "length");
  EXPECT_EQ(std::string(FinishReasonText(grpo::v1::FINISH_REASON_ABORTED)), "aborted");
  EXPECT_EQ(std::string(FinishReasonText(grpo::v1::FINISH_REASON_UNSPECIFIED)), "unspecified");
  EXPECT_EQ(std::string(FinishReasonText(static_cast<grpo::v1::FinishReason>(99))), "unspecified");
}

}  // namespace
}  // namespace grpo
