// Learning-rate schedule: linear warmup, then constant or cosine decay. A pure function of the
// optimizer step index s = 0, 1, 2, ... (the index of the step about to be taken; s = 0 is the
// first update):
//   warmup (s < W):     lr(s) = lr * (s + 1) / W          (reaches lr at s = W - 1, never 0)
//   kConstant (s >= W): lr(s) = lr
//   kCosine   (s >= W): p = min(1, (s - W) / max(1, T - W)),
//                       lr(s) = lr * (m + (1 - m) * 0.5 * (1 + cos(pi * p)))
// with W = warmup_steps, T = total_steps, m = min_lr_ratio; lr(s) = lr * m for s >= T.
// (HuggingFace's get_cosine_schedule_with_warmup uses s / W during warmup, so its first step has
// lr 0; ours starts at lr / W.)
#ifndef GRPO_LEARNER_SCHEDULE_H_
#define GRPO_LEARNER_SCHEDULE_H_

#include <cstdint>
#include <string_view>

#include "core/status.h"

namespace grpo {

enum class LrDecay { kConstant, kCosine };

struct LrScheduleOptions {
  double lr = 1e-6;            // peak learning rate, finite and >= 0
  int64_t warmup_steps = 0;    // W >= 0
  LrDecay decay = LrDecay::kConstant;
  int64_t total_steps = 0;     // T; kCosine needs T >= W and T > 0
  double min_lr_ratio = 0.0;   // m in [0, 1] (kCosine)
};

// "constant" | "cosine".
absl::StatusOr<LrDecay> ParseLrDecay(std::string_view name);

// OK, or InvalidArgument naming the bad field.
absl::Status ValidateLrSchedule(const LrScheduleOptions& options);

// lr(s) / lr, the formula above. `step` < 0 is treated as 0. Options are assumed valid.
double LrMultiplier(const LrScheduleOptions& options, int64_t step);
// lr(s).
double LearningRate(const LrScheduleOptions& options, int64_t step);

}  // namespace grpo

#endif  // GRPO_LEARNER_SCHEDULE_H_
