// Group-relative advantages for GRPO and its variants.
//
// Rewards are scored per sample; samples come in groups (the G answers to one prompt). For a
// group g with rewards r_1..r_n, mean m = (1/n) sum r_j and
//   GRPO  (scale kStd):  A_j = (r_j - m) / (std + epsilon)
//   Dr.GRPO (kNone):     A_j = r_j - m
// where std is the unbiased sample std sqrt(sum (r_j - m)^2 / (n - 1)) by default, as TRL
// computes it (torch.std), or the population std sqrt(sum (r_j - m)^2 / n) with
// StdEstimator::kPopulation. A group whose rewards are all equal (including a group of size 1)
// has zero std: its advantages are exactly 0 (no 0/0, no rounding residue), and its index is
// reported in `zero_std_groups` (DAPO's dynamic sampling drops such groups). Everything is
// computed in double.
#ifndef GRPO_LEARNER_ADVANTAGE_H_
#define GRPO_LEARNER_ADVANTAGE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "learner/objective.h"

namespace grpo {

enum class AdvantageScale { kStd, kNone };
enum class StdEstimator { kUnbiased, kPopulation };

struct AdvantageOptions {
  AdvantageScale scale = AdvantageScale::kStd;
  double epsilon = 1e-6;                        // added to std (kStd only); >= 0
  StdEstimator std = StdEstimator::kUnbiased;   // torch.std default, as in TRL
};

// Advantage options of an objective: kGrpo, kDapo, kGspo -> kStd; kDrGrpo -> kNone.
AdvantageOptions AdvantagePreset(Objective objective);

struct GroupAdvantages {
  std::vector<double> advantages;        // one per sample
  std::vector<double> group_mean;        // one per group
  std::vector<double> group_std;         // one per group (0 for all-equal or size-1 groups)
  std::vector<int64_t> zero_std_groups;  // indices of groups whose rewards are all equal
};

// Groups given by offsets: group g is samples [group_offsets[g], group_offsets[g+1]);
// group_offsets starts at 0, is non-decreasing with no empty group, and ends at rewards.size().
// InvalidArgument for bad offsets, non-finite rewards or bad options.
absl::StatusOr<GroupAdvantages> ComputeGroupAdvantages(std::span<const double> rewards,
                                               std::span<const int64_t> group_offsets,
                                               const AdvantageOptions& options = {});

// Equal groups of `group_size` consecutive samples; rewards.size() must be a multiple of it.
absl::StatusOr<GroupAdvantages> ComputeGroupAdvantages(std::span<const double> rewards, int64_t group_size,
                                               const AdvantageOptions& options = {});

}  // namespace grpo

#endif  // GRPO_LEARNER_ADVANTAGE_H_
