#include "store/query.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace grpo::store {

using grpo::v1::Trajectory;

std::optional<double> TotalReward(const grpo::v1::RewardResult& reward) {
  if (!reward.error().empty() || !reward.has_reward()) return std::nullopt;
  return reward.reward();
}

std::optional<double> TotalReward(const Trajectory& t) { return TotalReward(t.reward()); }

bool IsCorrect(const grpo::v1::RewardResult& reward, const CorrectnessSpec& spec) {
  if (!TotalReward(reward)) return false;
  for (const auto& r : reward.rules()) {
    if (!r.error().empty()) continue;
    if (std::find(spec.rules.begin(), spec.rules.end(), r.rule()) == spec.rules.end()) continue;
    if (r.score() >= spec.threshold) return true;
  }
  return false;
}

bool IsCorrect(const Trajectory& t, const CorrectnessSpec& spec) { return IsCorrect(t.reward(), spec); }

bool Matches(const Trajectory& t, const SampleQuery& q) {
  if (q.prompt_index && t.prompt_index() != *q.prompt_index) return false;
  if (q.first_step && t.step() < *q.first_step) return false;
  if (q.last_step && t.step() > *q.last_step) return false;
  if (q.min_reward || q.max_reward) {
    std::optional<double> r = TotalReward(t);
    if (!r) return false;
    if (q.min_reward && *r < *q.min_reward) return false;
    if (q.max_reward && *r > *q.max_reward) return false;
  }
  if (q.rule) {
    bool found = false;
    for (const auto& r : t.reward().rules()) {
      if (r.rule() == q.rule->rule && r.error().empty() && r.score() >= q.rule->min_score &&
          r.score() <= q.rule->max_score) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  if (q.weight_version) {
    bool found = false;
    for (const auto& span : t.sample().weight_versions()) found |= span.version() == *q.weight_version;
    if (!found) return false;
  }
  return true;
}

double PassAtK(uint32_t n, uint32_t c, uint32_t k) {
  if (n == 0 || k == 0) return 0.0;
  k = std::min(k, n);
  if (n - c < k) return 1.0;
  // C(n-c, k) / C(n, k) = prod_{i=0}^{k-1} (n-c-i) / (n-i)
  double ratio = 1.0;
  for (uint32_t i = 0; i < k; ++i) ratio *= static_cast<double>(n - c - i) / static_cast<double>(n - i);
  return 1.0 - ratio;
}

namespace {

struct Moments {
  double sum = 0, sum_sq = 0;
  double min = std::numeric_limits<double>::infinity(), max = -min;
  uint64_t n = 0;
  void Add(double x) {
    sum += x;
    sum_sq += x * x;
    min = std::min(min, x);
    max = std::max(max, x);
    ++n;
  }
  double Mean() const { return n ? sum / n : 0.0; }
  double Std() const {
    if (!n || min == max) return 0.0;
    double m = Mean();
    return std::sqrt(std::max(0.0, sum_sq / n - m * m));
  }
};

}  // namespace

GroupStats SummarizeGroup(std::span<const Trajectory> group, const CorrectnessSpec& spec) {
  GroupStats g;
  if (!group.empty()) g.prompt_index = group.front().prompt_index();
  Moments reward;
  double len_sum = 0;
  double best = -std::numeric_limits<double>::infinity();
  for (const Trajectory& t : group) {
    ++g.num_samples;
    len_sum += t.sample().token_ids_size();
    std::optional<double> r = TotalReward(t);
    if (!r) continue;
    reward.Add(*r);
    if (IsCorrect(t, spec)) ++g.num_correct;
    if (*r > best || (*r == best && t.sample_index() < g.best_sample_index)) {
      best = *r;
      g.best_sample_index = t.sample_index();
    }
  }
  g.num_scored = static_cast<uint32_t>(reward.n);
  g.reward_mean = reward.Mean();
  g.reward_std = reward.Std();
  g.response_len_mean = g.num_samples ? len_sum / g.num_samples : 0.0;
  return g;
}

grpo::v1::StepSummary SummarizeStep(const std::string& run_name, uint64_t step,
                                    std::span<const Trajectory> samples,
                                    const CorrectnessSpec& spec) {
  grpo::v1::StepSummary s;
  s.set_format_version(1);
  s.set_run_name(run_name);
  s.set_step(step);
  Moments reward, len;
  std::map<std::string, Moments> rules;
  std::map<uint32_t, bool> groups;  // prompt -> has a correct sample
  std::map<uint32_t, Moments> group_rewards;
  uint64_t correct = 0;
  uint64_t min_version = std::numeric_limits<uint64_t>::max();
  for (const Trajectory& t : samples) {
    s.set_num_samples(s.num_samples() + 1);
    auto& grp = groups[t.prompt_index()];
    if (t.sample().finish_reason() == grpo::v1::FINISH_REASON_LENGTH) s.set_num_truncated(s.num_truncated() + 1);
    if (t.sample().finish_reason() == grpo::v1::FINISH_REASON_ABORTED) s.set_num_aborted(s.num_aborted() + 1);
    for (const auto& span : t.sample().weight_versions()) min_version = std::min(min_version, span.version());
    std::optional<double> r = TotalReward(t);
    if (!r) {
      s.set_num_reward_errors(s.num_reward_errors() + 1);
      continue;
    }
    reward.Add(*r);
    group_rewards[t.prompt_index()].Add(*r);
    len.Add(t.sample().token_ids_size());
    for (const auto& rule : t.reward().rules()) rules[rule.rule()].Add(rule.score());
    if (IsCorrect(t, spec)) {
      ++correct;
      grp = true;
    }
  }
  s.set_num_prompts(static_cast<uint32_t>(groups.size()));
  s.set_reward_mean(reward.Mean());
  s.set_reward_std(reward.Std());
  s.set_response_len_mean(len.Mean());
  for (const auto& [name, m] : rules) (*s.mutable_rule_means())[name] = m.Mean();
  s.set_accuracy(reward.n ? static_cast<double>(correct) / reward.n : 0.0);
  uint32_t solved = 0;
  for (const auto& [p, g] : groups) solved += g ? 1 : 0;
  s.set_pass_at_g(groups.empty() ? 0.0 : static_cast<double>(solved) / groups.size());
  uint32_t zero_std = 0;
  for (const auto& [p, m] : group_rewards) zero_std += (m.n > 0 && m.min == m.max) ? 1 : 0;
  s.set_num_zero_std_groups(zero_std);
  if (min_version != std::numeric_limits<uint64_t>::max()) s.set_weight_version(min_version);
  return s;
}

}  // namespace grpo::store
