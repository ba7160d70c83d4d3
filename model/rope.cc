#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace grpo {
namespace {

double YarnGetMscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

double YarnCorrectionDim(double rotations, double dim, double base, double max_pos) {
  return dim * std::log(max_pos / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

std::vector<double> RopeInverseFrequencies(const ModelConfig& c) {
  const int64_t dim = c.rope_dim();
  const int64_t half = dim / 2;
  const double base = c.rope_theta;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(base, static_cast<double>(2 * i) / dim);
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == RopeType::kLlama3) {
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / rs.factor;
      } else if (wavelen >= high_wavelen) {  // medium band: smooth blend
        const double smooth = (old_len / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
  } else if (rs.type == RopeType::kYarn) {
    const double max_pos = static_cast<double>(rs.original_max_position_embeddings > 0
                                                   ? rs.original_max_position_embeddings
                                                   : c.max_position_embeddings);
    double low = std::floor(YarnCorrectionDim(rs.beta_fast, dim, base, max_pos));
    double high = std::ceil(YarnCorrectionDim(rs.beta_slow, dim, base, max_pos));
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < half; ++i) {
      const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      const double extrapolation = 1.0 - ramp;
      const double interpolated = inv[i] / rs.factor;
      inv[i] = interpolated * (1.0 - extrapolation) + inv[i] * extrapolation;
    }
  }
  return inv;
}

double RopeAttentionFactor(const ModelConfig& c) {
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type != RopeType::kYarn) return 1.0;
  if (rs.mscale != 0.0 && rs.mscale_all_dim != 0.0) {
    return YarnGetMscale(rs.factor, rs.mscale) / YarnGetMscale(rs.factor, rs.mscale_all_dim);
  }
  return YarnGetMscale(rs.factor, 1.0);
}

RopeTables BuildRopeTables(const ModelConfig& c, int64_t positions) {
  RopeTables t;
  const std::vector<double> inv = RopeInverseFrequencies(c);
  const double factor = RopeAttentionFactor(c);
  t.half = static_cast<int64_t>(inv.size());
  t.positions = positions;
  t.cos.resize(positions * t.half);
  t.sin.resize(positions * t.half);
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t i = 0; i < t.half; ++i) {
      // HF computes the angle in f32 (position * inv_freq rounded to f32) before cos/sin.
      const float angle = static_cast<float>(p) * static_cast<float>(inv[i]);
      t.cos[p * t.half + i] = static_cast<float>(std::cos(static_cast<double>(angle)) * factor);
      t.sin[p * t.half + i] = static_cast<float>(std::sin(static_cast<double>(angle)) * factor);
    }
  }
  return t;
}

}  // namespace grpo
