#include "model/ops/cpu/amx_gemm.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define GRPO_HAVE_AMX_CODE 1
#endif

#include "core/thread_pool.h"
#include "model/ops/cpu/vector_kernels.h"

namespace grpo::cpu {
namespace {

std::atomic<int64_t> g_amx_calls{0};
std::atomic<int64_t> g_amx_swiglu_calls{0};

#if defined(GRPO_HAVE_AMX_CODE)

constexpr int64_t kBlock = 128;      // FP8 block (core/fp8_block.h's kFp8BlockSize)
constexpr int64_t kTileRows = 16;    // rows of a tile; also the f32 columns of a result tile
constexpr int64_t kStep = 32;        // bf16 products per result element per TDPBF16PS
constexpr int64_t kParts = 3;        // x = hi + mid + lo
constexpr int64_t kPanel = 32;       // output columns per register block (2 result tiles)
constexpr int64_t kMBlock = 32;      // rows of x per register block (2 result tiles)
constexpr int64_t kMChunk = 256;     // rows of x whose block of y stays in L2 over all of k
constexpr int64_t kMaxChunk = 512;   // output columns per task (weights packed once per task)
constexpr int64_t kPackBytes = int64_t{4} << 20;  // at most this much packed weight per task
constexpr int64_t kSplitBytes = int64_t{48} << 20;  // at most this much split x per pass
constexpr int64_t kTileElems = kTileRows * kStep;  // bf16 elements of an x or weight tile

bool DetectAmx() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if ((d & (1u << 24)) == 0 || (d & (1u << 22)) == 0) return false;  // AMX-TILE, AMX-BF16
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || (a & (1u << 5)) == 0) return false;  // AVX512_BF16
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") ||
      !__builtin_cpu_supports("avx512vbmi")) {
    return false;
  }
  // Linux hands out the tile data state per process on request (kernel 5.16 and later).
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtileData = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
}

bool Available() {
  static const bool available = DetectAmx();
  return available;
}

bool DefaultUse() {
  const char* name = std::getenv("GRPO_PREFILL_KERNEL");
  if (name == nullptr || std::string_view(name) == "amx") {
    if (name != nullptr && !Available()) {
      std::fprintf(stderr, "GRPO_PREFILL_KERNEL=amx: this CPU or OS cannot run it; using sgemm\n");
    }
    return Available();
  }
  if (std::string_view(name) != "sgemm") {
    std::fprintf(stderr, "GRPO_PREFILL_KERNEL=%s: unknown (expected amx or sgemm); using %s\n",
                 name, Available() ? "amx" : "sgemm");
    return Available();
  }
  return false;
}

std::atomic<bool> g_use_amx{DefaultUse()};

#define GRPO_AMX_INLINE __attribute__((always_inline)) inline

// GCC 12's AVX-512 headers initialize "undefined" vectors from themselves, which
// -Wmaybe-uninitialized and -Wuninitialized report at every inlined use.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Constant data, initialized at compile time: nothing in the instruction-set region below runs
// at static initialization (its instructions would fault on a CPU without them).

// The bf16 bits of j · 2^-9 for j < 8: the E4M3 subnormal codes' magnitudes.
constexpr uint16_t kSubnormalBf16[8] = {0, 0x3B00, 0x3B80, 0x3BC0, 0x3C00, 0x3C20, 0x3C40, 0x3C60};

// The bf16 bits of the exact value of an E4M3 magnitude (a code without its sign bit): a normal
// code's exponent field e (1..15) and mantissa m become bf16's exponent e + 120 and mantissa
// m << 4; a subnormal code is m · 2^-9. The NaN magnitude 0x7F gives 480: served weights hold
// no NaN (checked at load). Split into low and high bytes: the tables of Fp8PairToBf16's byte
// lookups (integer operations: the MXCSR does not matter).
constexpr uint16_t MagnitudeBf16(int mag) {
  return mag < 8 ? kSubnormalBf16[mag] : static_cast<uint16_t>((mag << 4) + 0x3C00);
}
struct MagnitudeBytes {
  uint8_t lo[128], hi[128];
};
constexpr MagnitudeBytes MakeMagnitudeBytes() {
  MagnitudeBytes t{};
  for (int mag = 0; mag < 128; ++mag) {
    t.lo[mag] = static_cast<uint8_t>(MagnitudeBf16(mag) & 0xFF);
    t.hi[mag] = static_cast<uint8_t>(MagnitudeBf16(mag) >> 8);
  }
  return t;
}
alignas(64) constexpr MagnitudeBytes kMagnitudeBytes = MakeMagnitudeBytes();

