// Every op of the CUDA backend against the CPU backend on fresh random inputs (odd sizes
// included), each output NaN-poisoned on both backends before the op runs. Closeness is the
// relative error of the whole output, ||gpu - cpu|| / ||cpu||: <= 1e-5 for f32 (TF32 is off
// everywhere), and for the bf16 and FP8 GEMMs against the CPU on activations rounded (bf16) or
// block-quantized (FP8) on the host as the GPU rounds them, with a looser bound against the
// unrounded ones; no NaN anywhere in the GPU's output; integer outputs (tokens, expert choices,
// groupings) are compared exactly. Each comparison prints "RELERR <what> <value>" for
// tools/gpu_check.sh's table. Needs a GPU (tagged `gpu`).
#include "model/ops/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "core/float_formats.h"
#include "core/fp8_block.h"
#include "model/ops/backend.h"
#include "model/ops/cuda/cuda_devices.h"

namespace grpo {
namespace {

constexpr double kF32Tolerance = 1e-5;
// The narrow GEMMs against the CPU on activations rounded as the GPU rounds them: the products
// are exact, the tensor cores' accumulation is not IEEE f32's (bf16: f32 adds that may truncate;
// FP8 on Hopper: about 14 bits within each 128-element block, promoted to f32 between blocks).
// Widening instead (the fallback) would differ by the activations' rounding, about 1e-3 (bf16)
// and 2e-2 (FP8) relative, so these bounds tell the paths apart.
constexpr double kBf16GemmTolerance = 1e-4;
constexpr double kFp8GemmTolerance = 1e-3;

Backend& Gpu() { return CudaBackend(); }

std::mt19937& Rng() {
  static std::mt19937 rng(20261206);
  return rng;
}

std::vector<float> RandomFloats(int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(Rng());
  return v;
}

std::vector<int32_t> RandomInts(int64_t n, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int32_t> d(lo, hi);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = d(Rng());
  return v;
}

// The same values on both backends.
struct Twin {
  Buffer cpu, gpu;
  Buffer& on(bool gpu_side) { return gpu_side ? gpu : cpu; }
};

Twin Both(const std::vector<float>& host) {
  return {Upload(CpuBackend(), host), Upload(Gpu(), host)};
}
Twin Both(const std::vector<int32_t>& host) {
  return {Upload(CpuBackend(), host), Upload(Gpu(), host)};
}
Twin Random(int64_t n, float scale = 1.0f) { return Both(RandomFloats(n, scale)); }
// An output: NaN on both sides until the op writes it.
Twin Poisoned(int64_t n) {
  return Both(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()));
}
Twin PoisonedInts(int64_t n) { return Both(std::vector<int32_t>(n, -12345)); }

// Runs f on the CPU backend, then on the GPU backend, and waits for the GPU.
template <class F>
void OnBoth(F&& f) {
  f(CpuBackend(), false);
  f(Gpu(), true);
  Gpu().Synchronize();
}

void ExpectCloseValues(const std::vector<float>& c, const std::vector<float>& g,
                       const std::string& what, double tolerance) {
  ASSERT_EQ(c.size(), g.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    ASSERT_FALSE(std::isnan(g[i])) << what << ": NaN at " << i << " (cpu " << c[i] << ")";
    diff += (static_cast<double>(g[i]) - c[i]) * (static_cast<double>(g[i]) - c[i]);
    norm += static_cast<double>(c[i]) * c[i];
  }
  const double rel = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
  std::printf("RELERR %s %.3g\n", what.c_str(), rel);
  EXPECT_LE(rel, tolerance) << what;
}

void ExpectClose(Twin& t, const std::string& what, double tolerance = kF32Tolerance) {
  ExpectCloseValues(DownloadF32(CpuBackend(), t.cpu), DownloadF32(Gpu(), t.gpu), what, tolerance);
}

// One closeness over several buffers taken together (the E matrices of a MoE layer).
void ExpectCloseAll(std::vector<Twin>& ts, const std::string& what) {
  std::vector<float> c, g;
  for (Twin& t : ts) {
    const std::vector<float> ct = DownloadF32(CpuBackend(), t.cpu), gt = DownloadF32(Gpu(), t.gpu);
    c.insert(c.end(), ct.begin(), ct.end());
    g.insert(g.end(), gt.begin(), gt.end());
  }
  ExpectCloseValues(c, g, what, kF32Tolerance);
}

void ExpectEqualInts(Twin& t, const std::string& what) {
  EXPECT_EQ(DownloadI32(Gpu(), t.gpu), DownloadI32(CpuBackend(), t.cpu)) << what;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status available = CudaAvailability();
    ASSERT_TRUE(available.ok()) << available;
  }
};

TEST_F(CudaBackendTest, TransfersRoundTripAndAreCounted) {
  const std::vector<float> host = RandomFloats(5 << 20);  // 20 MiB: more than one staging buffer
  Gpu().ResetTransferStats();
  Buffer b = Upload(Gpu(), host);
  Buffer c(&Gpu(), b.numel());
  Gpu().CopyDeviceToDevice(b.data(), c.data(), b.bytes());
  EXPECT_EQ(DownloadF32(Gpu(), c), host);
  const TransferStats s = Gpu().transfer_stats();
  EXPECT_EQ(s.host_to_device_bytes, b.bytes());
  EXPECT_EQ(s.device_to_host_bytes, b.bytes());
  EXPECT_EQ(s.host_to_device_calls, 1);
  // Small downloads are staged and land at Synchronize.
  std::vector<float> few(3, 0.0f);
  Gpu().CopyDeviceToHost(b.data(), few.data(), 12);
  Gpu().Synchronize();
  EXPECT_EQ(few, std::vector<float>(host.begin(), host.begin() + 3));
}

TEST_F(CudaBackendTest, OutOfMemoryIsABadAllocNamingTheBytes) {
  try {
    Buffer huge(&Gpu(), int64_t{1} << 48);
    FAIL() << "allocated 1 PiB of floats";
  } catch (const std::bad_alloc& e) {
    EXPECT_NE(std::string(e.what()).find("out of CUDA device memory allocating"), std::string::npos)
        << e.what();
  }
  Buffer after(&Gpu(), 1000);  // still usable
  Gpu().Zero(after.data(), 1000);
  EXPECT_EQ(DownloadF32(Gpu(), after), std::vector<float>(1000, 0.0f));
}

