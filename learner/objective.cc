#include "learner/objective.h"

#include <string>

namespace grpo {

const char* ObjectiveName(Objective objective) {
  switch (objective) {
    case Objective::kGrpo: return "grpo";
    case Objective::kDrGrpo: return "dr_grpo";
    case Objective::kDapo: return "dapo";
    case Objective::kGspo: return "gspo";
    case Objective::kCispo: return "cispo";
    case Objective::kSapo: return "sapo";
    case Objective::kGmpo: return "gmpo";
  }
  return "?";
}

absl::StatusOr<Objective> ParseObjective(std::string_view name) {
  std::string expected;
  const size_t n = std::size(kAllObjectives);
  for (size_t i = 0; i < n; ++i) {
    if (name == ObjectiveName(kAllObjectives[i])) return kAllObjectives[i];
    expected += i == 0 ? "" : i + 1 == n ? " or " : ", ";
    expected += ObjectiveName(kAllObjectives[i]);
  }
  return absl::InvalidArgumentError("objective: unknown name \"" + std::string(name) + "\" (expected " +
                                    expected + ")");
}

}  // namespace grpo