// Byte d = 16 L + 8 h + w (128-bit lane L, w < 8) of the reordered codes of two 32-code rows
// (row h of the pair at bytes 32 h..): code 8 L + w of row h, so that the byte unpacks of
// Fp8PairToBf16, which work within 128-bit lanes, give each row's 32 values in order.
struct PairOrder {
  uint8_t index[64];
};
constexpr PairOrder MakePairOrder() {
  PairOrder order{};
  for (int d = 0; d < 64; ++d) {
    const int lane = d / 16, h = d % 16 / 8, w = d % 8;
    order.index[d] = static_cast<uint8_t>(32 * h + 8 * lane + w);
  }
  return order;
}
alignas(64) constexpr PairOrder kPairOrder = MakePairOrder();

// The tile configuration (LDTILECFG's 64-byte layout): palette 1, tiles 0..7 of 16 rows of 64
// bytes. A constant in memory: GCC 12's _tile_loadconfig tells the compiler it reads only 8 bytes
// of its operand, so stores into a local configuration could be dropped as dead.
struct TileConfig {
  uint8_t palette, start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
constexpr TileConfig MakeTileConfig() {
  TileConfig config{};
  config.palette = 1;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = kTileRows;
    config.colsb[t] = 64;
  }
  return config;
}
alignas(64) constexpr TileConfig kTileConfig = MakeTileConfig();
static_assert(sizeof(TileConfig) == 64);

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,avx2,fma,amx-tile,amx-bf16")
#define GRPO_AMX_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,avx2,fma,amx-tile,amx-bf16")))

// Two rows of 32 E4M3 codes (row 0 in bytes 0-31, row 1 in 32-63) -> the bf16 bits of their
// exact values (MagnitudeBf16 with the code's sign), one row per result, by byte lookups: the low and high bytes of each magnitude's
// bf16 from two 128-byte tables (VPERMI2B reads an index's low 7 bits: the sign is ignored),
// the sign bit put back into the high byte, the bytes interleaved.
GRPO_AMX_TARGET GRPO_AMX_INLINE void Fp8PairToBf16(__m512i codes, __m512i* row0, __m512i* row1) {
  const __m512i ordered = _mm512_permutexvar_epi8(_mm512_load_si512(kPairOrder.index), codes);
  const __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(kMagnitudeBytes.lo), ordered,
                                              _mm512_load_si512(kMagnitudeBytes.lo + 64));
  const __m512i hi_mag = _mm512_permutex2var_epi8(_mm512_load_si512(kMagnitudeBytes.hi), ordered,
                                                  _mm512_load_si512(kMagnitudeBytes.hi + 64));
  // hi = hi_mag | (ordered & 0x80), bit by bit: (a & ~c) | (b & c) would also do; 0xF8 is a | (b & c)
  const __m512i hi = _mm512_ternarylogic_epi32(hi_mag, ordered, _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);
  *row0 = _mm512_unpacklo_epi8(lo, hi);
  *row1 = _mm512_unpackhi_epi8(lo, hi);
}