TEST_F(CudaBackendTest, ZeroAddScale) {
  const int64_t n = 100003;
  Twin x = Random(n), y = Random(n), z = Poisoned(n);
  OnBoth([&](Backend& be, bool g) {
    be.Add(x.on(g).data(), y.on(g).data(), n);
    be.Scale(y.on(g).data(), n, -0.37f);
    be.Zero(z.on(g).data(), n);
    be.Add(y.on(g).data(), z.on(g).data(), n);
  });
  ExpectClose(y, "Add+Scale");
  ExpectClose(z, "Zero+Add");
}

TEST_F(CudaBackendTest, GemmEveryTranspositionWithLeadingDimensions) {
  const int64_t m = 37, n = 53, k = 71;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
      Twin a = Random((ta ? k : m) * lda), b = Random((tb ? n : k) * ldb), c = Random(m * ldc);
      OnBoth([&](Backend& be, bool g) {
        be.Gemm(ta, tb, m, n, k, 0.7f, a.on(g).data(), lda, b.on(g).data(), ldb, 0.3f, c.on(g).data(), ldc);
      });
      ExpectClose(c, "Gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
    }
  }
}

TEST_F(CudaBackendTest, LinearAndItsBackward) {
  const int64_t m = 19, k = 97, n = 33;
  Twin x = Random(m * k), w = Random(n * k, 0.1f), b = Random(n), y = Poisoned(m * n);
  OnBoth([&](Backend& be, bool g) { be.Linear(x.on(g).data(), w.on(g).data(), b.on(g).data(), y.on(g).data(), m, k, n); });
  ExpectClose(y, "Linear");
  for (bool accumulate : {false, true}) {
    Twin dy = Random(m * n), dx = accumulate ? Random(m * k) : Poisoned(m * k);
    Twin dw = Random(n * k), db = Random(n);
    OnBoth([&](Backend& be, bool g) {
      be.LinearBackward(dy.on(g).data(), x.on(g).data(), w.on(g).data(), dx.on(g).data(), dw.on(g).data(),
                        db.on(g).data(), m, k, n, accumulate);
    });
    ExpectClose(dx, accumulate ? "LinearBackward dx (accumulate)" : "LinearBackward dx");
    ExpectClose(dw, "LinearBackward dw");
    ExpectClose(db, "LinearBackward db");
  }
}

// Bytes as float storage (Upload takes floats).
std::vector<float> AsFloatStorage(const std::vector<uint8_t>& bytes) {
  std::vector<float> f((bytes.size() + 3) / 4);
  std::memcpy(f.data(), bytes.data(), bytes.size());
  return f;
}

// Rounded to bf16 (nearest even) and back: the activations a bf16 GEMM multiplies.
std::vector<float> RoundedToBf16(std::vector<float> v) {
  for (float& x : v) x = Bf16ToF32(F32ToBf16(x));
  return v;
}

// Each row quantized per 1x128 block as core/fp8_block quantizes a [1, cols] matrix, and
// dequantized: the activations a block-scaled FP8 GEMM multiplies.
std::vector<float> Fp8RowBlocksDequantized(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> row(x.begin() + r * cols, x.begin() + (r + 1) * cols);
    absl::StatusOr<Fp8BlockWeight> q = QuantizeFp8Block(*Tensor::FromF32({1, cols}, row));
    EXPECT_TRUE(q.ok()) << q.status();
    absl::StatusOr<Tensor> back = DequantizeFp8Block(q->weight, q->scale_inv);
    EXPECT_TRUE(back.ok()) << back.status();
    std::memcpy(out.data() + r * cols, back->raw_data(), cols * sizeof(float));
  }
  return out;
}

// The CPU's values on the CPU side, the GPU's on the GPU side.
Twin Each(const std::vector<float>& cpu, const std::vector<float>& gpu) {
  return {Upload(CpuBackend(), cpu), Upload(Gpu(), gpu)};
}

// Random bf16 weights [rows, cols] (random floats truncated) as float storage.
std::vector<float> RandomBf16Storage(int64_t rows, int64_t cols) {
  std::vector<uint8_t> bf16(rows * cols * 2);
  for (int64_t i = 0; i < rows * cols; ++i) {
    uint32_t bits;
    const float v = RandomFloats(1)[0];
    std::memcpy(&bits, &v, 4);
    bf16[2 * i] = static_cast<uint8_t>(bits >> 16);
    bf16[2 * i + 1] = static_cast<uint8_t>(bits >> 24);
  }
  return AsFloatStorage(bf16);
}

// Random FP8 E4M3 codes [rows, cols] (no NaN codes) as float storage, and positive block scales.
std::vector<float> RandomFp8Storage(int64_t rows, int64_t cols) {
  std::vector<uint8_t> fp8(rows * cols);
  for (uint8_t& code : fp8) {
    code = static_cast<uint8_t>(RandomInts(1, 0, 255)[0]);
    if ((code & 0x7F) == 0x7F) code ^= 1;  // not NaN
  }
  return AsFloatStorage(fp8);
}
std::vector<float> RandomBlockScales(int64_t rows, int64_t cols) {
  std::vector<float> scales(((rows + 127) / 128) * ((cols + 127) / 128));
  for (float& s : scales) s = 0.001f + std::abs(RandomFloats(1)[0]) * 0.01f;
  return scales;
}

