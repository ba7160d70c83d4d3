#include "model/ops/cpu/quantized_gemm.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "core/thread_pool.h"
#include "model/ops/cpu/amx_gemm.h"

namespace grpo::cpu {
namespace {

constexpr int64_t kBlock = 128;  // FP8 block size (core/fp8_block.h's kFp8BlockSize)
// Up to this many rows of x, tiles are multiplied with sgemv per row instead of one sgemm.
constexpr int64_t kGemvRows = 4;

#if defined(__x86_64__)
// AVX2 versions of the loops below (the build targets x86-64-v2, so AVX2 is chosen at run time;
// the arithmetic is the same, so the results are too).
bool g_use_avx2 = __builtin_cpu_supports("avx2");

__attribute__((target("avx2"))) int64_t WidenBf16Avx2(const unsigned char* src, int64_t n,
                                                      float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
  return i;
}

__attribute__((target("avx2"))) int64_t WidenFp8Avx2(const uint8_t* q, int64_t n, float scale,
                                                     float* out) {
  const __m256 two120 = _mm256_set1_ps(0x1p120f), s = _mm256_set1_ps(scale);
  const __m256i sign = _mm256_set1_epi32(0x80), mag = _mm256_set1_epi32(0x7F);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    const __m256i bits = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(b, sign), 24),
                                         _mm256_slli_epi32(_mm256_and_si256(b, mag), 20));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_castsi256_ps(bits), two120), s));
  }
  return i;
}
#endif

// bf16 bits -> f32: the bf16 bits are the f32's upper half. `src` may be unaligned.
void WidenBf16(const unsigned char* src, int64_t n, float* out) {
  int64_t i = 0;
#if defined(__x86_64__)
  if (g_use_avx2) i = WidenBf16Avx2(src, n, out);
#endif
#if defined(__SSE4_1__)
  const __m128i zero = _mm_setzero_si128();
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm_storeu_ps(out + i, _mm_castsi128_ps(_mm_unpacklo_epi16(zero, h)));
    _mm_storeu_ps(out + i + 4, _mm_castsi128_ps(_mm_unpackhi_epi16(zero, h)));
  }
#endif
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    out[i] = std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
  }
}

// E4M3 code -> exact f32 value times `scale`. The code's exponent and mantissa bits are placed
// at the f32 positions (exponent field at bits 23..26, mantissa at 20..22); that f32 is the
// code's value times 2^-120 (both normal and subnormal codes: e4m3 subnormals land on f32
// subnormals), so one multiplication by 2^120 gives the exact value, then one by the scale.
// Branch-free, 16 codes at a time with SSE4.1. NaN codes (0x7F/0xFF) do not come out as NaN:
// CausalLM rejects weights holding them.
inline float Fp8Bits(uint32_t b) {
  return std::bit_cast<float>(((b & 0x80u) << 24) | ((b & 0x7Fu) << 20));
}

// The exact value of each E4M3 code (Fp8Bits times 2^120, NaN codes included), from a table
// built without subnormal arithmetic: the scalar tails use it, so their values do not depend on
// the calling thread's DAZ bit (which a library may set on some threads of the pool: a
// subnormal Fp8Bits would read as 0 there).
struct Fp8ValueTable {
  float value[256];
  Fp8ValueTable() {
    for (int b = 0; b < 256; ++b) {
      const int e = (b >> 3) & 15, m = b & 7;
      const float magnitude = e == 0 ? std::ldexp(static_cast<float>(m), -9)
                                     : std::ldexp(static_cast<float>(8 + m), e - 10);
      value[b] = (b & 0x80) != 0 ? -magnitude : magnitude;
    }
  }
};
const Fp8ValueTable kFp8Values;
inline float Fp8Value(uint8_t b) { return kFp8Values.value[b]; }

// Whether the calling thread's MXCSR treats denormal inputs as zero (DAZ): the SIMD FP8 widenings
// form a subnormal code's value as a denormal f32 (Fp8Bits) and must not run then.
inline bool DenormalsAreZero() {
#if defined(__x86_64__)
  return (_mm_getcsr() & 0x0040) != 0;
#else
  return false;
#endif
}

// n codes times `scale`. Under DAZ only the table's exact values (the scalar loop).
void WidenFp8(const uint8_t* q, int64_t n, float scale, float* out) {
  int64_t i = 0;
  if (DenormalsAreZero()) {
    for (; i < n; ++i) out[i] = Fp8Value(q[i]) * scale;
    return;
  }
#if defined(__x86_64__)
  if (g_use_avx2) i = WidenFp8Avx2(q, n, scale, out);
#endif
#if defined(__SSE4_1__)
  const __m128 two120 = _mm_set1_ps(0x1p120f), s = _mm_set1_ps(scale);
  const __m128i sign = _mm_set1_epi32(0x80), mag = _mm_set1_epi32(0x7F);
  auto widen4 = [&](__m128i bytes, float* dst) {
    const __m128i b = _mm_cvtepu8_epi32(bytes);
    const __m128i bits = _mm_or_si128(_mm_slli_epi32(_mm_and_si128(b, sign), 24),
                                      _mm_slli_epi32(_mm_and_si128(b, mag), 20));
    _mm_storeu_ps(dst, _mm_mul_ps(_mm_mul_ps(_mm_castsi128_ps(bits), two120), s));
  };
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i));
    widen4(v, out + i);
    widen4(_mm_srli_si128(v, 4), out + i + 4);
    widen4(_mm_srli_si128(v, 8), out + i + 8);
    widen4(_mm_srli_si128(v, 12), out + i + 12);
  }
