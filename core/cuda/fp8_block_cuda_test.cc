// GPU test (tag `gpu`): the CUDA kernel against the CPU quantizer, bit for bit, and the CPU
// e4m3 rounding against PyTorch's torch.float8_e4m3fn where that python has it.
#include "core/cuda/fp8_block_cuda.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/float_formats.h"

namespace grpo {
namespace {

TEST(Fp8BlockCuda, MatchesCpuBitForBit) {
  ASSERT_GT(cuda::DeviceCount(), 0) << "this test is tagged gpu and needs a CUDA device";
  std::mt19937 rng(3);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{128, 128}, {300, 520}, {1, 7}, {1024, 4096}}) {
    std::normal_distribution<float> dist(0.0f, 0.03f);
    std::vector<float> v(rows * cols);
    for (float& x : v) x = dist(rng);
    // One all-zero tile and a few large outliers.
    if (rows >= 256) {
      for (int64_t r = 128; r < 256; ++r)
        for (int64_t c = 0; c < 128; ++c) v[r * cols + c] = 0.0f;
    }
    v[0] = 300.0f;
    Tensor w = *Tensor::FromF32({rows, cols}, v);
    auto cpu = QuantizeFp8Block(w);
    auto gpu = cuda::QuantizeFp8BlockOnGpu(w);
    ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
    ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
    ASSERT_EQ(std::memcmp(cpu->scale_inv.raw_data(), gpu->scale_inv.raw_data(), cpu->scale_inv.nbytes()), 0);
    ASSERT_EQ(std::memcmp(cpu->weight.raw_data(), gpu->weight.raw_data(), cpu->weight.nbytes()), 0)
        << rows << "x" << cols;
  }
}

// The activation quantizer (1x128 blocks of each row) against QuantizeFp8Block of each row as a
// [1, cols] matrix, bit for bit: codes, the block-major scale layout, the padding rows.
TEST(Fp8BlockCuda, RowBlocksMatchCpuRowByRowBitForBit) {
  ASSERT_GT(cuda::DeviceCount(), 0) << "this test is tagged gpu and needs a CUDA device";
  std::mt19937 rng(7);
  for (auto [rows, padded, cols] : {std::tuple<int64_t, int64_t, int64_t>{5, 8, 384}, {3, 3, 300}, {1, 4, 7}}) {
    std::normal_distribution<float> dist(0.0f, 2.0f);
    std::vector<float> v(rows * cols);
    for (float& x : v) x = dist(rng);
    for (int64_t c = 0; c < std::min<int64_t>(cols, 128); ++c) v[c] = 0.0f;  // an all-zero block
    v[rows * cols - 1] = 5000.0f;                                              // an outlier
    const int64_t blocks = (cols + 127) / 128;
    float* d_x = nullptr;
    uint8_t* d_q = nullptr;
    float* d_s = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_x), v.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_q), padded * cols), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_s), blocks * padded * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_x, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemset(d_q, 0x55, padded * cols), cudaSuccess);  // poison
    const absl::Status st = cuda::QuantizeFp8RowBlocksDevice(d_x, rows, padded, cols, d_q, d_s, nullptr);
    ASSERT_TRUE(st.ok()) << st;
    std::vector<uint8_t> q(padded * cols);
    std::vector<float> s(blocks * padded);
    ASSERT_EQ(cudaMemcpy(q.data(), d_q, q.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(s.data(), d_s, s.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(d_x);
    cudaFree(d_q);
    cudaFree(d_s);
    for (int64_t r = 0; r < padded; ++r) {
      std::vector<uint8_t> want_q(cols, 0);
      std::vector<float> want_s(blocks, 1.0f);
      if (r < rows) {
        auto row = QuantizeFp8Block(*Tensor::FromF32({1, cols}, std::vector<float>(v.begin() + r * cols, v.begin() + (r + 1) * cols)));
        ASSERT_TRUE(row.ok()) << row.status();
        std::memcpy(want_q.data(), row->weight.raw_data(), cols);
        std::memcpy(want_s.data(), row->scale_inv.raw_data(), blocks * sizeof(float));
      }
      for (int64_t b = 0; b < blocks; ++b) {
        ASSERT_EQ(s[b * padded + r], want_s[b]) << rows << "x" << cols << " row " << r << " block " << b;
      }
      ASSERT_EQ(std::memcmp(q.data() + r * cols, want_q.data(), cols), 0) << rows << "x" << cols << " row " << r;
    }
  }
  EXPECT_FALSE(cuda::QuantizeFp8RowBlocksDevice(nullptr, 4, 3, 128, nullptr, nullptr, nullptr).ok());
}

TEST(Fp8BlockCuda, CpuRoundingMatchesTorchFloat8) {
  // The GPU machine's python has a recent torch with float8; Debian's 1.13 does not.
  if (std::system("python3 -c 'import torch; torch.float8_e4m3fn' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no torch with float8_e4m3fn on this machine";
  }
  std::vector<float> xs;
  for (int c = 0; c < 0x7F; ++c) {
    const float v = Fp8E4M3ToF32(static_cast<uint8_t>(c));
    const float next = Fp8E4M3ToF32(static_cast<uint8_t>(c + 1));
    const float mid = (v + next) / 2;
    for (float x : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      if (x <= 448.0f) { xs.push_back(x); xs.push_back(-x); }
    }
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-448.0f, 448.0f);
  for (int i = 0; i < 100000; ++i) xs.push_back(d(rng));
  const std::string in = ::testing::TempDir() + "/f8_in.f32", out = ::testing::TempDir() + "/f8_out.u8";
  FILE* f = std::fopen(in.c_str(), "wb");
  std::fwrite(xs.data(), 4, xs.size(), f);
  std::fclose(f);
  const std::string cmd = "python3 -c \"import torch,sys; x=torch.from_file('" + in +
                          "', size=" + std::to_string(xs.size()) +
                          ", dtype=torch.float32); open('" + out +
                          "','wb').write(x.to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes())\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::vector<uint8_t> ref(xs.size());
  f = std::fopen(out.c_str(), "rb");
  ASSERT_EQ(std::fread(ref.data(), 1, ref.size(), f), ref.size());
  std::fclose(f);
  for (size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(F32ToFp8E4M3(xs[i]), ref[i]) << xs[i];
}

}  // namespace
}  // namespace grpo