// Widening is exact for both formats. The bf16 product multiplies in bf16 (x rounded to bf16,
// compared with the CPU on the rounded x); the FP8 one has k = 300, not a multiple of 128, so it
// falls back to widening and equals the CPU's on the same x.
TEST_F(CudaBackendTest, LinearWeightsAndWideningOfBf16AndFp8) {
  const int64_t rows = 261, cols = 300, m = 5;  // odd: partial 128-blocks both ways
  Twin bf16_data = Both(RandomBf16Storage(rows, cols)), fp8_data = Both(RandomFp8Storage(rows, cols));
  Twin scale = Both(RandomBlockScales(rows, cols));
  for (DType dtype : {DType::kBF16, DType::kF8E4M3}) {
    Twin& data = dtype == DType::kBF16 ? bf16_data : fp8_data;
    auto view = [&](bool g) {
      WeightView v{dtype, data.on(g).raw(), dtype == DType::kF8E4M3 ? scale.on(g).data() : nullptr, rows, cols, 0};
      return v.Rows(7, rows - 9);  // a row slice: scales found by the row in the whole matrix
    };
    const int64_t n = rows - 9;
    const std::string name = dtype == DType::kBF16 ? "bf16" : "fp8";
    Twin widened = Poisoned(11 * cols);
    OnBoth([&](Backend& be, bool g) { be.WidenWeightRows(view(g), 120, 131, widened.on(g).data()); });
    ExpectClose(widened, "WidenWeightRows " + name, 0.0);
    const std::vector<float> x_host = RandomFloats(m * cols);
    Twin x = dtype == DType::kBF16 ? Each(RoundedToBf16(x_host), x_host) : Both(x_host);
    Twin b = Random(n), y = Poisoned(m * n);
    OnBoth([&](Backend& be, bool g) { be.LinearWeights(x.on(g).data(), view(g), b.on(g).data(), y.on(g).data(), m, cols, n); });
    ExpectClose(y, "LinearWeights " + name, dtype == DType::kBF16 ? kBf16GemmTolerance : kF32Tolerance);
  }
}

// bf16 weights multiply in bf16 with f32 accumulation (cuBLASLt, CUDA_R_16BF operands). Products
// of bf16 values are exact in f32, so against the CPU backend on the same activations rounded to
// bf16 only the accumulation differs (kBf16GemmTolerance); against the unrounded activations,
// within bf16's rounding (1e-2). The backward: dx = bf16(dy) . W likewise; dw and db in f32.
TEST_F(CudaBackendTest, LinearWeightsBf16GemmAndItsBackward) {
  const int64_t rows = 203, k = 320, m = 7, n = 184;  // the view: rows [8, 192)
  Twin data = Both(RandomBf16Storage(rows, k));
  auto view = [&](bool g) { return WeightView{DType::kBF16, data.on(g).raw(), nullptr, rows, k, 0}.Rows(8, n); };
  const std::vector<float> x_host = RandomFloats(m * k);
  Twin x = Each(RoundedToBf16(x_host), x_host), x_exact = Both(x_host), b = Random(n);
  Twin y = Poisoned(m * n), y_exact = Poisoned(m * n);
  OnBoth([&](Backend& be, bool g) {
    be.LinearWeights(x.on(g).data(), view(g), b.on(g).data(), y.on(g).data(), m, k, n);
    be.LinearWeights(x_exact.on(g).data(), view(g), b.on(g).data(), y_exact.on(g).data(), m, k, n);
  });
  ExpectClose(y, "LinearWeights bf16 GEMM (x rounded on the CPU)", kBf16GemmTolerance);
  ExpectClose(y_exact, "LinearWeights bf16 GEMM vs f32 x", 1e-2);
  for (bool accumulate : {false, true}) {
    const std::vector<float> dy_host = RandomFloats(m * n);
    Twin dy16 = Each(RoundedToBf16(dy_host), dy_host), dy = Both(dy_host);
    Twin dx = accumulate ? Random(m * k) : Poisoned(m * k), dw = Random(n * k), db = Random(n);
    OnBoth([&](Backend& be, bool g) {
      if (g) {
        be.LinearWeightsBackward(dy.gpu.data(), x_exact.gpu.data(), view(true), dx.gpu.data(), dw.gpu.data(),
                                 db.gpu.data(), m, k, n, accumulate);
        return;
      }
      // dx from the rounded dy; dw and db from the f32 one, as the GPU computes them.
      be.LinearWeightsBackward(dy16.cpu.data(), x_exact.cpu.data(), view(false), dx.cpu.data(), nullptr, nullptr,
                               m, k, n, accumulate);
      be.LinearWeightsBackward(dy.cpu.data(), x_exact.cpu.data(), view(false), nullptr, dw.cpu.data(), db.cpu.data(),
                               m, k, n, false);
    });
    ExpectClose(dx, accumulate ? "LinearWeightsBackward bf16 dx (accumulate)" : "LinearWeightsBackward bf16 dx",
                kBf16GemmTolerance);
    ExpectClose(dw, "LinearWeightsBackward bf16 dw");
    ExpectClose(db, "LinearWeightsBackward bf16 db");
  }
}

// FP8 weights whose shape fits cuBLASLt's block-scaled GEMM on Hopper (k a multiple of 128, n of
// 16, the view starting at a 128-row boundary): the activations are quantized on the device per
// 1x128 block of each row. Against the CPU backend on the activations quantized and dequantized the
// same way on the host (the values the GPU multiplies), only the accumulation differs
// (kFp8GemmTolerance); against the unquantized activations, within FP8's rounding (0.1; about 0.03
// expected). k/128 = 3 needs the weight's scale rows padded to 4 blocks and m = 5 padded to 16
// rows; k/128 = 4 and m = 16 need neither.
TEST_F(CudaBackendTest, LinearWeightsFp8BlockScaledGemm) {
  for (auto [k, m] : {std::pair<int64_t, int64_t>{384, 5}, {512, 16}}) {
    const int64_t rows = 400, n = 272;  // the view: rows [128, 400), its last scale block partial
    Twin data = Both(RandomFp8Storage(rows, k)), scales = Both(RandomBlockScales(rows, k));
    auto view = [&](bool g) {
      return WeightView{DType::kF8E4M3, data.on(g).raw(), scales.on(g).data(), rows, k, 0}.Rows(128, n);
    };
    const std::vector<float> x_host = RandomFloats(m * k);
    Twin x = Each(Fp8RowBlocksDequantized(x_host, m, k), x_host), x_exact = Both(x_host), b = Random(n);
    Twin y = Poisoned(m * n), y_exact = Poisoned(m * n);
    OnBoth([&](Backend& be, bool g) {
      be.LinearWeights(x.on(g).data(), view(g), b.on(g).data(), y.on(g).data(), m, k, n);
      be.LinearWeights(x_exact.on(g).data(), view(g), b.on(g).data(), y_exact.on(g).data(), m, k, n);
    });
    const std::string shape = " k=" + std::to_string(k) + " m=" + std::to_string(m);
    ExpectClose(y, "LinearWeights fp8 block GEMM (x quantized on the CPU)" + shape, kFp8GemmTolerance);
    ExpectClose(y_exact, "LinearWeights fp8 block GEMM vs f32 x" + shape, 0.1);
  }
}

