// CPU kernels for projections over bf16 / FP8-block weights (WeightView, model/ops/backend.h, read as HostWeights),
// used by the CPU backend's LinearWeights and WidenWeightRows.
//
// Widening is exact: bf16 -> f32 is a shift; an FP8 E4M3 code widens to its exact f32 value
// (bit-identical to core/float_formats.h's Fp8E4M3ToF32 for every non-NaN code) and is
// multiplied by its block's scale once, so a widened tile holds exactly the values
// DequantizeFp8Block (core/fp8_block.h) gives. LinearWeights widens a tile of output rows into
// a per-thread scratch of at most about 2 MiB and runs one single-threaded sgemm per tile (an
// sgemv per row of x when x has at most 4 rows);
// tiles run in parallel on ThreadPool::Default().
#ifndef GRPO_MODEL_OPS_CPU_QUANTIZED_GEMM_H_
#define GRPO_MODEL_OPS_CPU_QUANTIZED_GEMM_H_

#include <cstdint>

#include "model/ops/backend.h"

namespace grpo::cpu {

// The widening loops use AVX2 where the CPU has it, else SSE4.1 (the build's baseline). For
// tests: turn AVX2 off or back on (when available); returns whether it is now used.
bool UseAvx2(bool enable);

// A WeightView (model/ops/backend.h) as the CPU backend's kernels read it: the same fields over
// host addresses (the CPU backend's device memory is host memory).
struct HostWeights {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  const float* scales = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t row_begin = 0;
  const float* f32() const { return static_cast<const float*>(data) + row_begin * cols; }
  HostWeights Rows(int64_t begin, int64_t count) const {
    HostWeights v = *this;
    v.row_begin = row_begin + begin;
    v.rows = count;
    return v;
  }
};

// Rows [row_begin, row_end) of the view, widened to f32 (row-major, w.cols per row).
void WidenWeightRows(const HostWeights& w, int64_t row_begin, int64_t row_end, float* out);

// Output rows of W widened per tile for an x of m rows and k columns.
int64_t LinearWeightsTileRows(int64_t m, int64_t k);

// y[m,n] = x[m,k] · W^T (+ b) for a bf16 or FP8 view (f32 views: use Linear).
void LinearWeightsQuantized(const float* x, const HostWeights& w, const float* b, float* y,
                            int64_t m, int64_t k, int64_t n);

}  // namespace grpo::cpu

#endif  // GRPO_MODEL_OPS_CPU_QUANTIZED_GEMM_H_
