// Sample filters and per-step / per-group statistics of the trajectory store.
//
// Pure functions over proto records; TrajectoryStore::ScanSamples applies a SampleQuery while it
// streams, and the writer uses SummarizeStep when the trainer gives no StepSummary.
#ifndef GRPO_STORE_QUERY_H_
#define GRPO_STORE_QUERY_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "proto/trajectory.pb.h"

namespace grpo::store {

// What "correct" means for a sample, the one definition (the trainer's eval/accuracy, the store's
// accuracy and pass@k, `grpo export --correct-only`, `grpo inspect`): its reward has no error and
// at least one rule whose name is in `rules` scored >= `threshold` (with no error of its own).
// The default names are the answer-checking rules of the reward library; a run whose correctness
// rule has another name passes it here (`grpo export --correct-rule NAME`).
struct CorrectnessSpec {
  std::vector<std::string> rules = {"math", "countdown", "exact", "accuracy", "correct"};
  double threshold = 1.0;
};

bool IsCorrect(const grpo::v1::RewardResult& reward, const CorrectnessSpec& spec);
bool IsCorrect(const grpo::v1::Trajectory& t, const CorrectnessSpec& spec);  // of t.reward()

// The total reward, or nullopt when the reward service reported an error (no reward).
std::optional<double> TotalReward(const grpo::v1::RewardResult& reward);
std::optional<double> TotalReward(const grpo::v1::Trajectory& t);  // of t.reward()

// A rule's outcome filter: the rule is present, has no error, and min <= score <= max.
struct RuleOutcome {
  std::string rule;
  double min_score = -1e300;
  double max_score = 1e300;
};

// Which samples of a run to visit. Unset fields do not filter. Step bounds and prompt_index
// narrow the range scan itself; the rest are tested per sample.
struct SampleQuery {
  std::optional<uint64_t> first_step;      // inclusive
  std::optional<uint64_t> last_step;       // inclusive
  std::optional<uint32_t> prompt_index;    // one group per step (needs a step bound to be cheap)
  std::optional<double> min_reward;        // inclusive; samples without a reward never match
  std::optional<double> max_reward;        // inclusive
  std::optional<RuleOutcome> rule;
  // Matches samples with at least one token generated under this weight version.
  std::optional<uint64_t> weight_version;
};

// Whether `t` passes the per-sample filters of `q` (rewards, rule, weight version, prompt).
bool Matches(const grpo::v1::Trajectory& t, const SampleQuery& q);

// Unbiased pass@k estimate from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).
// k > n is treated as k = n; n = 0 gives 0.
double PassAtK(uint32_t n, uint32_t c, uint32_t k);

// Statistics of one group (one prompt of a step).
struct GroupStats {
  uint32_t prompt_index = 0;
  uint32_t num_samples = 0;
  uint32_t num_scored = 0;   // samples with a reward
  uint32_t num_correct = 0;
  double reward_mean = 0;    // over scored samples
  double reward_std = 0;     // population std over scored samples
  double response_len_mean = 0;
  // Index of the best sample: highest total reward, ties to the lowest sample_index; -1 when no
  // sample has a reward.
  int64_t best_sample_index = -1;
};

GroupStats SummarizeGroup(std::span<const grpo::v1::Trajectory> group, const CorrectnessSpec& spec);

// A StepSummary computed from a step's samples (format_version, run_name, step, reward
// mean/std, rule_means, response_len_mean, accuracy, pass_at_g, counts, weight_version). Fields
// only the trainer knows (metrics, finished_at) stay unset.
grpo::v1::StepSummary SummarizeStep(const std::string& run_name, uint64_t step,
                                    std::span<const grpo::v1::Trajectory> samples,
                                    const CorrectnessSpec& spec);

}  // namespace grpo::store

#endif  // GRPO_STORE_QUERY_H_