// The device-side serving conversion, byte for byte against the CPU backend (which is checked
// against core/fp8_block and F32ToBf16), with the non-finite count.
TEST_F(CudaBackendTest, QuantizeWeightBf16AndFp8BlocksByteForByte) {
  const int64_t rows = 261, cols = 300;  // odd: partial 128-blocks both ways
  std::vector<float> w = RandomFloats(rows * cols, 0.05f);
  for (int64_t i = 0; i < cols; ++i) w[130 * cols + i] *= 1000.0f;  // one row of larger blocks
  for (int64_t r = 0; r < 128; ++r) {
    for (int64_t c = 256; c < cols; ++c) w[r * cols + c] = 0.0f;  // an all-zero block
  }
  w[5] = std::numeric_limits<float>::quiet_NaN();
  w[rows * cols - 1] = std::numeric_limits<float>::infinity();
  Twin src = Both(w);
  const int64_t scale_count = ((rows + 127) / 128) * ((cols + 127) / 128);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF8E4M3}) {
    const int64_t bytes = rows * cols * static_cast<int64_t>(DTypeSize(dtype));
    Twin dst = Poisoned((bytes + 3) / 4), scales = Poisoned(scale_count);
    Twin count = Both(std::vector<int32_t>{3});
    OnBoth([&](Backend& be, bool g) {
      be.QuantizeWeight(src.on(g).data(), rows, cols, dtype, dst.on(g).raw(),
                        dtype == DType::kF8E4M3 ? scales.on(g).data() : DevicePtr<float>(),
                        count.on(g).i32());
    });
    const std::string name(DTypeName(dtype));
    const std::vector<float> c = DownloadF32(CpuBackend(), dst.cpu), g = DownloadF32(Gpu(), dst.gpu);
    // The NaN/inf blocks are unspecified; compare every other byte.
    std::vector<uint8_t> cb(c.size() * 4), gb(g.size() * 4);
    std::memcpy(cb.data(), c.data(), cb.size());
    std::memcpy(gb.data(), g.data(), gb.size());
    int64_t differing = 0;
    const int64_t elem = static_cast<int64_t>(DTypeSize(dtype));
    for (int64_t i = 0; i < rows * cols; ++i) {
      const int64_t r = i / cols, col = i % cols;
      const bool poisoned_block = dtype == DType::kF8E4M3 && ((r < 128 && col < 128) || (r >= 256 && col >= 256));
      if (poisoned_block || i == 5 || i == rows * cols - 1) continue;
      if (std::memcmp(&cb[i * elem], &gb[i * elem], elem) != 0) ++differing;
    }
    EXPECT_EQ(differing, 0) << "QuantizeWeight " << name;
    EXPECT_EQ(DownloadI32(Gpu(), count.gpu), (std::vector<int32_t>{5})) << name;
    ExpectEqualInts(count, "QuantizeWeight nonfinite " + name);
  }
}

TEST_F(CudaBackendTest, EmbeddingAndItsBackward) {
  const int64_t vocab = 101, dim = 67, rows = 45;
  Twin ids = Both(RandomInts(rows, 0, 9));  // repeated ids: gradients add up
  Twin table = Random(vocab * dim), out = Poisoned(rows * dim), dout = Random(rows * dim), dtable = Random(vocab * dim);
  OnBoth([&](Backend& be, bool g) {
    be.Embedding(ids.on(g).i32(), table.on(g).data(), out.on(g).data(), rows, dim);
    be.EmbeddingBackward(ids.on(g).i32(), dout.on(g).data(), dtable.on(g).data(), rows, dim);
  });
  ExpectClose(out, "Embedding", 0.0);
  ExpectClose(dtable, "EmbeddingBackward");
}

TEST_F(CudaBackendTest, RmsNormAndItsBackward) {
  const int64_t rows = 23, dim = 1031;
  Twin x = Random(rows * dim, 3.0f), w = Random(dim), y = Poisoned(rows * dim), rstd = Poisoned(rows);
  Twin dy = Random(rows * dim), dx = Poisoned(rows * dim), dw = Random(dim);
  OnBoth([&](Backend& be, bool g) {
    be.RmsNorm(x.on(g).data(), w.on(g).data(), y.on(g).data(), rstd.on(g).data(), rows, dim, 1e-6f);
    be.RmsNormBackward(dy.on(g).data(), x.on(g).data(), w.on(g).data(), rstd.on(g).data(), dx.on(g).data(),
                       dw.on(g).data(), rows, dim);
  });
  ExpectClose(y, "RmsNorm y");
  ExpectClose(rstd, "RmsNorm rstd");
  ExpectClose(dx, "RmsNormBackward dx");
  ExpectClose(dw, "RmsNormBackward dw");
}

TEST_F(CudaBackendTest, RopeBothLayoutsAndInverse) {
  const int64_t rows = 17, heads = 3, head_dim = 24, max_pos = 64, half = 8;
  Twin positions = Both(RandomInts(rows, 0, max_pos - 1));
  Twin cos = Random(max_pos * half), sin = Random(max_pos * half);
  for (RopeLayout layout : {RopeLayout::kRotateHalf, RopeLayout::kInterleaved}) {
    for (bool inverse : {false, true}) {
      Twin x = Random(rows * heads * head_dim + 5);
      // Rotate dims [offset, offset + 2*half) of each head (MLA rotates a tail of the head).
      const RopeSpan span{rows, heads, heads * head_dim, head_dim, head_dim - 2 * half, half, layout};
      OnBoth([&](Backend& be, bool g) {
        be.Rope(x.on(g).data(), span, positions.on(g).i32(), cos.on(g).data(), sin.on(g).data(), inverse);
      });
      ExpectClose(x, std::string("Rope ") + (layout == RopeLayout::kRotateHalf ? "rotate-half" : "interleaved") +
                         (inverse ? " inverse" : ""));
    }
  }
}

