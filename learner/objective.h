// The RL objectives a recipe can name (`algorithm.objective`). Each is a preset of the policy
// loss (learner/policy_loss.h PolicyLossPreset) and of the advantages (learner/advantage.h
// AdvantagePreset); the recipe parses the name once (learner/recipe.h).
#ifndef GRPO_LEARNER_OBJECTIVE_H_
#define GRPO_LEARNER_OBJECTIVE_H_

#include <string_view>

#include "core/status.h"

namespace grpo {

enum class Objective {
  kGrpo,    // GRPO (DeepSeekMath)
  kDrGrpo,  // Dr.GRPO
  kDapo,    // DAPO
  kGspo,    // GSPO
  kCispo,   // CISPO (MiniMax-M1): clipped, stop-gradient IS weight on every token
  kSapo,    // SAPO: soft sigmoid gate of the ratio instead of hard clipping
  kGmpo,    // GMPO: geometric mean of the token ratios per sequence
};
inline constexpr Objective kAllObjectives[] = {Objective::kGrpo, Objective::kDrGrpo, Objective::kDapo,
                                               Objective::kGspo, Objective::kCispo, Objective::kSapo,
                                               Objective::kGmpo};

// "grpo", "dr_grpo", "dapo", "gspo", "cispo", "sapo", "gmpo".
const char* ObjectiveName(Objective objective);

// The objective of that name; InvalidArgument for any other name:
// `objective: unknown name "ppo" (expected grpo, dr_grpo, dapo, gspo, cispo, sapo or gmpo)`.
absl::StatusOr<Objective> ParseObjective(std::string_view name);

}  // namespace grpo

#endif  // GRPO_LEARNER_OBJECTIVE_H_
