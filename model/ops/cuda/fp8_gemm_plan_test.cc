// The FP8 block-scaled GEMM's layout decisions, on the host (no GPU needed).
#include "model/ops/cuda/fp8_gemm_plan.h"

#include <gtest/gtest.h>

#include <string>

namespace grpo::cuda {
namespace {

// A request that fits: Hopper, DeepSeek-V3's q_b_proj-like shape, aligned addresses.
Fp8GemmRequest Fitting() {
  Fp8GemmRequest r;
  r.compute_major = 9;
  r.m = 16;
  r.k = 1536;
  r.n = 3072;
  r.weight_codes = 0x10000;
  r.weight_scales = 0x20000;
  r.output = 0x30000;
  return r;
}

std::string WhyNot(const Fp8GemmRequest& r) {
  absl::StatusOr<Fp8GemmPlan> plan = PlanFp8BlockGemm(r);
  EXPECT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  return std::string(plan.status().message());
}

TEST(Fp8GemmPlan, AFittingShapeReadsScalesAndWritesOutputInPlace) {
  absl::StatusOr<Fp8GemmPlan> plan = PlanFp8BlockGemm(Fitting());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->rows, 16);
  EXPECT_EQ(plan->k_blocks, 12);
  EXPECT_EQ(plan->scale_pitch, 12);
  EXPECT_EQ(plan->n_blocks, 24);
  EXPECT_EQ(plan->scale_offset, 0);
  EXPECT_FALSE(plan->repack_scales);
  EXPECT_TRUE(plan->direct_output);
}

TEST(Fp8GemmPlan, PadsRowsAndScalePitchAndFindsTheViewsScaleRow) {
  Fp8GemmRequest r = Fitting();
  r.m = 5;           // decode: padded to 16 rows, output through a scratch
  r.k = 384;         // 3 blocks: the weight's scale rows are copied into a pitch of 4
  r.n = 272;         // 3 scale rows, the last partial
  r.weight_row_begin = 256;
  absl::StatusOr<Fp8GemmPlan> plan = PlanFp8BlockGemm(r);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->rows, 16);
  EXPECT_EQ(plan->k_blocks, 3);
  EXPECT_EQ(plan->scale_pitch, 4);
  EXPECT_EQ(plan->n_blocks, 3);
  EXPECT_EQ(plan->scale_offset, 2 * 3);
  EXPECT_TRUE(plan->repack_scales);
  EXPECT_FALSE(plan->direct_output);
}

TEST(Fp8GemmPlan, UnalignedScaleRowOrOutputIsCopied) {
  Fp8GemmRequest r = Fitting();
  r.k = 512;                  // 4 blocks: the pitch already fits
  r.weight_row_begin = 128;   // the view's first scale row is 16 bytes in: aligned
  absl::StatusOr<Fp8GemmPlan> plan = PlanFp8BlockGemm(r);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->repack_scales);
  r.weight_scales = 0x20004;  // scales 4-byte aligned only
  r.output = 0x30008;         // y 8-byte aligned only
  plan = PlanFp8BlockGemm(r);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->repack_scales);
  EXPECT_FALSE(plan->direct_output);
}

TEST(Fp8GemmPlan, SaysWhichConditionAShapeMisses) {
  Fp8GemmRequest r = Fitting();
  r.compute_major = 8;
  r.compute_minor = 9;
  EXPECT_NE(WhyNot(r).find("compute capability 9.0, this device has 8.9"), std::string::npos);
  r = Fitting();
  r.k = 300;
  EXPECT_NE(WhyNot(r).find("k=300 is not a multiple of 128"), std::string::npos);
  r = Fitting();
  r.n = 200;
  EXPECT_NE(WhyNot(r).find("n=200 is not a multiple of 16"), std::string::npos);
  r = Fitting();
  r.weight_row_begin = 512 + 64;  // MLA's kv_a_proj_with_mqa second slice, e.g.
  EXPECT_NE(WhyNot(r).find("starts at row 576, inside a 128-row scale block"), std::string::npos);
  r = Fitting();
  r.weight_scales = 0;
  EXPECT_NE(WhyNot(r).find("no block scales"), std::string::npos);
  r = Fitting();
  r.weight_codes = 0x10008;
  EXPECT_NE(WhyNot(r).find("codes are not 16-byte aligned"), std::string::npos);
  r = Fitting();
  r.m = 0;
  EXPECT_NE(WhyNot(r).find("empty product"), std::string::npos);
}

}  // namespace
}  // namespace grpo::cuda
