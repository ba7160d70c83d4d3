// Test data for the CPU kernels over narrow weights (quantized_gemm_test, amx_gemm_test): random
// matrices, and one weight in every served format with core's exact widening of each.
#ifndef GRPO_MODEL_OPS_CPU_QUANTIZED_TEST_WEIGHTS_H_
#define GRPO_MODEL_OPS_CPU_QUANTIZED_TEST_WEIGHTS_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/fp8_block.h"
#include "core/tensor.h"

namespace grpo::test {

// n values drawn from N(0, scale^2) with `seed`.
inline std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A [n, k] weight as f32, bf16 and FP8 blocks, with core's widening of the whole matrix
// (Tensor::ToF32 / DequantizeFp8Block): the values the kernels must multiply.
struct QuantizedWeights {
  Tensor f32, bf16, fp8, scale_inv;
  Tensor bf16_ref, fp8_ref;
};

inline QuantizedWeights MakeQuantizedWeights(int64_t n, int64_t k, uint32_t seed) {
  QuantizedWeights q;
  // Rows and column blocks of different magnitudes, so the FP8 blocks get different scales.
  std::vector<float> w = Random(n * k, seed, 0.05f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) w[r * k + c] *= 1.0f + static_cast<float>((r * 7 + c / 128) % 5);
  q.f32 = *Tensor::FromF32({n, k}, w);
  q.bf16 = *q.f32.CastTo(DType::kBF16);
  auto fp8 = QuantizeFp8Block(q.f32);
  EXPECT_TRUE(fp8.ok());
  q.fp8 = fp8->weight;
  q.scale_inv = fp8->scale_inv;
  q.bf16_ref = q.bf16.ToF32();
  q.fp8_ref = *DequantizeFp8Block(q.fp8, q.scale_inv);
  return q;
}

}  // namespace grpo::test

#endif  // GRPO_MODEL_OPS_CPU_QUANTIZED_TEST_WEIGHTS_H_
