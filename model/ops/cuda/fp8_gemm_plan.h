// How the CUDA backend lays out one DeepSeek-style block-scaled FP8 GEMM, y[m,n] = x[m,k] . W^T
// with W [n, k] FP8 E4M3 in 128x128 blocks (core/fp8_block.h), for cuBLASLt's Hopper block
// scaling (cuBLAS's "128-element 1D and 128x128 2D block scaling"), or why it cannot: plain
// arithmetic on shapes and addresses, so it is tested without a GPU.
//
// cuBLASLt computes column-major y^T [n x m] = op(A) B, A = W's codes (CUBLAS_OP_T: the "TN" form
// FP8 needs on Hopper), B = x's codes quantized per 1x128 block of each row. Its constraints
// (cuBLAS 13, cublasLtMatmul and "Scaling factors layouts"): compute capability 9.0; 16-byte
// aligned pointers and dimensions; A's scales (CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F)
// K-major with a row pitch of ceil(k/128) rounded up to a multiple of 4, B's
// (..._VEC128_32F) N-major [ceil(k/128), rows]; scale pointers 16-byte aligned; M and N
// multiples of 4. The backend asks in addition for k a multiple of 128 (whole activation blocks)
// and a weight view starting at a 128-row boundary (its scale rows are then whole).
#ifndef GRPO_MODEL_OPS_CUDA_FP8_GEMM_PLAN_H_
#define GRPO_MODEL_OPS_CUDA_FP8_GEMM_PLAN_H_

#include <cstdint>

#include "core/status.h"

namespace grpo::cuda {

struct Fp8GemmRequest {
  int compute_major = 0, compute_minor = 0;  // the device's
  int64_t m = 0, k = 0, n = 0;               // y [m, n] = x [m, k] . W [n, k]^T
  int64_t weight_row_begin = 0;              // the view's first row in the whole matrix
  uintptr_t weight_codes = 0;                // address of the view's first code
  uintptr_t weight_scales = 0;               // address of the whole matrix's scales (0: none)
  uintptr_t output = 0;                      // address of y
};

struct Fp8GemmPlan {
  int64_t rows = 0;              // m padded to a multiple of 16: x's quantized rows
  int64_t k_blocks = 0;          // k / 128: scales per activation row and per weight scale row
  int64_t scale_pitch = 0;       // k_blocks rounded up to a multiple of 4: cuBLASLt's weight pitch
  int64_t n_blocks = 0;          // weight scale rows the view covers: ceil(n / 128)
  int64_t scale_offset = 0;      // floats from the weight's scales to the view's first scale row
  bool repack_scales = false;    // that row pitch is not scale_pitch, or not 16-byte aligned
  bool direct_output = false;    // cuBLASLt writes y (else a [rows, n] scratch, m rows copied)
};

// The plan, or FailedPrecondition saying which condition the request misses. m, k, n > 0.
absl::StatusOr<Fp8GemmPlan> PlanFp8BlockGemm(const Fp8GemmRequest& r);

}  // namespace grpo::cuda

#endif  // GRPO_MODEL_OPS_CUDA_FP8_GEMM_PLAN_H_