#endif
  for (; i < n; ++i) out[i] = Fp8Value(q[i]) * scale;
}


// ---- Decode kernels: reduced-precision weights widened in registers ----
//
// Each weight vector is loaded once per block of x rows, widened in registers and multiplied
// into f32 accumulators with FMA. bf16: a shift or a mask, exactly the f32 values
// WidenWeightRows gives. FP8: the E4M3 code placed into an IEEE half whose value is the code's
// times 2^-8 (the code sign-extended to 16 bits, shifted left by 7, bit 14 cleared), converted
// with vcvtph2ps: exact, and not multiplied by the block scale. x is multiplied by 2^8 · scale
// instead (ScaleXForFp8: one rounding per product, where the reference rounds code · scale
// once), once per span of weight rows, which all have the same scales (a span never crosses a
// 128-row block). A step covers 2 vectors of columns:
// for bf16 one full-width load holds them, its even columns in the low halves of the 32-bit
// lanes and its odd ones in the high halves, so x is read with its columns permuted to match
// (PermuteXForBf16). y[i][j] is the sum over lanes (one accumulator per (i, j)), reduced in a
// fixed order, plus the scalar tail: the same for whatever row blocking or thread split.

#if defined(__x86_64__)

#define GRPO_INLINE __attribute__((always_inline)) inline

// The helpers the kernels call (CacheAligned, RowsOf, BlockRowEnd) are GRPO_INLINE: compiled
// inside each instruction set's region, not as baseline functions called from it. Called, a
// baseline function's legacy SSE instructions (pxor, movups) ran with the upper halves of the
// vector registers dirty from the AVX-512 kernel; on the Intel Xeon of docs/PERFORMANCE.md that
// stall took 10% of FP8 batch-1 decoding (AMD's cores do not pay it).

// n floats of `buffer` from a 64-byte boundary (whole cache lines for the kernels' loads).
GRPO_INLINE float* CacheAligned(std::vector<float>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) < n + 16) buffer.resize(n + 16);
  const auto at = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<float*>((at + 63) & ~uintptr_t{63});
}

// GCC 12's AVX-512 headers initialize "undefined" vectors from themselves, which
// -Wmaybe-uninitialized reports at every inlined use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

constexpr int kRowsPerGroup = 4;  // weight rows (outputs) multiplied together
// Into L2, not L1: on the AMD EPYC of docs/PERFORMANCE.md, prefetching the next group into L1
// (T0) held one thread's bf16 kernel to about 11 GB/s, into L2 (T1) it reads 15-20 GB/s.
constexpr auto kPrefetchHint = _MM_HINT_T1;

// kRowsPerGroup consecutive weight rows of a bf16 or FP8 view.
struct WeightRows {
  const unsigned char* row[kRowsPerGroup];
  const float* scales;  // FP8: the block row of scales of every row of the group
  // Bytes from row r to the same row of the next group (the next rows in memory), for software
  // prefetching: a group's rows are short streams (k elements) the hardware prefetcher would
  // only start to follow as they end. (Two groups ahead was no faster for FP8.)
  int64_t prefetch_bytes;
};

// Where a kernel's weight rows come from: bf16 or FP8 (widened in registers), or f32 rows
// already widened.
enum class Source { kBf16, kFp8, kF32 };

// One bf16 weight element widened (for the tails).
GRPO_INLINE float Bf16At(const WeightRows& w, int r, int64_t c) {
  uint16_t h;
  std::memcpy(&h, w.row[r] + 2 * c, 2);
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

// Rows [first, first + count) of the view (count <= kRowsPerGroup; the last one repeated to fill
// the group). FP8: the rows must lie in one 128-row block (BlockRowEnd).
GRPO_INLINE WeightRows RowsOf(const HostWeights& w, int64_t first, int count) {
  WeightRows rows{};
  const bool fp8 = w.dtype == DType::kF8E4M3;
  const int64_t bcols = (w.cols + kBlock - 1) / kBlock;
  for (int r = 0; r < kRowsPerGroup; ++r) {
    const int64_t g = w.row_begin + first + std::min(r, count - 1);
    rows.row[r] = static_cast<const unsigned char*>(w.data) + g * w.cols * (fp8 ? 1 : 2);
  }
  rows.scales = fp8 ? w.scales + ((w.row_begin + first) / kBlock) * bcols : nullptr;
  rows.prefetch_bytes = count * w.cols * (fp8 ? 1 : 2);
  return rows;
}

// The first row of the view after row c that starts a new 128-row block of scales.
GRPO_INLINE int64_t BlockRowEnd(const HostWeights& w, int64_t c) {
  return ((w.row_begin + c) / kBlock + 1) * kBlock - w.row_begin;
}

// The size of the block of x rows starting at row i when m rows are cut into as few blocks of
// at most `most` rows as possible, of sizes as even as possible (larger ones first).
GRPO_INLINE int XBlockRows(int64_t m, int64_t i, int most) {
  const int64_t blocks = (m + most - 1) / most;
  const int64_t base = m / blocks, extra = m % blocks;
  return static_cast<int>(i < extra * (base + 1) ? base + 1 : base);
}

// x as the bf16 kernels read it: in each run of 2 * lanes columns, the even columns, then the
// odd ones (the order Bf16Pair splits a load of 2 * lanes bf16 into); columns after the last
// whole run in order.
void PermuteXForBf16(const float* x, int64_t m, int64_t k, int lanes, float* out) {
  const int64_t run = 2 * lanes, whole = k / run * run;
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * k;
    float* oi = out + i * k;
    for (int64_t d = 0; d < whole; d += run) {
      for (int l = 0; l < lanes; ++l) {
        oi[d + l] = xi[d + 2 * l];
        oi[d + lanes + l] = xi[d + 2 * l + 1];
      }
    }
    std::copy(xi + whole, xi + k, oi + whole);
  }
}