// r[i] holds 16 32-bit elements of row i; afterwards r[j] holds column j.
GRPO_AMX_TARGET GRPO_AMX_INLINE void Transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // Per 128-bit lane l: u[4g + j] holds rows 4g..4g+3 of column 4l + j.
  __m512i u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  // Column 4l + j: lane l of u[j], u[4 + j], u[8 + j], u[12 + j].
  for (int j = 0; j < 4; ++j) {
    const __m512i a = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
    const __m512i b = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
    const __m512i c = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i d = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_i32x4(a, c, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(a, c, 0xDD);
    r[4 + j] = _mm512_shuffle_i32x4(b, d, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(b, d, 0xDD);
  }
}

GRPO_AMX_TARGET GRPO_AMX_INLINE __mmask32 Mask32(int64_t valid) {
  return valid >= 32 ? ~__mmask32{0} : valid <= 0 ? 0 : (__mmask32{1} << valid) - 1;
}
GRPO_AMX_TARGET GRPO_AMX_INLINE __mmask16 Mask16(int64_t valid) {
  return valid >= 16 ? __mmask16(0xFFFF) : valid <= 0 ? 0 : __mmask16((1u << valid) - 1);
}

// The x side: x [m, k] as three bf16 parts in TDPBF16PS's A layout, each tile (16 rows by 32
// columns, 1 KiB) contiguous: tile (row tile t, k step s, part p) at
// data + ((t · ksteps + s) · kParts + p) · kTileElems, so that a register block's tiles for one
// k block are 24 KiB in a row (few pages, no cache-set conflicts of a long row stride). Rows
// past m and columns past k are zero.
struct Parts {
  uint16_t* data;
  int64_t ksteps;  // kpad / kStep
  GRPO_AMX_INLINE const uint16_t* Tile(int64_t row_tile, int64_t step, int p) const {
    return data + ((row_tile * ksteps + step) * kParts + p) * kTileElems;
  }
};

// 16 values of x as hi, mid and lo (x = hi + mid + lo), widened back to f32 between the parts.
struct Split16 {
  __m256i hi, mid, lo;
};
GRPO_AMX_TARGET GRPO_AMX_INLINE __m512 WidenBf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
GRPO_AMX_TARGET GRPO_AMX_INLINE Split16 SplitValues(__m512 v) {
  Split16 out;
  out.hi = (__m256i)_mm512_cvtneps_pbh(v);
  const __m512 r1 = _mm512_sub_ps(v, WidenBf16(out.hi));
  out.mid = (__m256i)_mm512_cvtneps_pbh(r1);
  out.lo = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(r1, WidenBf16(out.mid)));
  return out;
}

// Row i of x (`row`, k values) into the parts; `worst` takes the largest |x|'s bits (non-finite
// values compare above every finite one).
GRPO_AMX_TARGET GRPO_AMX_INLINE void SplitRow(const float* row, int64_t k, int64_t i,
                                              const Parts& parts, __m512i& worst) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  uint16_t* out = parts.data + (i / kTileRows * parts.ksteps * kParts) * kTileElems +
                  (i % kTileRows) * kStep;
  // One tile row (32 columns, a whole 64-byte line) of each part per step.
  for (int64_t step = 0; step < parts.ksteps; ++step) {
    const int64_t c = step * kStep;
    const __m512 a = _mm512_maskz_loadu_ps(Mask16(k - c), row + c);
    const __m512 b = _mm512_maskz_loadu_ps(Mask16(k - c - 16), row + c + 16);
    worst = _mm512_max_epu32(worst, _mm512_and_si512(_mm512_castps_si512(a), abs_mask));
    worst = _mm512_max_epu32(worst, _mm512_and_si512(_mm512_castps_si512(b), abs_mask));
    const Split16 sa = SplitValues(a), sb = SplitValues(b);
    uint16_t* at = out + step * kParts * kTileElems;
    _mm512_store_si512(at, _mm512_inserti64x4(_mm512_castsi256_si512(sa.hi), sb.hi, 1));
    _mm512_store_si512(at + kTileElems, _mm512_inserti64x4(_mm512_castsi256_si512(sa.mid), sb.mid, 1));
    _mm512_store_si512(at + 2 * kTileElems, _mm512_inserti64x4(_mm512_castsi256_si512(sa.lo), sb.lo, 1));
  }
}

