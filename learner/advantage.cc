#include "learner/advantage.h"

#include <cmath>
#include <string>
#include <vector>

namespace grpo {

AdvantageOptions AdvantagePreset(Objective objective) {
  AdvantageOptions o;
  o.scale = objective == Objective::kDrGrpo ? AdvantageScale::kNone : AdvantageScale::kStd;
  return o;
}

absl::StatusOr<AdvantageEstimator> ParseAdvantageEstimator(std::string_view name) {
  if (name == "group_norm") return AdvantageEstimator::kGroupNorm;
  if (name == "rloo") return AdvantageEstimator::kRloo;
  if (name == "reinforce_pp") return AdvantageEstimator::kReinforcePP;
  if (name == "reinforce_pp_baseline") return AdvantageEstimator::kReinforcePPBaseline;
  return absl::InvalidArgumentError("advantage estimator: unknown name \"" + std::string(name) +
                                    "\" (expected group_norm, rloo, reinforce_pp or reinforce_pp_baseline)");
}

namespace {

// REINFORCE++: values -> (v - mean) / (std + epsilon) over all of them, in place; exactly 0
// when they are all equal.
void NormalizeOverBatch(const AdvantageOptions& options, std::vector<double>* values, GroupAdvantages* out) {
  const size_t n = values->size();
  bool all_equal = true;
  double sum = 0;
  for (double v : *values) {
    sum += v;
    all_equal = all_equal && v == values->front();
  }
  if (all_equal) {
    out->batch_mean = n ? values->front() : 0.0;
    out->batch_std = 0;
    values->assign(n, 0.0);
    return;
  }
  const double mean = sum / static_cast<double>(n);
  double ss = 0;
  for (double v : *values) ss += (v - mean) * (v - mean);
  const double denom_n = options.std == StdEstimator::kUnbiased ? static_cast<double>(n - 1) : static_cast<double>(n);
  const double std = std::sqrt(ss / denom_n);
  out->batch_mean = mean;
  out->batch_std = std;
  for (double& v : *values) v = (v - mean) / (std + options.epsilon);
}

}  // namespace

absl::StatusOr<GroupAdvantages> ComputeGroupAdvantages(std::span<const double> rewards,
                                               std::span<const int64_t> group_offsets,
                                               const AdvantageOptions& options) {
  if (!(options.epsilon >= 0) || !std::isfinite(options.epsilon)) {
    return absl::InvalidArgumentError("epsilon must be finite and >= 0, got " +
                                   std::to_string(options.epsilon));
  }
  const int64_t n = static_cast<int64_t>(rewards.size());
  if (group_offsets.empty() || group_offsets.front() != 0 || group_offsets.back() != n) {
    return absl::InvalidArgumentError("group_offsets must start at 0 and end at the number of rewards (" +
                                   std::to_string(n) + ")");
  }
  for (size_t g = 0; g + 1 < group_offsets.size(); ++g) {
    if (group_offsets[g + 1] <= group_offsets[g]) {
      return absl::InvalidArgumentError("group_offsets: group " + std::to_string(g) +
                                     " is empty or offsets decrease");
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(rewards[i])) {
      return absl::InvalidArgumentError("rewards[" + std::to_string(i) + "] is not finite");
    }
  }
  GroupAdvantages out;
  out.advantages.assign(n, 0.0);
  const size_t num_groups = group_offsets.size() - 1;
  out.group_mean.resize(num_groups);
  out.group_std.resize(num_groups);
  for (size_t g = 0; g < num_groups; ++g) {
    const int64_t b = group_offsets[g], e = group_offsets[g + 1], size = e - b;
    bool all_equal = true;
    double sum = 0;
    for (int64_t i = b; i < e; ++i) {
      sum += rewards[i];
      all_equal = all_equal && rewards[i] == rewards[b];
    }
    const double mean = sum / static_cast<double>(size);
    out.group_mean[g] = all_equal ? rewards[b] : mean;
    if (options.estimator == AdvantageEstimator::kReinforcePP) {
      for (int64_t i = b; i < e; ++i) out.advantages[i] = rewards[i];
    } else if (options.estimator == AdvantageEstimator::kReinforcePPBaseline) {
      for (int64_t i = b; i < e; ++i) out.advantages[i] = all_equal ? 0.0 : rewards[i] - mean;
    }
    if (all_equal) {  // covers size 1: group-relative advantages stay exactly 0
      out.group_std[g] = 0;
      out.zero_std_groups.push_back(static_cast<int64_t>(g));
      continue;
    }
    double ss = 0;
    for (int64_t i = b; i < e; ++i) ss += (rewards[i] - mean) * (rewards[i] - mean);
    const double denom_n = options.std == StdEstimator::kUnbiased ? static_cast<double>(size - 1)
                                                                  : static_cast<double>(size);
    const double std = std::sqrt(ss / denom_n);
    out.group_std[g] = std;
    if (options.estimator == AdvantageEstimator::kGroupNorm) {
      for (int64_t i = b; i < e; ++i) {
        const double centered = rewards[i] - mean;
        out.advantages[i] =
            options.scale == AdvantageScale::kStd ? centered / (std + options.epsilon) : centered;
      }
    } else if (options.estimator == AdvantageEstimator::kRloo) {
      for (int64_t i = b; i < e; ++i) {
        out.advantages[i] = rewards[i] - (sum - rewards[i]) / static_cast<double>(size - 1);
      }
    }
  }
  if (options.estimator == AdvantageEstimator::kReinforcePP ||
      options.estimator == AdvantageEstimator::kReinforcePPBaseline) {
    NormalizeOverBatch(options, &out.advantages, &out);
  }
  return out;
}

absl::StatusOr<GroupAdvantages> ComputeGroupAdvantages(std::span<const double> rewards, int64_t group_size,
                                               const AdvantageOptions& options) {
  const int64_t n = static_cast<int64_t>(rewards.size());
  if (group_size <= 0 || n % group_size != 0) {
    return absl::InvalidArgumentError("group_size " + std::to_string(group_size) +
                                   " must be positive and divide the number of rewards (" +
                                   std::to_string(n) + ")");
  }
  std::vector<int64_t> offsets;
  for (int64_t o = 0; o <= n; o += group_size) offsets.push_back(o);
  return ComputeGroupAdvantages(rewards, offsets, options);
}

}  // namespace grpo