// AVX2 + FMA + F16C (x86-64-v3).
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
struct Isa {
  using V = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kMaxXRows = 2;  // 8 accumulators + 4 weights + x in 16 registers
  static constexpr float kFp8XFactor = 256.0f;  // Fp8Codes' values are the codes' times 2^-8
  GRPO_INLINE static V Zero() { return _mm256_setzero_ps(); }
  GRPO_INLINE static V LoadX(const float* p) { return _mm256_loadu_ps(p); }
  GRPO_INLINE static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  // 16 bf16: *even = columns 0, 2, .., 14 (the low halves of the 32-bit lanes, shifted up),
  // *odd = columns 1, 3, .., 15 (the high halves, masked).
  GRPO_INLINE static void Bf16Pair(const unsigned char* p, V* even, V* odd) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  // 16 E4M3 codes, columns 0..7 and 8..15, as their exact values times 2^-8.
  GRPO_INLINE static void Fp8Codes(const uint8_t* p, V* lo, V* hi) {
    const __m256i half = _mm256_and_si256(
        _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 7),
        _mm256_set1_epi16(static_cast<short>(0xBF80)));
    *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(half));
    *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(half, 1));
  }
  GRPO_INLINE static V Set1(float v) { return _mm256_set1_ps(v); }
  GRPO_INLINE static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  GRPO_INLINE static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  GRPO_INLINE static float Sum(V v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
  }
};

#include "model/ops/cpu/decode_kernel.inc"

void Decode(const float* x, const HostWeights& w, float* y, int64_t m,
                                 int64_t k, int64_t n, int64_t c0, int64_t c1) {
  if (w.dtype == DType::kF8E4M3) {
    DecodeColumns<Source::kFp8>(x, w, y, m, k, n, c0, c1);
  } else {
    DecodeColumns<Source::kBf16>(x, w, y, m, k, n, c0, c1);
  }
}

}  // namespace avx2
#pragma GCC pop_options

// AVX-512 (F, BW, VL, DQ) + FMA + F16C.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
namespace avx512 {
// The lanes of v added in a fixed order (halves, then quarters, ...).
GRPO_INLINE float Sum512(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
struct Isa {
  using V = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kMaxXRows = 5;  // 20 accumulators + 4 weights + x in 32 registers
  static constexpr float kFp8XFactor = 256.0f;  // Fp8Codes' values are the codes' times 2^-8
  GRPO_INLINE static V Zero() { return _mm512_setzero_ps(); }
  GRPO_INLINE static V LoadX(const float* p) { return _mm512_loadu_ps(p); }
  GRPO_INLINE static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  // 32 bf16: *even = columns 0, 2, .., 30, *odd = columns 1, 3, .., 31.
  GRPO_INLINE static void Bf16Pair(const unsigned char* p, V* even, V* odd) {
    const __m512i v = _mm512_loadu_si512(p);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  // 32 E4M3 codes, columns 0..15 and 16..31, as their exact values times 2^-8.
  GRPO_INLINE static void Fp8Codes(const uint8_t* p, V* lo, V* hi) {
    const __m512i half = _mm512_and_si512(
        _mm512_slli_epi16(_mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 7),
        _mm512_set1_epi16(static_cast<short>(0xBF80)));
    *lo = _mm512_cvtph_ps(_mm512_castsi512_si256(half));
    *hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(half, 1));
  }
  GRPO_INLINE static V Set1(float v) { return _mm512_set1_ps(v); }
  GRPO_INLINE static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  GRPO_INLINE static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  GRPO_INLINE static float Sum(V v) { return Sum512(v); }
};

#include "model/ops/cpu/decode_kernel.inc"

// Prefill's widening (WidenWeightRows) of bf16: 16 per step, the bits WidenBf16 gives; returns
// how many were widened (a multiple of 16).
int64_t WidenBf16(const unsigned char* src, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * i));
    _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
  return i;
}

void Decode(const float* x, const HostWeights& w, float* y, int64_t m,
                                     int64_t k, int64_t n, int64_t c0, int64_t c1) {
  if (w.dtype == DType::kF8E4M3) {
    DecodeColumns<Source::kFp8>(x, w, y, m, k, n, c0, c1);
  } else {
    DecodeColumns<Source::kBf16>(x, w, y, m, k, n, c0, c1);
  }
}

}  // namespace avx512
#pragma GCC pop_options

