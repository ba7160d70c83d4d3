#include "learner/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

namespace grpo {

absl::StatusOr<LrDecay> ParseLrDecay(std::string_view name) {
  if (name == "constant") return LrDecay::kConstant;
  if (name == "cosine") return LrDecay::kCosine;
  return absl::InvalidArgumentError("lr decay: unknown name \"" + std::string(name) +
                                 "\" (expected constant or cosine)");
}

absl::Status ValidateLrSchedule(const LrScheduleOptions& o) {
  if (!(o.lr >= 0) || !std::isfinite(o.lr)) {
    return absl::InvalidArgumentError("lr must be finite and >= 0, got " + std::to_string(o.lr));
  }
  if (o.warmup_steps < 0) {
    return absl::InvalidArgumentError("warmup_steps must be >= 0, got " + std::to_string(o.warmup_steps));
  }
  if (o.decay == LrDecay::kCosine) {
    if (o.total_steps <= 0 || o.total_steps < o.warmup_steps) {
      return absl::InvalidArgumentError("total_steps must be > 0 and >= warmup_steps (" +
                                     std::to_string(o.warmup_steps) + ") for cosine decay, got " +
                                     std::to_string(o.total_steps));
    }
    if (!(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1)) {
      return absl::InvalidArgumentError("min_lr_ratio must be in [0, 1], got " +
                                     std::to_string(o.min_lr_ratio));
    }
  }
  return absl::OkStatus();
}

double LrMultiplier(const LrScheduleOptions& o, int64_t step) {
  const int64_t s = std::max<int64_t>(step, 0);
  if (s < o.warmup_steps) {
    return static_cast<double>(s + 1) / static_cast<double>(o.warmup_steps);
  }
  if (o.decay == LrDecay::kConstant) return 1.0;
  const double span = static_cast<double>(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
  const double p = std::min(1.0, static_cast<double>(s - o.warmup_steps) / span);
  return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

double LearningRate(const LrScheduleOptions& o, int64_t step) { return o.lr * LrMultiplier(o, step); }

}  // namespace grpo