// Rows [r0, r1) of x into the parts, x [m, k] as given (up null) or, for an MLP's down
// projection, SwiGlu(x, up) made a row at a time into a per-thread row buffer (19 KiB for an
// intermediate size of 4864, in L1; larger ones spill to L2) (vector_kernels.h's SwiGlu, whose value
// of an element does not depend on where a call starts or ends: the bits of the whole
// activation). Returns the largest |x|'s bits (non-finite values compare above every finite one).
GRPO_AMX_TARGET uint32_t SplitRows(const float* x, const float* up, int64_t k, int64_t r0,
                                   int64_t r1, const Parts& parts) {
  thread_local std::vector<float> activation;
  if (up != nullptr && static_cast<int64_t>(activation.size()) < k) activation.resize(k);
  __m512i worst = _mm512_setzero_si512();
  for (int64_t i = r0; i < r1; ++i) {
    const float* row = x + i * k;
    if (up != nullptr) {
      SwiGlu(row, up + i * k, activation.data(), k);
      row = activation.data();
    }
    SplitRow(row, k, i, parts, worst);
  }
  return _mm512_reduce_max_epu32(worst);
}

constexpr int64_t kStepsPerBlock = kBlock / kStep;

// Where tile (t, s) of `tiles` column tiles lies in the packed weights, in tiles: k block by
// k block, and within one the column tiles in order, each with its k block's steps (so that a
// k block's tiles, which the panels read in order, are one run of memory).
GRPO_AMX_INLINE int64_t PackedTile(int64_t tiles, int64_t t, int64_t s) {
  return ((s / kStepsPerBlock) * tiles + t) * kStepsPerBlock + s % kStepsPerBlock;
}

// Output columns [n0, n0 + tiles · 16) of W (rows of the view; zero from row n) and columns
// [0, kpad) (zero past k), widened to bf16 in TDPBF16PS's B layout: tile (t, s) at
// out + PackedTile(tiles, t, s) · kTileElems, its row r holding, for c = 0..15, the pair of
// columns (32 s + 2r, 32 s + 2r + 1) of row n0 + 16 t + c.
GRPO_AMX_TARGET void PackWeights(const HostWeights& w, int64_t k, int64_t n, int64_t kpad,
                                 int64_t n0, int64_t tiles, uint16_t* out) {
  const int64_t ksteps = kpad / kStep;
  const bool fp8 = w.dtype == DType::kF8E4M3;
  const auto* base = static_cast<const unsigned char*>(w.data);
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t first = n0 + t * kTileRows;
    for (int64_t s = 0; s < ksteps; ++s) {
      const __mmask32 cols = Mask32(k - s * kStep);
      __m512i r[16];
      if (fp8) {
        for (int c = 0; c < 16; c += 2) {
          __m256i codes[2];
          for (int h = 0; h < 2; ++h) {
            const int64_t row = first + c + h;
            codes[h] = row >= n ? _mm256_setzero_si256()
                                : _mm256_maskz_loadu_epi8(
                                      cols, base + (w.row_begin + row) * w.cols + s * kStep);
          }
          Fp8PairToBf16(_mm512_inserti64x4(_mm512_castsi256_si512(codes[0]), codes[1], 1), &r[c],
                        &r[c + 1]);
        }
      } else {
        for (int c = 0; c < 16; ++c) {
          const int64_t row = first + c;
          const unsigned char* p = base + ((w.row_begin + row) * w.cols + s * kStep) * 2;
          r[c] = row >= n ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi16(cols, p);
        }
      }
      Transpose16x16(r);
      uint16_t* tile = out + PackedTile(tiles, t, s) * kTileElems;
      for (int i = 0; i < 16; ++i) _mm512_store_si512(tile + 32 * i, r[i]);
    }
  }
}