// The AVX-512 kernels with FP8 codes widened by AVX512_VBMI (AMD Zen 4, Intel Ice Lake and
// later): per 16 codes one vpermb (each code to the top byte of its f32 lane, the other bytes
// zeroed), an arithmetic shift right by 4 and a mask, where avx512 spends a sign extension, a
// shift, a mask, an extraction and a vcvtph2ps (on the AMD EPYC of docs/PERFORMANCE.md
// vcvtph2ps, and the GFNI affine transform an earlier version used, take the FMA units' time;
// the shift and the mask do not). A code's bits
// go where they sit in an f32 (sign at bit 31, exponent field at 23..26, mantissa at 20..22),
// which is the code's exact
// value times 2^-120 (Fp8Bits; subnormal codes land on f32 subnormals), and x is multiplied by
// 2^120 times the block scale. Wherever both x · 2^8 · scale and x · 2^120 · scale are normal
// f32, they are the same significand, so every product and sum, and y, are bit-identical to
// avx512's: LinearWeightsDecode uses this kernel only when Fp8VbmiIsExact says so (x and the
// scales in range, denormal inputs not treated as zero) and avx512's otherwise. With more rows
// of x than one tile, the codes are widened the same way once per group of weight rows
// (WidenFp8Rows). bf16 weights use avx512's kernels.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma,f16c")
namespace avx512vbmi {
struct Isa : avx512::Isa {
  static constexpr float kFp8XFactor = 0x1p120f;  // Fp8Codes' values are the codes' times 2^-120
  // 32 E4M3 codes, columns 0..15 and 16..31, as their exact values times 2^-120: vpermb puts
  // code j in the top byte of f32 lane j (b << 24, the other bytes zeroed), the arithmetic
  // shift by 4 moves its exponent and mantissa bits to 26..20 with copies of the sign above
  // them, and the mask 0x87F00000 keeps the sign at bit 31 and bits 26..20.
  GRPO_INLINE static void Fp8Codes(const uint8_t* p, V* lo, V* hi) {
    const __m512i codes = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i mask = _mm512_set1_epi32(static_cast<int>(0x87F00000u));
    const __m512i top0 = _mm512_maskz_permutexvar_epi8(kTopBytes, _mm512_slli_epi32(lane, 24), codes);
    const __m512i top1 = _mm512_maskz_permutexvar_epi8(
        kTopBytes, _mm512_slli_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(16)), 24), codes);
    *lo = _mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(top0, 4), mask));
    *hi = _mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(top1, 4), mask));
  }

 private:
  static constexpr __mmask64 kTopBytes = 0x8888888888888888ULL;  // byte 3 of each f32
};

#include "model/ops/cpu/decode_kernel.inc"

// FP8 weights only (bf16: avx512::Decode).
void Decode(const float* x, const HostWeights& w, float* y, int64_t m, int64_t k, int64_t n,
            int64_t c0, int64_t c1) {
  DecodeColumns<Source::kFp8>(x, w, y, m, k, n, c0, c1);
}

// Prefill's widening (WidenWeightRows) of FP8: n codes to their values times `scale`, 32 per
// step, the bits WidenFp8 gives (Isa::Fp8Codes' values, times 2^120, then times the scale).
void WidenFp8(const uint8_t* q, int64_t n, float scale, float* out) {
  const __m512 two120 = _mm512_set1_ps(0x1p120f), s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 lo, hi;
    Isa::Fp8Codes(q + i, &lo, &hi);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(lo, two120), s));
    _mm512_storeu_ps(out + i + 16, _mm512_mul_ps(_mm512_mul_ps(hi, two120), s));
  }
  for (; i < n; ++i) out[i] = Fp8Value(q[i]) * scale;
}

