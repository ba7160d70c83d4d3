// Prefill projections on Intel AMX (AMX-TILE + AMX-BF16): y[m, n] = x[m, k] · W^T for bf16 or
// FP8-block weights (HostWeights, model/ops/cpu/quantized_gemm.h), for the many-row x of a
// prompt. LinearWeightsQuantized runs it for more than kDecodeMaxRows rows of x where the CPU
// and the OS allow it (AmxInUse); the widen+sgemm path stays the reference.
//
// Rounding: x is carried as three bf16 parts, x = hi + mid + lo exactly (hi = bf16(x),
// mid = bf16(x - hi), lo = x - hi - mid, which fits in bf16: 24 significand bits in 3 x 8), so
// each product of a part with a weight is exact in f32 (bf16 weights as they are; an FP8 code
// as its exact value, not yet scaled). TDPBF16PS adds those products in f32 (round to nearest
// even), k in a fixed order; for FP8 each 128-column block's sum is then multiplied by its
// block's scale and added to y (bf16: the sums of blocks added). So no product is rounded
// before the sum (the reference rounds code · scale once per weight, then sums): the error is
// the f32 sum's alone, the reference's bound, |y - y_ref| <= 1e-6 · Σ|x·w| in the tests, not
// the reference's bits. AMX reads bf16 denormals as 0 and flushes denormal products and partial
// sums to 0: parts of x, products and sums below 2^-126 in magnitude (for FP8: of the codes'
// values, before the block scale) are lost, which matters only for outputs near 1e-38. The
// conversions are integer operations and VCVTNEPS2BF16, which ignore the MXCSR (the blocks'
// scale-and-add are f32 vector operations under the default MXCSR, which nothing here changes). Every output is
// summed by one thread in an order that depends on neither the thread count nor the other rows
// of x: a row's outputs do not depend on its batch. x with a non-finite value, with
// |x| >= 2^127, or, over FP8 weights, |x| >= 2^112 (the unscaled codes, up to 448, summed over
// 128 columns, must stay finite) is not split: LinearWeightsQuantized falls back to the
// reference, so NaN and inf propagate as they do there.
#ifndef GRPO_MODEL_OPS_CPU_AMX_GEMM_H_
#define GRPO_MODEL_OPS_CPU_AMX_GEMM_H_

#include <cstdint>
#include <span>

#include "model/ops/cpu/quantized_gemm.h"

namespace grpo::cpu {

// Whether this CPU has AMX-TILE, AMX-BF16 and AVX512_BF16 (with AVX-512 F/BW/VL/DQ/VBMI) and the OS
// granted this process the tile data state (asked once, with arch_prctl, at the first call).
bool AmxAvailable();

// For tests and benchmarks: whether LinearWeightsQuantized multiplies more than kDecodeMaxRows
// rows of x with AMX (the default where AmxAvailable(); the environment variable
// GRPO_PREFILL_KERNEL=sgemm turns it off, =amx asks for it). Returns whether it now does.
bool UseAmx(bool enable);
bool AmxInUse();

// How many LinearWeightsAmx calls have multiplied (for tests), and how many of them were
// LinearWeightsAmxSwiGlu's.
int64_t AmxCalls();
int64_t AmxSwiGluCalls();

// y[m, n] = x[m, k] · W^T for a bf16 or FP8 view, threads of ThreadPool::Default() splitting
// the output columns. Returns false, writing nothing, where AMX is not available or x has a
// value it does not take (non-finite, |x| >= 2^127, or |x| >= 2^112 over FP8 weights).
bool LinearWeightsAmx(const float* x, const HostWeights& w, float* y, int64_t m, int64_t k,
                      int64_t n);

// One output of LinearWeightsAmxSameInput: y[m, n] = x · W^T.
struct AmxOutput {
  const HostWeights* w;
  float* y;
  int64_t n;
};

// LinearWeightsAmx for several weights over the same x (a layer's q, k and v projections, an
// MLP's gate and up): x split once for all of them, each y the bits LinearWeightsAmx gives it
// alone. Returns false, writing no y, where LinearWeightsAmx would for any of them (the FP8
// limit on x applies to all if one weight is FP8).
bool LinearWeightsAmxSameInput(const float* x, std::span<const AmxOutput> outs, int64_t m,
                               int64_t k);

// An MLP's down projection over its activation: y[m, n] = SwiGlu(gate, up) · W^T, gate and up
// [m, k], SwiGlu as in vector_kernels.h. y is the bits of SwiGlu into a buffer and then
// LinearWeightsAmx, but the activation is never stored: each row is made in a per-thread row
// buffer as x is split for the tiles. Returns false where LinearWeightsAmx would for that
// activation; y may then be partly written (a long prompt's later rows are checked only as they
// are made).
bool LinearWeightsAmxSwiGlu(const float* gate, const float* up, const HostWeights& w, float* y,
                            int64_t m, int64_t k, int64_t n);

}  // namespace grpo::cpu

#endif  // GRPO_MODEL_OPS_CPU_AMX_GEMM_H_