// The block scale of each of the 16 output columns from `col` (FP8), for k block `kb`.
GRPO_AMX_TARGET GRPO_AMX_INLINE __m512 ColumnScales(const HostWeights& w, int64_t n, int64_t col,
                                                    int64_t kb) {
  const int64_t bcols = (w.cols + kBlock - 1) / kBlock;
  const int64_t first = (w.row_begin + col) / kBlock;
  const int64_t last = (w.row_begin + std::min(col + 15, n - 1)) / kBlock;
  if (first == last) return _mm512_set1_ps(w.scales[first * bcols + kb]);
  alignas(64) float s[16];
  for (int c = 0; c < 16; ++c) {
    s[c] = w.scales[((w.row_begin + std::min(col + c, n - 1)) / kBlock) * bcols + kb];
  }
  return _mm512_load_ps(s);
}

// Tiles: 0..3 results (x rows 0-15 / 16-31 by columns 0-15 / 16-31 of the panel), 4-5 x, 6-7 W.
GRPO_AMX_TARGET void LoadTileConfig() { _tile_loadconfig(&kTileConfig); }

constexpr int64_t kTileFloats = kTileRows * 16;

// Where a register block's results go once its last k block is done: y [m, n] from row m0 and
// column col (rows from m and columns from n are not written).
struct Output {
  float* y;
  int64_t m, n, m0, col;
  // Row r of result tile (mt, nt) of the block.
  GRPO_AMX_TARGET GRPO_AMX_INLINE void StoreRow(int mt, int nt, int r, __m512 v) const {
    const int64_t row = m0 + kTileRows * mt + r, c0 = col + 16 * nt;
    if (row >= m) return;
    const __mmask16 valid = Mask16(n - c0);
    if (valid != 0) _mm512_mask_storeu_ps(y + row * n + c0, valid, v);
  }
};

// A register block's sums for one k block (its 4 result tiles, tile-major, 4 x 16 x 16 f32),
// waiting to be multiplied by their columns' scales (1 for bf16) and added to the block's
// accumulators (stored for the first k block), or, after the last k block, written to y. The
// next register block does this between its tile operations: as a pass of its own it would not
// overlap them (the tiles' pipeline would drain), interleaved it costs nearly nothing.
struct PendingSums {
  const float* sums = nullptr;  // none pending
  float* acc;
  __m512 scale[2];  // of result columns 0-15 and 16-31
  bool first, last;
  Output out;
};

constexpr int kSumRows = 4 * kTileRows;  // 16-float rows of a block's sums

// Rows [r0, r1) of the pending sums (row v: row v % 16 of result tile v / 16).
GRPO_AMX_TARGET GRPO_AMX_INLINE void AddSums(const PendingSums& p, int r0, int r1) {
  if (p.sums == nullptr) return;
  for (int v = r0; v < r1; ++v) {
    const int t = v / kTileRows, r = v % kTileRows;
    const __m512 sum = _mm512_load_ps(p.sums + kTileFloats * t + 16 * r);
    float* a = p.acc + kTileFloats * t + 16 * r;
    const __m512 scale = p.scale[t % 2];
    const __m512 total = p.first ? _mm512_mul_ps(scale, sum)
                                 : _mm512_fmadd_ps(scale, sum, _mm512_load_ps(a));
    if (p.last) {
      p.out.StoreRow(t / 2, t % 2, r, total);
    } else {
      _mm512_store_ps(a, total);
    }
  }
}