// The largest and the smallest non-zero |x| of x [count] (+inf when every x is 0); false, when
// x holds a NaN (which max/min would drop).
bool AbsRange(const float* x, int64_t count, float* largest, float* smallest_nonzero) {
  const __m512 inf = _mm512_set1_ps(INFINITY);
  __m512 hi = _mm512_setzero_ps(), lo = inf;
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + i));
    nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    hi = _mm512_max_ps(hi, a);
    lo = _mm512_min_ps(lo, _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_EQ_OQ), a, inf));
  }
  alignas(64) float his[16], los[16];
  _mm512_store_ps(his, hi);
  _mm512_store_ps(los, lo);
  float h = 0, l = INFINITY;
  for (int j = 0; j < 16; ++j) {
    h = std::max(h, his[j]);
    l = std::min(l, los[j]);
  }
  for (; i < count; ++i) {
    const float a = std::fabs(x[i]);
    if (std::isnan(a)) nan = 1;
    h = std::max(h, a);
    if (a != 0) l = std::min(l, a);
  }
  *largest = h;
  *smallest_nonzero = l;
  return nan == 0;
}
}  // namespace avx512vbmi
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512bf16,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
namespace avx512bf16 {
// bf16 weights with vdpbf16ps (AVX512_BF16): x is carried as two bf16 vectors, hi = bf16(x) and
// lo = bf16(x - hi) (round to nearest even each), so |x - hi - lo| <= 2^-18 |x|; each product of
// two bf16 is exact in f32, and vdpbf16ps adds pairs of them into f32 lanes (denormals flushed).
// Per 32 weights: 2 instructions per row of x and no widening.
struct SplitX {
  const uint16_t* hi;  // [m][k / 32 * 32] bf16
  const uint16_t* lo;
  int64_t vectors_per_row;  // k / 32
};

template <int M, int R>
GRPO_INLINE void DotBf16Tile(const float* x, const SplitX& sx,
                                                    const WeightRows& w, float* y, int64_t k,
                                                    int64_t ldy) {
  __m512 acc[M][R];
  #pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[i][r] = _mm512_setzero_ps();
  const int64_t vecs = k / 32;
  for (int64_t v = 0; v < vecs; ++v) {
    __m512bh wv[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w.row[r] + w.prefetch_bytes + 64 * v),
                   _MM_HINT_T0);
      wv[r] = (__m512bh)_mm512_loadu_si512(w.row[r] + 64 * v);
    }
    #pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const int64_t at = 32 * (i * sx.vectors_per_row + v);
      const __m512bh h = (__m512bh)_mm512_loadu_si512(sx.hi + at);
      const __m512bh l = (__m512bh)_mm512_loadu_si512(sx.lo + at);
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[i][r] = _mm512_dpbf16_ps(acc[i][r], h, wv[r]);
        acc[i][r] = _mm512_dpbf16_ps(acc[i][r], l, wv[r]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      float s = avx512::Isa::Sum(acc[i][r]);
      for (int64_t t = 32 * vecs; t < k; ++t) s += x[i * k + t] * Bf16At(w, r, t);
      y[i * ldy + r] = s;
    }
  }
}

template <int R>
GRPO_INLINE void DotBf16Rows(int m, const float* x, const SplitX& sx,
                                                    const WeightRows& w, float* y, int64_t k,
                                                    int64_t ldy) {
  switch (m) {
    case 1: DotBf16Tile<1, R>(x, sx, w, y, k, ldy); break;
    case 2: DotBf16Tile<2, R>(x, sx, w, y, k, ldy); break;
    case 3: DotBf16Tile<3, R>(x, sx, w, y, k, ldy); break;
    default: DotBf16Tile<4, R>(x, sx, w, y, k, ldy); break;
  }
}

void Decode(const float* x, const SplitX& sx,
                                             const HostWeights& w, float* y, int64_t m, int64_t k,
                                             int64_t n, int64_t c0, int64_t c1) {
  constexpr int kMaxX = 4;  // 16 accumulators, 4 weights, 2 x
  auto run = [&](int64_t c, int count) {
    const WeightRows rows = RowsOf(w, c, count);
    for (int64_t i = 0; i < m;) {
      const int mb = XBlockRows(m, i, kMaxX);
      SplitX at{sx.hi + 32 * i * sx.vectors_per_row, sx.lo + 32 * i * sx.vectors_per_row,
                sx.vectors_per_row};
      if (count == kRowsPerGroup) {
        DotBf16Rows<kRowsPerGroup>(mb, x + i * k, at, rows, y + i * n + c, k, n);
      } else {
        DotBf16Rows<1>(mb, x + i * k, at, rows, y + i * n + c, k, n);
      }
      i += mb;
    }
  };
  int64_t c = c0;
  for (; c + kRowsPerGroup <= c1; c += kRowsPerGroup) run(c, kRowsPerGroup);
  for (; c < c1; ++c) run(c, 1);
}

// hi/lo bf16 of the first k / 32 * 32 columns of each row of x.
void SplitToBf16(const float* x, int64_t m, int64_t k, uint16_t* hi, uint16_t* lo) {
  const int64_t vecs = k / 32;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t v = 0; v < vecs; ++v) {
      const __m512 a = _mm512_loadu_ps(x + i * k + 32 * v), b = _mm512_loadu_ps(x + i * k + 32 * v + 16);
      const __m512bh h = _mm512_cvtne2ps_pbh(b, a);  // a in the low half
      const __m512i hb = (__m512i)h;
      const __m512 ha = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hb)), 16));
      const __m512 hbw = _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hb, 1)), 16));
      _mm512_storeu_si512(hi + 32 * (i * vecs + v), hb);
      _mm512_storeu_si512(lo + 32 * (i * vecs + v),
                          (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(b, hbw), _mm512_sub_ps(a, ha)));
    }
  }
}

}  // namespace avx512bf16
#pragma GCC pop_options

#endif  // __x86_64__

}  // namespace

namespace {

#if defined(__x86_64__)
// CPUID feature bits that not every compiler's __builtin_cpu_supports knows (clang 14 has
// neither "f16c" nor "avx512bf16"): F16C is leaf 1 ECX bit 29, AVX512_BF16 leaf 7 subleaf 1
// EAX bit 5. The OS's AVX state is checked by __builtin_cpu_supports("avx2"/"avx512f").
bool CpuidHasF16c() {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
bool CpuidHasAvx512Bf16() {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)) != 0;
}
// AVX-512 F, BW, VL and DQ (the kAvx512 kernel's instruction sets), with the OS's ZMM state.
bool CpuHasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
// AVX512_VBMI (leaf 7 ECX bit 1) with AVX-512 F/BW/VL/DQ.
bool CpuCanRunFp8Vbmi() {
  unsigned a, b, c, d;
  return CpuHasAvx512() && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 1)) != 0;
}
bool g_use_fp8_vbmi = CpuCanRunFp8Vbmi();
bool g_widen_avx512 = CpuHasAvx512();
std::atomic<int64_t> g_fp8_vbmi_calls{0};

