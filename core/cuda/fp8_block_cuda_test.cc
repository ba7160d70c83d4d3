// GPU test (tag `gpu`): the CUDA kernel against the CPU quantizer, bit for bit, and the CPU
// e4m3 rounding against PyTorch's torch.float8_e4m3fn where that python has it.
#include "core/cuda/fp8_block_cuda.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
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