// One register block: x rows [m0, m0 + 32) by the panel's 32 columns, over k steps [s0, s1)
// (k block kb), with `acc` its accumulators between k blocks. The tiles start from zero; their
// sums go to `sums` and become `pending` (the previous block's pending sums are added first,
// between this block's tile operations). `out` is set for the last k block.
GRPO_AMX_TARGET void PanelBlock(const Parts& x, const uint16_t* packed, int64_t tiles,
                                int64_t panel_tile, int64_t m0, int64_t s0, int64_t s1,
                                const HostWeights& w, int64_t n, int64_t kb, int64_t col,
                                float* acc, float* sums, const Output* out, PendingSums& pending) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  int done = 0;  // rows of the pending sums added
  // (The accumulators are left to the hardware: prefetching them into L1 here, for the next
  // block, cost 3-11% at m = 512.)
  for (int64_t s = s0; s < s1; ++s) {
    _tile_loadd(6, packed + PackedTile(tiles, panel_tile, s) * kTileElems, 64);
    _tile_loadd(7, packed + PackedTile(tiles, panel_tile + 1, s) * kTileElems, 64);
    for (int p = 0; p < kParts; ++p) {
      _tile_loadd(4, x.Tile(m0 / kTileRows, s, p), 64);
      _tile_loadd(5, x.Tile(m0 / kTileRows + 1, s, p), 64);
      _tile_dpbf16ps(0, 4, 6);
      const int upto = std::min(kSumRows, done + 6);  // 12 groups of 6 cover the 64 rows
      AddSums(pending, done, upto);
      done = upto;
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  AddSums(pending, done, kSumRows);  // a short last k block
  // GCC 12's tile loads and stores are asm statements without memory operands: keep the reads of
  // the sums buffer above before the tile stores that overwrite it (two blocks later), and the
  // stores before the next block reads them.
  asm volatile("" ::: "memory");
  _tile_stored(0, sums, 64);
  _tile_stored(1, sums + kTileFloats, 64);
  _tile_stored(2, sums + 2 * kTileFloats, 64);
  _tile_stored(3, sums + 3 * kTileFloats, 64);
  asm volatile("" ::: "memory");
  pending.sums = sums;
  pending.acc = acc;
  const bool fp8 = w.dtype == DType::kF8E4M3;
  for (int nt = 0; nt < 2; ++nt) {
    pending.scale[nt] = fp8 ? ColumnScales(w, n, col + 16 * nt, kb) : _mm512_set1_ps(1.0f);
  }
  pending.first = kb == 0;
  pending.last = out != nullptr;
  if (out != nullptr) pending.out = *out;
}

// Output columns [n0, n1) for every row of x: the weights packed once, then x in chunks of
// kMChunk rows, k block by k block (the chunk's x rows of one k block stay in L1 across the
// panels, the chunk's accumulators in L2); the last k block writes y.
GRPO_AMX_TARGET void Columns(const Parts& x, const HostWeights& w, float* y, int64_t m,
                             int64_t mpad, int64_t k, int64_t n, int64_t n0, int64_t n1) {
  constexpr int64_t kBlockFloats = kMBlock * kPanel;  // one register block's results
  thread_local std::vector<uint16_t> packed_buffer;
  thread_local std::vector<float> acc_buffer;
  const int64_t panels = (n1 - n0 + kPanel - 1) / kPanel;
  const int64_t ksteps = x.ksteps;
  const int64_t kblocks = (k + kBlock - 1) / kBlock;
  const int64_t elems = 2 * panels * kblocks * kStepsPerBlock * kTileElems + 32;
  if (static_cast<int64_t>(packed_buffer.size()) < elems) packed_buffer.resize(elems);
  auto* packed = reinterpret_cast<uint16_t*>(
      (reinterpret_cast<uintptr_t>(packed_buffer.data()) + 63) & ~uintptr_t{63});
  const int64_t acc_floats = kMChunk / kMBlock * panels * kBlockFloats + 16;
  if (static_cast<int64_t>(acc_buffer.size()) < acc_floats) acc_buffer.resize(acc_floats);
  auto* acc = reinterpret_cast<float*>(
      (reinterpret_cast<uintptr_t>(acc_buffer.data()) + 63) & ~uintptr_t{63});
  alignas(64) float sums[2][4 * kTileFloats];  // two blocks' sums: one pending, one being made
  PendingSums pending;
  int slot = 0;
  PackWeights(w, k, n, ksteps * kStep, n0, 2 * panels, packed);
  // GCC 12's _tile_loadd is an asm statement without a memory operand: keep the packing's
  // stores before the tile loads that read them.
  asm volatile("" ::: "memory");
  LoadTileConfig();
  for (int64_t mc = 0; mc < mpad; mc += kMChunk) {
    const int64_t mc_end = std::min(mpad, mc + kMChunk);
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      const int64_t s0 = kb * kStepsPerBlock, s1 = std::min(ksteps, s0 + kStepsPerBlock);
      for (int64_t m0 = mc; m0 < mc_end; m0 += kMBlock) {
        for (int64_t p = 0; p < panels; ++p) {
          const Output out{y, m, n, m0, n0 + p * kPanel};
          float* block_acc = acc + ((m0 - mc) / kMBlock * panels + p) * kBlockFloats;
          PanelBlock(x, packed, 2 * panels, 2 * p, m0, s0, s1, w, n, kb, n0 + p * kPanel,
                     block_acc, sums[slot], kb + 1 == kblocks ? &out : nullptr, pending);
          slot ^= 1;
        }
      }
    }
  }
  _tile_release();
  AddSums(pending, 0, kSumRows);
}