// Whether avx512vbmi's FP8 kernel gives avx512's bits for x [m, k] and the FP8 view's rows
// [0, n): denormal inputs are not flushed (the MXCSR's DAZ bit, which would zero the subnormal
// codes), and for every non-zero |x| and scale s, x · s · 2^8 is normal (>= 2^-126, margin 2^4)
// and x · s · 2^120 and s · 2^120 are finite (< 2^128, margin 2^1), so that both kernels' x
// operands are the same significand. (Weights of at most 448 · 2^-9 per block, scale < 2^-9,
// take x up to 2^14.)
bool Fp8VbmiIsExact(const float* x, const HostWeights& w, int64_t m, int64_t k, int64_t n) {
  if (DenormalsAreZero()) return false;
  float x_max = 0, x_min = 0;
  if (!avx512vbmi::AbsRange(x, m * k, &x_max, &x_min)) return false;  // NaN
  const int64_t bcols = (w.cols + kBlock - 1) / kBlock;
  float s_max = 0, s_min = INFINITY;
  for (int64_t br = w.row_begin / kBlock; br <= (w.row_begin + n - 1) / kBlock; ++br) {
    for (int64_t bc = 0; bc < bcols; ++bc) {
      const float s = std::fabs(w.scales[br * bcols + bc]);
      s_max = std::max(s_max, s);
      if (s != 0) s_min = std::min(s_min, s);
    }
  }
  if (!(x_max < INFINITY) || !(s_max < INFINITY)) return false;  // inf (NaN scales: skipped)
  if (x_max == 0 || s_max == 0) return true;                     // every product is 0
  return std::ilogb(x_max) + std::ilogb(s_max) < 6 && std::ilogb(s_max) < 6 &&
         std::ilogb(x_min) + std::ilogb(s_min) > -130;
}
#endif

DecodeKernel BestDecodeKernel() {
#if defined(__x86_64__)
  const bool avx512 = CpuHasAvx512();
  if (avx512 && CpuidHasAvx512Bf16()) return DecodeKernel::kAvx512Bf16;
  if (avx512) return DecodeKernel::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuidHasF16c()) {
    return DecodeKernel::kAvx2;
  }
#endif
  return DecodeKernel::kWidenThenSgemm;
}

const DecodeKernel g_best_decode_kernel = BestDecodeKernel();

// The default: the exact kernels (kAvx512 at most); GRPO_DECODE_KERNEL names another one.
DecodeKernel DefaultDecodeKernel() {
  DecodeKernel kernel = std::min(g_best_decode_kernel, DecodeKernel::kAvx512);
  if (const char* name = std::getenv("GRPO_DECODE_KERNEL")) {
    bool known = false;
    for (DecodeKernel k : {DecodeKernel::kWidenThenSgemm, DecodeKernel::kAvx2,
                           DecodeKernel::kAvx512, DecodeKernel::kAvx512Bf16}) {
      if (std::string_view(name) != DecodeKernelName(k)) continue;
      known = true;
      if (k > g_best_decode_kernel) {
        std::fprintf(stderr, "GRPO_DECODE_KERNEL=%s: this CPU cannot run it; using %s\n", name,
                     DecodeKernelName(kernel));
      } else {
        kernel = k;
      }
    }
    if (!known) {
      std::fprintf(stderr,
                   "GRPO_DECODE_KERNEL=%s: unknown (expected widen+sgemm, avx2, avx512 or "
                   "avx512bf16); using %s\n",
                   name, DecodeKernelName(kernel));
    }
  }
  return kernel;
}

DecodeKernel g_decode_kernel = DefaultDecodeKernel();

// A contiguous run of kRowsPerGroup-row groups per task, enough work to pay for a wake.
int64_t DecodeGrain(int64_t m, int64_t k) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, 4 * m * k));
}