// Attention and its backward on packed sequences of the given offsets, against the CPU.
void ExpectAttentionMatches(const std::vector<int64_t>& offsets, const AttentionHeads& heads,
                            const std::string& what) {
  const int64_t T = offsets.back();
  Twin q = Random(T * heads.nh * heads.dqk), k = Random(T * heads.nkv * heads.dqk), v = Random(T * heads.nkv * heads.dv);
  Twin out = Poisoned(T * heads.nh * heads.dv), lse = Poisoned(T * heads.nh);
  OnBoth([&](Backend& be, bool g) {
    be.Attention(q.on(g).data(), k.on(g).data(), v.on(g).data(), out.on(g).data(), lse.on(g).data(), offsets, heads);
  });
  ExpectClose(out, "Attention out " + what);
  ExpectClose(lse, "Attention lse " + what);
  Twin dout = Random(T * heads.nh * heads.dv);
  Twin dq = Poisoned(T * heads.nh * heads.dqk), dk = Poisoned(T * heads.nkv * heads.dqk), dv = Poisoned(T * heads.nkv * heads.dv);
  OnBoth([&](Backend& be, bool g) {
    be.AttentionBackward(dout.on(g).data(), q.on(g).data(), k.on(g).data(), v.on(g).data(), out.on(g).data(),
                         lse.on(g).data(), dq.on(g).data(), dk.on(g).data(), dv.on(g).data(), offsets, heads);
  });
  ExpectClose(dq, "AttentionBackward dq " + what);
  ExpectClose(dk, "AttentionBackward dk " + what);
  ExpectClose(dv, "AttentionBackward dv " + what);
  // No atomics: a second run gives the same bits.
  Buffer dq2(&Gpu(), dq.gpu.numel()), dk2(&Gpu(), dk.gpu.numel()), dv2(&Gpu(), dv.gpu.numel());
  Gpu().AttentionBackward(dout.gpu.data(), q.gpu.data(), k.gpu.data(), v.gpu.data(), out.gpu.data(),
                          lse.gpu.data(), dq2.data(), dk2.data(), dv2.data(), offsets, heads);
  EXPECT_EQ(DownloadF32(Gpu(), dq2), DownloadF32(Gpu(), dq.gpu)) << what;
  EXPECT_EQ(DownloadF32(Gpu(), dk2), DownloadF32(Gpu(), dk.gpu)) << what;
  EXPECT_EQ(DownloadF32(Gpu(), dv2), DownloadF32(Gpu(), dv.gpu)) << what;
}

// Tiles of 32 rows: sequences shorter than a tile, spanning several (70 = 32 + 32 + 6) and
// exactly one tile long; GQA, MQA and MHA; MLA-like dqk != dv; the largest head dims (the
// backward's 129 KiB of shared memory) and dims that are not multiples of 32.
TEST_F(CudaBackendTest, AttentionAndItsBackwardPackedGqaAsymmetricHeads) {
  ExpectAttentionMatches({0, 1, 8, 78, 91}, {6, 2, 40, 24, 1.0f / std::sqrt(40.0f)}, "gqa");
  ExpectAttentionMatches({0, 32, 32, 97}, {2, 1, 256, 256, 1.0f / 16.0f}, "mqa-256");
  ExpectAttentionMatches({0, 45}, {3, 3, 1, 33, 0.9f}, "mha-odd");
}

// A vector of `n` block ids, a fixed permutation of [0, n) (the tables' blocks out of order).
std::vector<int32_t> ShuffledBlocks(int64_t n) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(i);
  std::shuffle(ids.begin(), ids.end(), Rng());
  return ids;
}

// CachedAttention over a random pool for sequences with `past` cached positions and new rows
// q_offsets, against the CPU. Contexts past 256 positions split into chunks on the GPU (a call
// this small has far fewer blocks than the GPU has room for), so the combine runs too.
void ExpectCachedAttentionMatches(const std::vector<int64_t>& q_offsets,
                                  const std::vector<int64_t>& past, const AttentionHeads& heads,
                                  const CacheRowLayout& layout, int64_t row_width,
                                  const std::string& what) {
  const int64_t block_size = 16, num_layers = 2, layer = 1;
  std::vector<int64_t> table_offsets = {0};
  for (size_t s = 0; s < past.size(); ++s) {
    const int64_t context = past[s] + q_offsets[s + 1] - q_offsets[s];
    table_offsets.push_back(table_offsets.back() + (context + block_size - 1) / block_size);
  }
  const int64_t num_blocks = table_offsets.back() + 3;  // a few blocks no table names
  Twin pool = Random(num_blocks * num_layers * block_size * row_width);
  std::vector<int32_t> ids = ShuffledBlocks(num_blocks);
  ids.resize(table_offsets.back());
  Twin table_ids = Both(ids);
  const int64_t Tn = q_offsets.back();
  Twin q = Random(Tn * heads.nh * heads.dqk), out = Poisoned(Tn * heads.nh * heads.dv);
  OnBoth([&](Backend& be, bool g) {
    const KvCachePool kv{pool.on(g).data(), num_blocks, num_layers, block_size, row_width};
    be.CachedAttention(q.on(g).data(), out.on(g).data(), q_offsets, past, kv, layer,
                       BlockTables{table_ids.on(g).i32(), table_offsets}, heads, layout);
  });
  ExpectClose(out, "CachedAttention " + what);
}

// Decode at 701 positions (3 chunks), a sequence with no new rows, a chunked prefill of 40 rows
// after 300 (4 tiles of (row, head) pairs, 2 chunks, rows ending inside the second), a short one.
TEST_F(CudaBackendTest, CachedAttentionSplitsLongContextsAndCombinesTheChunks) {
  const AttentionHeads heads{6, 2, 40, 24, 1.0f / std::sqrt(40.0f)};
  const CacheRowLayout layout{1, 1 + heads.nkv * heads.dqk};
  ExpectCachedAttentionMatches({0, 1, 1, 41, 43}, {700, 0, 300, 5}, heads, layout,
                               1 + heads.nkv * (heads.dqk + heads.dv) + 2, "split gqa");
}