// The largest |value|'s bits among count floats (non-finite values compare above every finite one).
GRPO_AMX_TARGET uint32_t AbsMaxBits(const float* x, int64_t count) {
  __m512i worst = _mm512_setzero_si512();
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  for (int64_t i = 0; i < count; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(Mask16(count - i), x + i);
    worst = _mm512_max_epu32(worst, _mm512_and_si512(_mm512_castps_si512(v), abs_mask));
  }
  return _mm512_reduce_max_epu32(worst);
}

#pragma GCC pop_options

// y_i = x · W_i^T for m rows of x (SwiGlu(x, up) where up is not null: SplitRows) in one split,
// for every output; false, before writing any y, if some |x| has bits at or above `limit`.
bool MultiplyRows(const float* x, const float* up, std::span<const AmxOutput> outs, int64_t m,
                  int64_t k, int64_t row0, uint32_t limit) {
  const int64_t mpad = (m + kMBlock - 1) / kMBlock * kMBlock;
  const int64_t kpad = (k + kStep - 1) / kStep * kStep;
  ThreadPool& pool = ThreadPool::Default();
  // x split once per pass, shared by the threads and the outputs.
  thread_local std::vector<uint16_t> split;
  const int64_t split_elems = kParts * mpad * kpad;
  if (static_cast<int64_t>(split.size()) < split_elems + 32) split.resize(split_elems + 32);
  const Parts parts{reinterpret_cast<uint16_t*>(
                        (reinterpret_cast<uintptr_t>(split.data()) + 63) & ~uintptr_t{63}),
                    kpad / kStep};
  // The tiles from the one holding row m on zeroed (the split then fills rows below m).
  std::fill(parts.data + m / kTileRows * parts.ksteps * kParts * kTileElems,
            parts.data + split_elems, uint16_t{0});
  std::atomic<bool> splittable{true};
  pool.ParallelFor(m, std::max<int64_t>(1, 4096 / kpad), [&](int64_t r0, int64_t r1) {
    if (SplitRows(x, up, k, r0, r1, parts) >= limit) splittable = false;
  });
  if (!splittable) return false;
  // Per output, column chunks of whole panels, at most kMaxChunk columns and kPackBytes of packed
  // weights each, as many per thread, their panel counts differing by at most one (so the
  // threads' shares do too).
  const int threads = std::max(1, pool.num_threads());
  const int64_t most = std::clamp<int64_t>(kPackBytes / (2 * kpad) / kPanel, 1, kMaxChunk / kPanel);
  for (const AmxOutput& out : outs) {
    const int64_t n = out.n;
    float* y = out.y + row0 * n;
    const int64_t panels = (n + kPanel - 1) / kPanel;
    int64_t chunks = (panels + most - 1) / most;
    chunks = std::min(panels, (chunks + threads - 1) / threads * threads);
    pool.ParallelFor(chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t p0 = c * panels / chunks, p1 = (c + 1) * panels / chunks;
        Columns(parts, *out.w, y, m, mpad, k, n, p0 * kPanel, std::min(n, p1 * kPanel));
      }
    });
  }
  return true;
}

