#include "model/ops/cpu/quantized_gemm.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/thread_pool.h"

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

void WidenFp8(const uint8_t* q, int64_t n, float scale, float* out) {
  int64_t i = 0;
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
  for (; i < n; ++i) out[i] = Fp8Bits(q[i]) * 0x1p120f * scale;
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
        WidenBf16(base + (w.row_begin + r) * cols * 2, cols, out + (r - row_begin) * cols);
      }
      return;
    }
    case DType::kF8E4M3: {
      const auto* base = static_cast<const uint8_t*>(w.data);
      const int64_t bcols = (cols + kBlock - 1) / kBlock;
      for (int64_t r = row_begin; r < row_end; ++r) {
        const int64_t g = w.row_begin + r;
        const float* s = w.scales + (g / kBlock) * bcols;
        const uint8_t* q = base + g * cols;
        float* dst = out + (r - row_begin) * cols;
        for (int64_t bc = 0; bc < bcols; ++bc) {
          const int64_t c0 = bc * kBlock, c1 = std::min(cols, c0 + kBlock);
          WidenFp8(q + c0, c1 - c0, s[bc], dst + c0);
        }
      }
      return;
    }
    default:
      std::abort();  // CausalLM only builds views of the three formats
  }
}

int64_t LinearWeightsTileRows(int64_t m, int64_t k) {
  // Decode-like calls (few rows of x): a tile small enough to stay in L2 while sgemm reads it.
  // Prefill-like calls: larger tiles so packing x once per tile is amortized.
  const int64_t budget = m <= 16 ? (int64_t{1} << 15) : (int64_t{1} << 19);  // floats
  return std::clamp<int64_t>(budget / std::max<int64_t>(k, 1), m <= 16 ? 4 : 16, kBlock);
}

void LinearWeightsQuantized(const float* x, const HostWeights& w, const float* b, float* y,
                            int64_t m, int64_t k, int64_t n) {
  const int64_t tile = LinearWeightsTileRows(m, k);
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
  if (b != nullptr) {
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) y[r * n + c] += b[c];
  }
}

}  // namespace grpo::cpu