// MLA's absorbed decode at DeepSeek-V3's sizes: one latent row per position read by every head,
// keys the whole row (512 latent + 64 rope dims), values its first 512 (16 slots per lane).
TEST_F(CudaBackendTest, CachedAttentionAbsorbedMlaLatentRows) {
  const AttentionHeads heads{16, 1, 576, 512, 1.0f / std::sqrt(192.0f)};
  ExpectCachedAttentionMatches({0, 1, 3}, {300, 1000}, heads, {0, 0}, 576, "mla-absorbed");
}

TEST_F(CudaBackendTest, PagedCacheWriteAttendAndCopyBlocks) {
  const AttentionHeads heads{4, 2, 16, 12, 0.25f};
  const CacheRowLayout layout{3, 3 + heads.nkv * heads.dqk};  // rows with a 3-float prefix
  const int64_t row_width = 3 + heads.nkv * (heads.dqk + heads.dv) + 1;
  const int64_t num_blocks = 7, num_layers = 2, block_size = 4, layer = 1;
  Twin pool = Random(num_blocks * num_layers * block_size * row_width);
  // Sequence 0: 5 cached + 1 new (decode); sequence 1: 0 cached + 3 new (prefill); 2: 6 + 2.
  const std::vector<int64_t> past = {5, 0, 6}, q_offsets = {0, 1, 4, 6}, table_offsets = {0, 2, 3, 5};
  Twin ids = Both(std::vector<int32_t>{3, 0, 5, 6, 2});
  const int64_t Tn = q_offsets.back();
  auto kv = [&](bool g) { return KvCachePool{pool.on(g).data(), num_blocks, num_layers, block_size, row_width}; };
  auto tables = [&](bool g) { return BlockTables{ids.on(g).i32(), table_offsets}; };
  const int64_t kv_width = heads.nkv * (heads.dqk + heads.dv);
  Twin src = Random(Tn * (kv_width + 2));
  Twin q = Random(Tn * heads.nh * heads.dqk), out = Poisoned(Tn * heads.nh * heads.dv);
  OnBoth([&](Backend& be, bool g) {
    be.WriteCache(src.on(g).data(), kv_width + 2, kv(g), layer, tables(g), q_offsets, past, layout.k_offset, kv_width);
    be.CachedAttention(q.on(g).data(), out.on(g).data(), q_offsets, past, kv(g), layer, tables(g), heads, layout);
  });
  ExpectClose(pool, "WriteCache pool", 0.0);
  ExpectClose(out, "CachedAttention");
  Twin from = Both(std::vector<int32_t>{3, 5}), to = Both(std::vector<int32_t>{1, 4});
  OnBoth([&](Backend& be, bool g) { be.CopyCacheBlocks(kv(g), from.on(g).i32(), to.on(g).i32(), 2); });
  ExpectClose(pool, "CopyCacheBlocks pool", 0.0);
}

TEST_F(CudaBackendTest, SwiGluAndItsBackward) {
  const int64_t n = 70001;
  Twin gate = Random(n, 4.0f), up = Random(n), out = Poisoned(n), dout = Random(n), dgate = Poisoned(n), dup = Poisoned(n);
  OnBoth([&](Backend& be, bool g) {
    be.SwiGlu(gate.on(g).data(), up.on(g).data(), out.on(g).data(), n);
    be.SwiGluBackward(dout.on(g).data(), gate.on(g).data(), up.on(g).data(), dgate.on(g).data(), dup.on(g).data(), n);
  });
  ExpectClose(out, "SwiGlu");
  ExpectClose(dgate, "SwiGluBackward dgate");
  ExpectClose(dup, "SwiGluBackward dup");
}

TEST_F(CudaBackendTest, RowsGatherScatterCopyDot) {
  const int64_t src_rows = 29, n = 41, dim = 37;
  Twin src = Random(src_rows * dim), rows = Both(RandomInts(n, 0, src_rows - 1)), scale = Random(n);
  Twin gathered = Poisoned(n * dim), unscaled = Poisoned(n * dim), scattered = Random(src_rows * dim);
  Twin dots = Poisoned(n), copied = Random(n * (dim + 4)), b = Random(n * dim);
  OnBoth([&](Backend& be, bool g) {
    be.GatherRows(src.on(g).data(), rows.on(g).i32(), scale.on(g).data(), gathered.on(g).data(), n, dim);
    be.GatherRows(src.on(g).data(), rows.on(g).i32(), nullptr, unscaled.on(g).data(), n, dim);
    be.ScatterAddRows(gathered.on(g).data(), rows.on(g).i32(), scale.on(g).data(), scattered.on(g).data(), n, dim);
    be.RowDot(gathered.on(g).data(), b.on(g).data(), dots.on(g).data(), n, dim);
    be.CopyRows(b.on(g).data(), dim, copied.on(g).data(), dim + 4, n, dim - 3, /*accumulate=*/true);
    be.CopyRows(b.on(g).data() + 1, dim, copied.on(g).data() + 2, dim + 4, n - 1, 2, /*accumulate=*/false);
  });
  ExpectClose(gathered, "GatherRows scaled");
  ExpectClose(unscaled, "GatherRows", 0.0);
  ExpectClose(scattered, "ScatterAddRows");
  ExpectClose(dots, "RowDot");
  ExpectClose(copied, "CopyRows");
}

TEST_F(CudaBackendTest, RoutingSoftmaxAndGroupLimitedSigmoidWithBias) {
  const int64_t tokens = 13;
  RouterSpec softmax{RouterSpec::Scoring::kSoftmax, 8, 2, 1, 1, true, 1.0};
  RouterSpec sigmoid{RouterSpec::Scoring::kSigmoid, 16, 4, 4, 2, true, 2.5};
  for (const RouterSpec& spec : {softmax, sigmoid}) {
    const std::string name = spec.scoring == RouterSpec::Scoring::kSoftmax ? "softmax" : "sigmoid";
    const int64_t E = spec.num_experts, k = spec.top_k;
    Twin logits = Random(tokens * E, 2.0f), bias = Random(E, 0.3f);
    Twin experts = PoisonedInts(tokens * k), scores = Poisoned(tokens * E), weights = Poisoned(tokens * k);
    const bool with_bias = spec.scoring == RouterSpec::Scoring::kSigmoid;
    OnBoth([&](Backend& be, bool g) {
      be.Route(spec, logits.on(g).data(), with_bias ? DevicePtr<const float>(bias.on(g).data()) : nullptr, tokens,
               false, experts.on(g).i32(), scores.on(g).data(), weights.on(g).data());
    });
    ExpectEqualInts(experts, "Route experts " + name);
    ExpectClose(scores, "Route scores " + name);
    ExpectClose(weights, "Route weights " + name);
    // Replay: forced choices give the same weights.
    Twin forced_weights = Poisoned(tokens * k), forced_scores = Poisoned(tokens * E);
    OnBoth([&](Backend& be, bool g) {
      be.Route(spec, logits.on(g).data(), nullptr, tokens, true, experts.on(g).i32(), forced_scores.on(g).data(),
               forced_weights.on(g).data());
    });
    ExpectClose(forced_weights, "Route forced weights " + name);
    Twin dweights = Random(tokens * k), dlogits = Poisoned(tokens * E);
    OnBoth([&](Backend& be, bool g) {
      be.RouteBackward(spec, scores.on(g).data(), experts.on(g).i32(), dweights.on(g).data(), tokens, dlogits.on(g).data());
    });
    ExpectClose(dlogits, "RouteBackward " + name);
  }
}