// The entry points' work: x [m, k] (SwiGlu(x, up) where up is not null) times every output's
// weights, in passes of rows.
bool Multiply(const float* x, const float* up, std::span<const AmxOutput> outs, int64_t m,
              int64_t k) {
  if (!Available() || m <= 0 || k <= 0 || outs.empty()) return false;
  // x must be finite and below 2^127 (where hi could round to infinity); for FP8, below 2^112:
  // the unscaled codes (up to 448) times x, summed over a 128-column block, stay below 2^128.
  uint32_t limit = 0x7F000000u;
  for (const AmxOutput& out : outs) {
    if (out.n <= 0) return false;
    if (out.w->dtype == DType::kF8E4M3) {
      limit = 0x77800000u;
    } else if (out.w->dtype != DType::kBF16) {
      return false;
    }
  }
  // Rows of x per pass: one pass's split takes at most kSplitBytes, so that a long prompt does
  // not leave a buffer in proportion to its length behind. With more than one pass, all of x is
  // checked first, so that nothing is written to y unless every pass runs (not for SwiGlu(x, up),
  // which is made only as it is split: a later pass may find it out of range).
  const int64_t kpad = (k + kStep - 1) / kStep * kStep;
  const int64_t pass_rows =
      std::max<int64_t>(kMBlock, kSplitBytes / (2 * kParts * kpad) / kMBlock * kMBlock);
  if (m > pass_rows && up == nullptr) {
    std::atomic<bool> takes{true};
    ThreadPool::Default().ParallelFor(m, std::max<int64_t>(1, 4096 / k), [&](int64_t r0, int64_t r1) {
      if (AbsMaxBits(x + r0 * k, (r1 - r0) * k) >= limit) takes = false;
    });
    if (!takes) return false;
  }
  for (int64_t r0 = 0; r0 < m; r0 += pass_rows) {
    if (!MultiplyRows(x + r0 * k, up == nullptr ? nullptr : up + r0 * k, outs,
                      std::min(pass_rows, m - r0), k, r0, limit)) {
      return false;  // for x itself, only a single pass can find it out of range
    }
  }
  g_amx_calls.fetch_add(1, std::memory_order_relaxed);
  return true;
}

#endif  // GRPO_HAVE_AMX_CODE

}  // namespace

bool AmxAvailable() {
#if defined(GRPO_HAVE_AMX_CODE)
  return Available();
#else
  return false;
#endif
}

bool UseAmx(bool enable) {
#if defined(GRPO_HAVE_AMX_CODE)
  g_use_amx = enable && Available();
  return g_use_amx;
#else
  (void)enable;
  return false;
#endif
}

bool AmxInUse() {
#if defined(GRPO_HAVE_AMX_CODE)
  return g_use_amx;
#else
  return false;
#endif
}

int64_t AmxCalls() { return g_amx_calls.load(std::memory_order_relaxed); }

int64_t AmxSwiGluCalls() { return g_amx_swiglu_calls.load(std::memory_order_relaxed); }

bool LinearWeightsAmxSameInput(const float* x, std::span<const AmxOutput> outs, int64_t m,
                               int64_t k) {
#if defined(GRPO_HAVE_AMX_CODE)
  return Multiply(x, nullptr, outs, m, k);
#else
  (void)x, (void)outs, (void)m, (void)k;
  return false;
#endif
}

bool LinearWeightsAmxSwiGlu(const float* gate, const float* up, const HostWeights& w, float* y,
                            int64_t m, int64_t k, int64_t n) {
#if defined(GRPO_HAVE_AMX_CODE)
  const AmxOutput out{&w, y, n};
  if (!Multiply(gate, up, std::span<const AmxOutput>(&out, 1), m, k)) return false;
  g_amx_swiglu_calls.fetch_add(1, std::memory_order_relaxed);
  return true;
#else
  (void)gate, (void)up, (void)w, (void)y, (void)m, (void)k, (void)n;
  return false;
#endif
}

bool LinearWeightsAmx(const float* x, const HostWeights& w, float* y, int64_t m, int64_t k,
                      int64_t n) {
  const AmxOutput out{&w, y, n};
  return LinearWeightsAmxSameInput(x, std::span<const AmxOutput>(&out, 1), m, k);
}

}  // namespace grpo::cpu