// y[m, n] = x · W^T with the register kernels (m <= kDecodeMaxRows, g_decode_kernel not
// kWidenThenSgemm), split across threads by groups of output rows.
void LinearWeightsDecode(const float* x, const HostWeights& w, float* y, int64_t m, int64_t k,
                         int64_t n) {
#if defined(__x86_64__)
  const int64_t groups = (n + kRowsPerGroup - 1) / kRowsPerGroup;
  auto columns = [&](int64_t g0, int64_t g1) {
    return std::pair<int64_t, int64_t>{g0 * kRowsPerGroup, std::min(n, g1 * kRowsPerGroup)};
  };
  if (g_decode_kernel == DecodeKernel::kAvx512Bf16 && w.dtype == DType::kBF16) {
    // x split into bf16 hi/lo once per call, shared by the threads.
    thread_local std::vector<uint16_t> split;
    const int64_t vecs = k / 32;
    if (static_cast<int64_t>(split.size()) < 64 * m * vecs) split.resize(64 * m * vecs);
    avx512bf16::SplitToBf16(x, m, k, split.data(), split.data() + 32 * m * vecs);
    const avx512bf16::SplitX sx{split.data(), split.data() + 32 * m * vecs, vecs};
    ThreadPool::Default().ParallelFor(groups, DecodeGrain(m, k), [&](int64_t g0, int64_t g1) {
      const auto [c0, c1] = columns(g0, g1);
      avx512bf16::Decode(x, sx, w, y, m, k, n, c0, c1);
    });
    return;
  }
  const bool wide = g_decode_kernel != DecodeKernel::kAvx2;
  const bool fp8_vbmi = wide && Fp8VbmiApplies(x, w, m, k, n);
  if (fp8_vbmi) g_fp8_vbmi_calls.fetch_add(1, std::memory_order_relaxed);
  if (w.dtype == DType::kBF16) {  // x permuted once per call, shared by the threads
    thread_local std::vector<float> permuted;
    if (static_cast<int64_t>(permuted.size()) < m * k) permuted.resize(m * k);
    PermuteXForBf16(x, m, k, wide ? avx512::Isa::kLanes : avx2::Isa::kLanes, permuted.data());
    x = permuted.data();
  }
  ThreadPool::Default().ParallelFor(groups, DecodeGrain(m, k), [&](int64_t g0, int64_t g1) {
    const auto [c0, c1] = columns(g0, g1);
    if (fp8_vbmi) {
      avx512vbmi::Decode(x, w, y, m, k, n, c0, c1);
    } else if (wide) {
      avx512::Decode(x, w, y, m, k, n, c0, c1);
    } else {
      avx2::Decode(x, w, y, m, k, n, c0, c1);
    }
  });
#else
  (void)x, (void)w, (void)y, (void)m, (void)k, (void)n;
  std::abort();
#endif
}

// The reference path: tiles of W widened into a per-thread scratch, then sgemm/sgemv.
void LinearWeightsWidened(const float* x, const HostWeights& w, float* y, int64_t m, int64_t k,
                          int64_t n) {
  const int64_t tile = LinearWeightsTileRows(m, k, n, ThreadPool::Default().num_threads());
  const int64_t num_tiles = (n + tile - 1) / tile;
  ThreadPool::Default().ParallelFor(num_tiles, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scratch;
    if (static_cast<int64_t>(scratch.size()) < tile * k) scratch.resize(tile * k);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = t * tile, r1 = std::min(n, r0 + tile);
      WidenWeightRows(w, r0, r1, scratch.data());
      if (m <= kGemvRows) {
        // Decoding: one matrix-vector product per row of x over the cache-resident tile
        // (sgemm's packing costs more than the product at these sizes).
        for (int64_t i = 0; i < m; ++i) {
          cblas_sgemv(CblasRowMajor, CblasNoTrans, r1 - r0, k, 1.0f, scratch.data(), k, x + i * k,
                      1, 0.0f, y + i * n + r0, 1);
        }
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1 - r0, k, 1.0f, x, k,
                    scratch.data(), k, 0.0f, y + r0, n);
      }
    }
  });
}

}  // namespace

bool UseAvx2(bool enable) {
#if defined(__x86_64__)
  g_use_avx2 = enable && __builtin_cpu_supports("avx2");
  return g_use_avx2;
#else
  return false;
#endif
}

void WidenWeightRows(const HostWeights& w, int64_t row_begin, int64_t row_end, float* out) {
  const int64_t cols = w.cols;
  switch (w.dtype) {
    case DType::kF32:
      std::memcpy(out, w.f32() + row_begin * cols, (row_end - row_begin) * cols * sizeof(float));
      return;
    case DType::kBF16: {
      const auto* base = static_cast<const unsigned char*>(w.data);
      for (int64_t r = row_begin; r < row_end; ++r) {
        const unsigned char* src = base + (w.row_begin + r) * cols * 2;
        float* dst = out + (r - row_begin) * cols;
        int64_t done = 0;
#if defined(__x86_64__)
        if (g_use_avx2 && g_widen_avx512) done = avx512::WidenBf16(src, cols, dst);
#endif
        WidenBf16(src + 2 * done, cols - done, dst + done);
      }
      return;
    }
    case DType::kF8E4M3: {
      const auto* base = static_cast<const uint8_t*>(w.data);
      const int64_t bcols = (cols + kBlock - 1) / kBlock;
      const bool simd_exact = !DenormalsAreZero();  // else WidenFp8's scalar loop
      for (int64_t r = row_begin; r < row_end; ++r) {
        const int64_t g = w.row_begin + r;
        const float* s = w.scales + (g / kBlock) * bcols;
        const uint8_t* q = base + g * cols;
        float* dst = out + (r - row_begin) * cols;
        for (int64_t bc = 0; bc < bcols; ++bc) {
          const int64_t c0 = bc * kBlock, c1 = std::min(cols, c0 + kBlock);
#if defined(__x86_64__)
          if (g_use_avx2 && g_widen_avx512 && g_use_fp8_vbmi && simd_exact) {
            avx512vbmi::WidenFp8(q + c0, c1 - c0, s[bc], dst + c0);
            continue;
          }
#endif
          WidenFp8(q + c0, c1 - c0, s[bc], dst + c0);
        }
      }
      return;
    }
    default:
      std::abort();  // CausalLM only builds views of the three formats
  }
}

