// `grpo inspect`: what a trajectory store holds, as JSON (the --json output) and as text.
//
// Views, chosen by which fields of InspectRequest are set:
//   runs     (nothing set)          every run: steps, samples, model, code version
//   run      (run)                  the run's metadata and one line per step (reward mean/std,
//                                   accuracy, pass@G, response length, truncations, errors)
//   step     (step [, run])         the step's summary and one line per group: correct count,
//                                   pass@1 and pass@k (unbiased estimator), reward mean/std, best
//                                   sample, response length, prompt
//   samples  (step, prompt [, sample])  the prompt and the full text and reward breakdown of
//                                   the group's samples (or of one sample)
//   query    (any of filter's reward/rule/weight-version fields; step and prompt narrow it)
//                                   the matching samples, one line each, at most `limit`
// An empty run name picks the store's only run.
#ifndef GRPO_STORE_INSPECT_H_
#define GRPO_STORE_INSPECT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/status.h"
#include "store/query.h"
#include "store/trajectory_store.h"

namespace grpo::store {

struct InspectRequest {
  std::optional<std::string> run;
  std::optional<uint64_t> step;
  std::optional<uint32_t> prompt;
  std::optional<uint32_t> sample;
  uint32_t k = 0;  // pass@k of the step view; 0 = the group size
  // Per-sample filters (min/max reward, rule outcome, weight version) select the query view.
  SampleQuery filter;
  uint64_t limit = 50;
  CorrectnessSpec correctness;
};

// The view as JSON; "view" names it.
absl::StatusOr<nlohmann::ordered_json> Inspect(const TrajectoryStore& store, const InspectRequest& request);

// The same view as human-readable text.
std::string RenderInspectText(const nlohmann::ordered_json& view);

}  // namespace grpo::store

#endif  // GRPO_STORE_INSPECT_H_
