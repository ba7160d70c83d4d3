// Advantages for GRPO and its variants, one per sample.
//
// Rewards are scored per sample; samples come in groups (the G answers to one prompt). For a
// group g with rewards r_1..r_n, mean m = (1/n) sum r_j, by AdvantageEstimator:
//   kGroupNorm, scale kStd (GRPO):     A_j = (r_j - m) / (std + epsilon)
//   kGroupNorm, scale kNone (Dr.GRPO): A_j = r_j - m
//   kRloo (leave-one-out baseline):    A_j = r_j - (1/(n-1)) sum_{k != j} r_k = n/(n-1) (r_j - m)
//   kReinforcePP (REINFORCE++):        A_j = (r_j - mu_B) / (std_B + epsilon)
//   kReinforcePPBaseline:              x_j = r_j - m, then A_j = (x_j - mu_B(x)) / (std_B(x) + epsilon)
// where std is the unbiased sample std sqrt(sum (r_j - m)^2 / (n - 1)) by default, as TRL
// computes it (torch.std), or the population std sqrt(sum (r_j - m)^2 / n) with
// StdEstimator::kPopulation; mu_B and std_B are the mean and std (same estimator) over the whole
// batch, i.e. every reward given to one call, one value per sample. kRloo and the REINFORCE++
// estimators ignore `scale`. A group whose rewards are all equal (including a group of size 1)
// has zero std: under kGroupNorm and kRloo its advantages are exactly 0 (no 0/0, no rounding
// residue); its index is reported in `zero_std_groups` under every estimator (DAPO's dynamic
// sampling drops such groups). A batch whose values are all equal gets exactly 0 under the
// REINFORCE++ estimators. Everything is computed in double.
#ifndef GRPO_LEARNER_ADVANTAGE_H_
#define GRPO_LEARNER_ADVANTAGE_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "learner/objective.h"

namespace grpo {

enum class AdvantageScale { kStd, kNone };
enum class StdEstimator { kUnbiased, kPopulation };
enum class AdvantageEstimator { kGroupNorm, kRloo, kReinforcePP, kReinforcePPBaseline };

struct AdvantageOptions {
  AdvantageScale scale = AdvantageScale::kStd;  // kGroupNorm only
  double epsilon = 1e-6;                        // added to std (kGroupNorm kStd, REINFORCE++); >= 0
  StdEstimator std = StdEstimator::kUnbiased;   // torch.std default, as in TRL
  AdvantageEstimator estimator = AdvantageEstimator::kGroupNorm;
};

// "group_norm" | "rloo" | "reinforce_pp" | "reinforce_pp_baseline"; InvalidArgument naming the
// valid ones for any other name.
absl::StatusOr<AdvantageEstimator> ParseAdvantageEstimator(std::string_view name);

// Advantage options of an objective: kGrpo, kDapo, kGspo -> kStd; kDrGrpo -> kNone.
AdvantageOptions AdvantagePreset(Objective objective);

struct GroupAdvantages {
  std::vector<double> advantages;        // one per sample
  std::vector<double> group_mean;        // one per group
  std::vector<double> group_std;         // one per group (0 for all-equal or size-1 groups)
  double batch_mean = 0, batch_std = 0;  // REINFORCE++ estimators: of the values normalized
  std::vector<int64_t> zero_std_groups;  // indices of groups whose rewards are all equal
};

// Groups given by offsets: group g is samples [group_offsets[g], group_offsets[g+1]); the batch
// (REINFORCE++) is every sample given.
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