int64_t LinearWeightsTileRows(int64_t m, int64_t k, int64_t n, int threads) {
  k = std::max<int64_t>(k, 1);
  // Decode-like calls (few rows of x): a tile small enough to stay in L2 while sgemm reads it.
  if (m <= 16) return std::clamp<int64_t>((int64_t{1} << 15) / k, 4, kBlock);
  // Prefill-like calls: sgemm packs all of x again for every tile (m x k floats, as many as a
  // 128-row tile's products take ~15% of the time to compute at m = 512), so each thread gets
  // as few tiles as a scratch of kPrefillTileFloats allows, equal in number for every thread.
  constexpr int64_t kPrefillTileFloats = int64_t{1} << 20;  // 4 MiB per thread
  const int64_t most = std::max<int64_t>(kPrefillTileFloats / k, 16);
  const int64_t per_thread = (n + threads - 1) / std::max(threads, 1);
  const int64_t tiles_each = (per_thread + most - 1) / most;
  return std::max<int64_t>((per_thread + tiles_each - 1) / tiles_each, 1);
}

const char* DecodeKernelName(DecodeKernel kernel) {
  switch (kernel) {
    case DecodeKernel::kWidenThenSgemm: return "widen+sgemm";
    case DecodeKernel::kAvx2: return "avx2";
    case DecodeKernel::kAvx512: return "avx512";
    case DecodeKernel::kAvx512Bf16: return "avx512bf16";
  }
  return "?";
}

bool UseAvx512Widening(bool enable) {
#if defined(__x86_64__)
  g_widen_avx512 = enable && CpuHasAvx512();
  return g_widen_avx512;
#else
  (void)enable;
  return false;
#endif
}

bool UseFp8Vbmi(bool enable) {
#if defined(__x86_64__)
  g_use_fp8_vbmi = enable && CpuCanRunFp8Vbmi();
  return g_use_fp8_vbmi;
#else
  (void)enable;
  return false;
#endif
}

bool Fp8VbmiApplies(const float* x, const HostWeights& w, int64_t m, int64_t k, int64_t n) {
#if defined(__x86_64__)
  return g_use_fp8_vbmi && w.dtype == DType::kF8E4M3 && m <= kDecodeMaxRows &&
         Fp8VbmiIsExact(x, w, m, k, n);
#else
  (void)x, (void)w, (void)m, (void)k, (void)n;
  return false;
#endif
}

int64_t Fp8VbmiCalls() {
#if defined(__x86_64__)
  return g_fp8_vbmi_calls.load(std::memory_order_relaxed);
#else
  return 0;
#endif
}

bool SetDecodeKernel(DecodeKernel kernel) {
  if (kernel > g_best_decode_kernel) return false;
  g_decode_kernel = kernel;
  return true;
}

DecodeKernel CurrentDecodeKernel() { return g_decode_kernel; }

namespace {
// y[r, c] += b[c] (b may be null), rows split over the threads.
void AddBias(const float* b, float* y, int64_t m, int64_t n) {
  if (b == nullptr || m <= 0 || n <= 0) return;
  ThreadPool::Default().ParallelFor(m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < n; ++c) y[r * n + c] += b[c];
  });
}
}  // namespace

void LinearWeightsQuantized(const float* x, const HostWeights& w, const float* b, float* y,
                            int64_t m, int64_t k, int64_t n) {
  if (m <= kDecodeMaxRows && g_decode_kernel != DecodeKernel::kWidenThenSgemm) {
    LinearWeightsDecode(x, w, y, m, k, n);
  } else if (m > kDecodeMaxRows && AmxInUse() && LinearWeightsAmx(x, w, y, m, k, n)) {
    // multiplied on AMX tiles (amx_gemm.h)
  } else {
    LinearWeightsWidened(x, w, y, m, k, n);
  }
  AddBias(b, y, m, n);
}

void LinearWeightsQuantizedSameInput(const float* x, std::span<const QuantizedOutput> outs,
                                     int64_t m, int64_t k) {
  if (m > kDecodeMaxRows && AmxInUse() && outs.size() > 1) {
    std::vector<AmxOutput> amx;
    amx.reserve(outs.size());
    for (const QuantizedOutput& out : outs) amx.push_back(AmxOutput{out.w, out.y, out.n});
    if (LinearWeightsAmxSameInput(x, amx, m, k)) {
      for (const QuantizedOutput& out : outs) AddBias(out.b, out.y, m, out.n);
      return;
    }
  }
  for (const QuantizedOutput& out : outs) LinearWeightsQuantized(x, *out.w, out.b, out.y, m, k, out.n);
}

bool LinearWeightsQuantizedSwiGluAmx(const float* gate, const float* up, const HostWeights& w,
                                     const float* b, float* y, int64_t m, int64_t k, int64_t n) {
  if (m <= kDecodeMaxRows || !AmxInUse() || !LinearWeightsAmxSwiGlu(gate, up, w, y, m, k, n)) {
    return false;
  }
  AddBias(b, y, m, n);
  return true;
}

}  // namespace grpo::cpu