// k distinct experts per token (as Route chooses them) among the first E - 1: expert E - 1 has
// no rows.
std::vector<int32_t> DistinctExperts(int64_t tokens, int64_t k, int64_t E) {
  std::vector<int32_t> all(E - 1), out;
  for (int32_t e = 0; e < E - 1; ++e) all[e] = e;
  for (int64_t t = 0; t < tokens; ++t) {
    std::shuffle(all.begin(), all.end(), Rng());
    out.insert(out.end(), all.begin(), all.begin() + k);
  }
  return out;
}

// The E experts' f32 views of one of a MoE layer's matrices ([rows, cols] each).
std::vector<WeightView> ExpertViews(std::vector<Twin>& m, bool g, int64_t rows, int64_t cols) {
  std::vector<WeightView> v;
  for (Twin& t : m) v.push_back(WeightView::F32(t.on(g).data(), rows, cols));
  return v;
}

std::vector<DevicePtr<float>> ExpertGrads(std::vector<Twin>& m, bool g) {
  std::vector<DevicePtr<float>> v;
  for (Twin& t : m) v.push_back(t.on(g).data());
  return v;
}

std::vector<Twin> RandomMatrices(int64_t count, int64_t numel, float scale) {
  std::vector<Twin> m;
  for (int64_t i = 0; i < count; ++i) m.push_back(Random(numel, scale));
  return m;
}

// The routed-expert block on both paths of the CUDA one: a decode-sized batch (experts x tokens
// <= 8192: every expert over padded rows, no sync) and a prefill-sized one (exact rows after
// reading the offsets back). The permutation is compared exactly; an expert without rows keeps
// its gradients.
TEST_F(CudaBackendTest, MoeExpertsAndItsBackwardPaddedAndExactRows) {
  const int64_t E = 8, k = 2, hidden = 48, inter = 40;
  std::vector<Twin> gate = RandomMatrices(E, inter * hidden, 0.2f);
  std::vector<Twin> up = RandomMatrices(E, inter * hidden, 0.2f);
  std::vector<Twin> down = RandomMatrices(E, hidden * inter, 0.2f);
  for (int64_t tokens : {13, 1100}) {
    const std::string name = E * tokens <= 8192 ? "padded" : "exact";
    const int64_t n = tokens * k;
    Twin x = Random(tokens * hidden), experts = Both(DistinctExperts(tokens, k, E));
    Twin weights = Random(n, 0.5f), y = Poisoned(tokens * hidden);
    Twin slots = PoisonedInts(n), offsets = PoisonedInts(E + 1);
    Twin act_gate = Poisoned(n * inter), act_up = Poisoned(n * inter), act = Poisoned(n * inter);
    Twin out = Poisoned(n * hidden);
    auto acts = [&](bool g) {
      return MoeExpertActs{slots.on(g).i32(), offsets.on(g).i32(), act_gate.on(g).data(),
                           act_up.on(g).data(), act.on(g).data(), out.on(g).data()};
    };
    OnBoth([&](Backend& be, bool g) {
      const std::vector<WeightView> gv = ExpertViews(gate, g, inter, hidden),
                                    uv = ExpertViews(up, g, inter, hidden),
                                    dv = ExpertViews(down, g, hidden, inter);
      be.MoeExperts({gv, uv, dv, hidden, inter}, x.on(g).data(), experts.on(g).i32(),
                    weights.on(g).data(), tokens, k, acts(g), y.on(g).data());
    });
    ExpectEqualInts(slots, "MoeExperts slots " + name);
    ExpectEqualInts(offsets, "MoeExperts offsets " + name);
    ExpectClose(act_gate, "MoeExperts gate " + name);
    ExpectClose(act_up, "MoeExperts up " + name);
    ExpectClose(act, "MoeExperts act " + name);
    ExpectClose(out, "MoeExperts out " + name);
    ExpectClose(y, "MoeExperts " + name);

    std::vector<Twin> g_gate = RandomMatrices(E, inter * hidden, 1.0f);
    std::vector<Twin> g_up = RandomMatrices(E, inter * hidden, 1.0f);
    std::vector<Twin> g_down = RandomMatrices(E, hidden * inter, 1.0f);
    Twin dy = Random(tokens * hidden), dx = Poisoned(tokens * hidden), dweights = Poisoned(n);
    const std::vector<float> rowless = DownloadF32(CpuBackend(), g_down[E - 1].cpu);
    OnBoth([&](Backend& be, bool g) {
      const std::vector<WeightView> gv = ExpertViews(gate, g, inter, hidden),
                                    uv = ExpertViews(up, g, inter, hidden),
                                    dv = ExpertViews(down, g, hidden, inter);
      const std::vector<DevicePtr<float>> gg = ExpertGrads(g_gate, g), gu = ExpertGrads(g_up, g),
                                          gd = ExpertGrads(g_down, g);
      be.MoeExpertsBackward({gv, uv, dv, hidden, inter}, {gg, gu, gd}, x.on(g).data(),
                            weights.on(g).data(), acts(g), dy.on(g).data(), tokens, k,
                            dx.on(g).data(), dweights.on(g).data());
    });
    ExpectClose(dx, "MoeExpertsBackward dx " + name);
    ExpectClose(dweights, "MoeExpertsBackward dweights " + name);
    ExpectCloseAll(g_gate, "MoeExpertsBackward gate grads " + name);
    ExpectCloseAll(g_up, "MoeExpertsBackward up grads " + name);
    ExpectCloseAll(g_down, "MoeExpertsBackward down grads " + name);
    EXPECT_EQ(DownloadF32(Gpu(), g_down[E - 1].gpu), rowless) << "the expert without rows";
  }
}

