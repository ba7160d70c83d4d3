#include "model/ops/cuda/fp8_gemm_plan.h"

#include <string>

namespace grpo::cuda {
namespace {

constexpr int64_t kBlock = 128;

int64_t RoundUp(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

absl::Status Unfit(const std::string& why) { return absl::FailedPreconditionError(why); }

absl::Status CheckFits(const Fp8GemmRequest& r) {
  if (r.compute_major != 9) {
    return Unfit("cuBLASLt's 1x128 / 128x128 block scaling needs compute capability 9.0, this device has " +
                 std::to_string(r.compute_major) + "." + std::to_string(r.compute_minor));
  }
  if (r.m <= 0 || r.k <= 0 || r.n <= 0) {
    return Unfit("empty product m=" + std::to_string(r.m) + " k=" + std::to_string(r.k) +
                 " n=" + std::to_string(r.n));
  }
  if (r.k % kBlock != 0) return Unfit("k=" + std::to_string(r.k) + " is not a multiple of 128");
  if (r.n % 16 != 0) return Unfit("n=" + std::to_string(r.n) + " is not a multiple of 16");
  if (r.weight_row_begin % kBlock != 0) {
    return Unfit("the view starts at row " + std::to_string(r.weight_row_begin) +
                 ", inside a 128-row scale block");
  }
  if (r.weight_scales == 0) return Unfit("the weight has no block scales");
  if (r.weight_codes % 16 != 0) return Unfit("the FP8 codes are not 16-byte aligned");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Fp8GemmPlan> PlanFp8BlockGemm(const Fp8GemmRequest& r) {
  GRPO_RETURN_IF_ERROR(CheckFits(r));
  Fp8GemmPlan p;
  p.rows = RoundUp(r.m, 16);
  p.k_blocks = r.k / kBlock;
  p.scale_pitch = RoundUp(p.k_blocks, 4);
  p.n_blocks = (r.n + kBlock - 1) / kBlock;
  p.scale_offset = r.weight_row_begin / kBlock * p.k_blocks;
  const uintptr_t first_scale = r.weight_scales + static_cast<uintptr_t>(p.scale_offset) * sizeof(float);
  p.repack_scales = p.scale_pitch != p.k_blocks || first_scale % 16 != 0;
  p.direct_output = p.rows == r.m && r.output % 16 == 0;
  return p;
}

}  // namespace grpo::cuda
