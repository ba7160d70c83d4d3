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
#include <span>

#include "model/ops/backend.h"

namespace grpo::cpu {

// The widening loops use AVX-512 where the CPU has it (FP8: with AVX512_VBMI, see UseFp8Vbmi),
// else AVX2, else SSE4.1 (the build's baseline); the same bits each way. For tests: turn AVX2
// (and with it AVX-512), or AVX-512 alone, off or back on (when available); each returns
// whether it is now used.
bool UseAvx2(bool enable);
bool UseAvx512Widening(bool enable);

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

// Output rows of W [n, k] widened per tile for an x of m rows, with `threads` threads: small
// L2-sized tiles for decode-like m (at most 128 rows); for prefill-like m as few tiles per thread
// as a 4 MiB f32 scratch allows (sgemm packs x again for every tile).
int64_t LinearWeightsTileRows(int64_t m, int64_t k, int64_t n, int threads);

// The kernels LinearWeightsQuantized uses for at most kDecodeMaxRows rows of x (decoding; a
// GRPO group decodes together). Each streams the bf16/FP8 weights once per call and widens them
// in registers, 4 output rows at a time against blocks of up to 5 (AVX-512) or 2 (AVX2) rows of
// x; more rows of x re-read those weight rows from L1/L2, not from memory. The next group of
// rows is prefetched into L2. bf16: one full-width load gives two f32 vectors (even columns by
// a shift, odd ones by a mask) against x read with its columns permuted to match.
//  - kWidenThenSgemm: the reference, no register kernel (also every x with more rows).
//  - kAvx2 (x86-64-v3 + F16C), kAvx512 (F/BW/VL/DQ): weights widened exactly, f32 FMA. bf16 by
//    a shift (the values WidenWeightRows gives): differs from the reference only in the order
//    of the f32 sums. FP8: each code's exact value (via IEEE half and vcvtph2ps) times x
//    multiplied by its block's scale, where the reference multiplies x by code times scale: one
//    f32 rounding per product either way (of x * scale here, of code * scale there), so the
//    same error bound, but not the same bits; x * scale is computed once per span of weight
//    rows that share a block row of scales instead of once per weight. The same operands and order
//    for every row of x whatever the other rows (several rows: the codes widened once into an
//    L1 buffer of the same values), so a row's outputs do not depend on its batch.
//    Where the CPU also has AVX512_VBMI, kAvx512 widens FP8 codes with vpermb, a shift and a
//    mask into f32 values times 2^-120 (against x times 2^120 · scale), in registers or, for
//    more than 5 rows of x, into that L1 buffer: less work on the FMA units per code, and the
//    same bits as the vcvtph2ps kernel, which it falls back to for x or scales so large or
//    small that the two would differ (UseFp8Vbmi).
//  - kAvx512Bf16: bf16 weights with vdpbf16ps; x carried as two bf16 (hi = bf16(x),
//    lo = bf16(x - hi), |x - hi - lo| <= 2^-18 |x|), each product exact in f32, denormal
//    products flushed. So y differs from the reference by at most about
//    2^-18 sum_k |x_k w_jk| beyond reassociation. FP8 weights use the kAvx512 kernel.
// At load the most capable exact kernel the CPU supports (__builtin_cpu_supports) is chosen:
// kAvx512, else kAvx2, else kWidenThenSgemm. kAvx512Bf16 is not the default: with x split in two
// it issues as many multiply instructions as widening does (no faster on the AMD EPYC of
// docs/PERFORMANCE.md) and adds the error above. The environment variable GRPO_DECODE_KERNEL
// (widen+sgemm, avx2, avx512, avx512bf16) picks another one the CPU supports. Results are
// deterministic for a kernel: whatever the thread count, each output is one thread's sum in a
// fixed order.
enum class DecodeKernel { kWidenThenSgemm, kAvx2, kAvx512, kAvx512Bf16 };
// For tests and benchmarks: whether kAvx512's FP8 register kernel, and WidenWeightRows' FP8
// widening, use AVX512_VBMI (the default where the CPU has them); returns whether they now do.
bool UseFp8Vbmi(bool enable);
// Whether that kernel multiplies x [m, k] by the FP8 view's rows [0, n) under kAvx512 now: it is
// on, m is at most kDecodeMaxRows, and x and the block scales are in the range where its bits
// are the half kernel's (else the half kernel runs).
bool Fp8VbmiApplies(const float* x, const HostWeights& w, int64_t m, int64_t k, int64_t n);
// How many LinearWeightsQuantized calls have run that kernel (for tests).
int64_t Fp8VbmiCalls();
inline constexpr int64_t kDecodeMaxRows = 64;
const char* DecodeKernelName(DecodeKernel kernel);
// For tests and benchmarks: use `kernel` if this CPU can run it (each kernel implies the ones
// before it); returns false, changing nothing, if it cannot. Not thread-safe against running
// kernels.
bool SetDecodeKernel(DecodeKernel kernel);
DecodeKernel CurrentDecodeKernel();

// y[m,n] = x[m,k] · W^T (+ b) for a bf16 or FP8 view (f32 views: use Linear). Threads split
// the output rows (ThreadPool::Default()). At most kDecodeMaxRows rows of x: the decode kernel
// above; more: AMX tiles where AmxInUse() (amx_gemm.h), else widen+sgemm.
void LinearWeightsQuantized(const float* x, const HostWeights& w, const float* b, float* y,
                            int64_t m, int64_t k, int64_t n);

// One output of LinearWeightsQuantizedSameInput: y[m, n] = x · W^T (+ b; b may be null).
struct QuantizedOutput {
  const HostWeights* w;
  const float* b;
  float* y;
  int64_t n;
};
// LinearWeightsQuantized for several bf16 or FP8 weights over the same x (a layer's q, k and v,
// an MLP's gate and up): each output the bits LinearWeightsQuantized gives it alone. Where AMX
// multiplies (more than kDecodeMaxRows rows), x is split for it once for all of them.
void LinearWeightsQuantizedSameInput(const float* x, std::span<const QuantizedOutput> outs,
                                     int64_t m, int64_t k);

// LinearWeightsQuantized over SwiGlu(gate, up) (gate and up [m, k]; an MLP's down projection)
// where AMX multiplies: the activation made a row at a time as x is split, never stored
// (LinearWeightsAmxSwiGlu), y the bits of SwiGlu then LinearWeightsQuantized. Returns false
// where that path does not apply (at most kDecodeMaxRows rows, AMX not in use, an activation
// the tiles do not take); y is then unspecified, and the caller runs SwiGlu and
// LinearWeightsQuantized.
bool LinearWeightsQuantizedSwiGluAmx(const float* gate, const float* up, const HostWeights& w,
                                     const float* b, float* y, int64_t m, int64_t k, int64_t n);

}  // namespace grpo::cpu

#endif  // GRPO_MODEL_OPS_CPU_QUANTIZED_GEMM_H_