TEST_F(CudaBackendTest, LogSoftmaxTargetsEntropyAndBackward) {
  const int64_t rows = 9, vocab = 5003;
  std::vector<int32_t> targets = RandomInts(rows, 0, vocab - 1);
  targets[4] = -1;  // skipped
  Twin logits = Random(rows * vocab, 3.0f), t = Both(targets);
  Twin logprobs = Both(std::vector<float>(rows, 0.5f)), entropy = Poisoned(rows);
  std::vector<float> weights = RandomFloats(rows);
  weights[2] = 0.0f;
  Twin w = Both(weights), dlogits = Poisoned(rows * vocab);
  OnBoth([&](Backend& be, bool g) {
    be.LogSoftmaxTargets(logits.on(g).data(), t.on(g).i32(), logprobs.on(g).data(), entropy.on(g).data(), rows, vocab);
    be.LogSoftmaxTargetsBackward(logits.on(g).data(), t.on(g).i32(), w.on(g).data(), dlogits.on(g).data(), rows, vocab);
  });
  ExpectClose(logprobs, "LogSoftmaxTargets logprobs");
  ExpectClose(entropy, "LogSoftmaxTargets entropy");
  ExpectClose(dlogits, "LogSoftmaxTargetsBackward");
}

TEST_F(CudaBackendTest, DivergenceRowsBothKindsAndBackward) {
  const int64_t rows = 7, vocab = 5003;
  Twin logits = Random(rows * vocab, 3.0f), teacher = Random(rows * vocab, 4.0f);
  std::vector<float> weights = RandomFloats(rows);
  weights[3] = 0.0f;  // left as it is
  Twin w = Both(weights);
  for (Divergence kind : {Divergence::kReverseKl, Divergence::kForwardKl}) {
    const std::string name = kind == Divergence::kReverseKl ? "reverse" : "forward";
    Twin out = Poisoned(rows), dlogits = Random(rows * vocab);  // the backward adds to it
    OnBoth([&](Backend& be, bool g) {
      be.DivergenceRows(kind, logits.on(g).data(), teacher.on(g).data(), out.on(g).data(), rows, vocab);
      be.DivergenceRowsBackward(kind, logits.on(g).data(), teacher.on(g).data(), w.on(g).data(),
                                dlogits.on(g).data(), rows, vocab);
    });
    ExpectClose(out, "DivergenceRows " + name);
    ExpectClose(dlogits, "DivergenceRowsBackward " + name);
  }
}

TEST_F(CudaBackendTest, SamplingGreedyFilteredAndUnfiltered) {
  const int64_t vocab = 3001, nrows = 4;
  Twin logits = Random(nrows * vocab, 3.0f);
  std::vector<SamplingRow> draws = {
      {0.0, 1.0, 0, 0.0, 0.5, 0},    // greedy
      {0.7, 1.0, 0, 0.0, 0.31, 1},   // temperature only
      {1.0, 1.0, 20, 0.0, 0.77, 2},  // top-k
      {1.0, 0.9, 0, 0.0, 0.12, 2},   // top-p, same row
      {1.3, 1.0, 0, 0.1, 0.93, 3},   // min-p
      {0.8, 0.8, 50, 0.05, 0.5, 1},  // all three
  };
  for (int i = 0; i < 10; ++i) {  // more draws from fresh uniforms
    draws.push_back({0.9, i % 2 ? 0.95 : 1.0, i % 3 ? 0 : 40, 0.0, std::uniform_real_distribution<double>(0, 1)(Rng()), i % nrows});
  }
  const int64_t n = static_cast<int64_t>(draws.size());
  Twin tokens = PoisonedInts(n), lp = Poisoned(n), raw = Poisoned(n);
  OnBoth([&](Backend& be, bool g) {
    be.Sample(logits.on(g).data(), vocab, draws, tokens.on(g).i32(), lp.on(g).data(), raw.on(g).data());
  });
  ExpectEqualInts(tokens, "Sample tokens");
  ExpectClose(lp, "Sample logprobs");
  ExpectClose(raw, "Sample raw logprobs");
}

TEST_F(CudaBackendTest, SumSquaresAndAdamW) {
  const int64_t n = 300007;
  Twin x = Random(n);
  Buffer cpu_out(&CpuBackend(), 1, DType::kF64), gpu_out(&Gpu(), 1, DType::kF64);
  CpuBackend().SumSquares(x.cpu.data(), n, cpu_out.f64());
  Gpu().SumSquares(x.gpu.data(), n, gpu_out.f64());
  double c = 0, g = 0;
  CpuBackend().CopyDeviceToHost(cpu_out.f64(), &c, 8);
  Gpu().CopyDeviceToHost(gpu_out.f64(), &g, 8);
  CpuBackend().Synchronize();
  Gpu().Synchronize();
  std::printf("RELERR SumSquares %.3g\n", std::abs(g - c) / c);
  EXPECT_LE(std::abs(g - c) / c, 1e-12);

  Twin p = Random(n), grad = Random(n), m = Random(n, 0.1f), v = Both([&] {
    std::vector<float> h = RandomFloats(n, 0.1f);
    for (float& e : h) e = e * e;
    return h;
  }());
  const AdamWScalars s{0.999f, 0.9f, 0.1f, 0.999f, 0.001f, -1e-3f, 0.7f, 1e-8f};
  OnBoth([&](Backend& be, bool g2) {
    be.AdamW(p.on(g2).data(), grad.on(g2).data(), m.on(g2).data(), v.on(g2).data(), n, s);
  });
  ExpectClose(p, "AdamW p");
  ExpectClose(m, "AdamW m");
  ExpectClose(v, "AdamW v");
}

}  // namespace
}  // namespace grpo
