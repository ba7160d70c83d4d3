// The GRPO loop of `grpo train` and the held-out evaluation (see trainer.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <future>
#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>

#include <google/protobuf/util/time_util.h>

#include "core/checksum_manifest.h"
#include "core/file.h"
#include "core/memory_plan.h"
#include "core/metrics.h"
#include "data/addition.h"
#include "learner/advantage.h"
#include "learner/checkpoint.h"
#include "learner/remote_rollout.h"
#include "learner/report.h"
#include "learner/rl_update.h"
#include "learner/roles.h"
#include "learner/sharded_optimizer.h"
#include "learner/teacher.h"
#include "learner/trainer_internal.h"
#include "rollout/push_token.h"
#include "rollout/sample_proto.h"
#include "rollout/tool_settings.h"
#include "store/query.h"
#include "store/trajectory_store.h"

namespace grpo::trainer_internal {
namespace {

namespace fs = std::filesystem;

struct Prompt {
  data::Example example;
  std::vector<int32_t> tokens;
  std::string text;
  int64_t row = -1;  // dataset row (jsonl), -1 when generated
};

struct Scored {
  std::vector<GroupResult> groups;
  std::vector<std::vector<grpo::v1::RewardResult>> rewards;  // [group][sample]
  std::vector<std::vector<std::string>> texts;                // [group][sample]
};

// Decodes and scores every sample of `groups`.
absl::StatusOr<Scored> ScoreGroups(Run& run, RewardScorer& scorer, const std::vector<Prompt>& prompts,
                           std::vector<GroupResult> groups) {
  Scored s;
  std::vector<grpo::v1::RewardRequestItem> items;
  s.texts.resize(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    for (const SampleResult& sample : groups[g].samples) {
      GRPO_ASSIGN_OR_RETURN(std::string text, run.tok->Decode(sample.tokens, {.skip_special_tokens = true}));
      grpo::v1::RewardRequestItem item;
      item.set_id(std::to_string(g) + "/" + std::to_string(sample.index));
      item.set_completion(text);
      item.set_answer(prompts[g].example.answer);
      item.set_prompt(prompts[g].text);
      item.set_task(prompts[g].example.task);
      for (const auto& [k, v] : prompts[g].example.meta.items()) {
        (*item.mutable_meta())[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
      // Token counts for length-based rules (`length` with unit: tokens, overlong shaping).
      (*item.mutable_meta())["completion_tokens"] = std::to_string(sample.tokens.size());
      (*item.mutable_meta())["prompt_tokens"] = std::to_string(prompts[g].tokens.size());
      items.push_back(std::move(item));
      s.texts[g].push_back(std::move(text));
    }
  }
  GRPO_ASSIGN_OR_RETURN(std::vector<grpo::v1::RewardResult> results, scorer.Score(items));
  size_t k = 0;
  s.rewards.resize(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].samples.size(); ++i) s.rewards[g].push_back(std::move(results[k++]));
  }
  s.groups = std::move(groups);
  return s;
}

double RuleScore(const grpo::v1::RewardResult& r, const std::string& rule, bool* found) {
  for (const auto& rs : r.rules()) {
    if (rs.rule() == rule && rs.error().empty()) {
      *found = true;
      return rs.score();
    }
  }
  return 0;
}

bool Correct(const grpo::v1::RewardResult& r) { return store::IsCorrect(r, store::CorrectnessSpec{}); }

GroupRequest MakeRequest(const Run& run, const Prompt& p, int64_t n, const SamplingOptions& sampling,
                         uint64_t seed, bool routing) {
  const TrainRecipe& r = *run.recipe;
  GroupRequest q;
  q.prompt = p.tokens;
  q.n = n;
  q.sampling = sampling;
  q.max_new_tokens = r.max_new_tokens;
  q.seed = seed;
  q.stop_tokens = {run.eos};
  q.stop_strings = r.stop_strings;
  q.return_routing = routing;
  q.return_raw_logprobs = true;
  q.environment = run.environment;
  q.max_tool_calls = r.max_tool_calls;
  q.max_tool_output_tokens = r.max_tool_output_tokens;
  return q;
}

absl::StatusOr<std::vector<Prompt>> EvalPrompts(Run& run) {
  const TrainRecipe& r = *run.recipe;
  std::vector<Prompt> prompts;
  if (r.data_source == DataSource::kAddition) {
    data::SplitMix64 rng(StreamSeed(r.seed, kEval, 0));
    for (int64_t i = 0; i < r.eval_size; ++i) {
      Prompt p;
      p.example = data::GenerateAddition(rng, r.addition, data::AdditionSplit::kHeldOut);
      prompts.push_back(std::move(p));
    }
  } else {
    const auto& ex = run.eval_set.examples;
    for (int64_t i = 0; i < std::min<int64_t>(r.eval_size, static_cast<int64_t>(ex.size())); ++i) {
      Prompt p;
      p.example = ex[i];
      p.row = i;
      prompts.push_back(std::move(p));
    }
  }
  for (auto& p : prompts) {
    GRPO_ASSIGN_OR_RETURN(p.text, run.prompt->Render(p.example.fields));
    GRPO_ASSIGN_OR_RETURN(p.tokens, run.tok->Encode(p.text));
  }
  return prompts;
}

// Held-out evaluation: eval_samples per prompt at eval_temperature (accuracy = mean over samples)
// and one greedy sample per prompt.
absl::StatusOr<std::map<std::string, double>> Evaluate(Run& run, PolicyRollout& rollout, RewardScorer& scorer,
                                               const std::vector<Prompt>& prompts) {
  const TrainRecipe& r = *run.recipe;
  std::map<std::string, double> m;
  if (prompts.empty()) return m;
  for (const bool greedy : {false, true}) {
    if (greedy && r.eval_temperature == 0) continue;
    SamplingOptions so = r.sampling;
    so.temperature = greedy ? 0.0 : r.eval_temperature;
    std::vector<GroupRequest> requests;
    for (size_t i = 0; i < prompts.size(); ++i) {
      requests.push_back(MakeRequest(run, prompts[i], greedy ? 1 : r.eval_samples, so,
                                     StreamSeed(r.seed, kEvalSampling, i), false));
    }
    GRPO_ASSIGN_OR_RETURN(std::vector<GroupResult> groups, rollout.Generate(requests));
    GRPO_ASSIGN_OR_RETURN(Scored s, ScoreGroups(run, scorer, prompts, std::move(groups)));
    double n = 0, correct = 0, fmt = 0, len = 0, tool_samples = 0;
    bool has_format = false;
    for (size_t g = 0; g < s.groups.size(); ++g) {
      for (size_t i = 0; i < s.groups[g].samples.size(); ++i) {
        n += 1;
        correct += Correct(s.rewards[g][i]);
        fmt += RuleScore(s.rewards[g][i], "format", &has_format);
        len += static_cast<double>(s.groups[g].samples[i].tokens.size());
        tool_samples += !s.groups[g].samples[i].environment_spans.empty();
      }
    }
    const std::string suffix = greedy ? "_greedy" : "";
    m["eval/accuracy" + suffix] = correct / n;
    if (has_format) m["eval/format" + suffix] = fmt / n;
    m["eval/response_len" + suffix] = len / n;
    if (ToolsOn(run)) m["eval/tool_call_rate" + suffix] = tool_samples / n;
  }
  return m;
}

// The prompts of RL step `step` (and sampling round `round` for dynamic sampling).
absl::StatusOr<std::vector<Prompt>> StepPrompts(Run& run, int64_t step, int64_t round, int64_t count,
                                        data::EpochSampler* sampler) {
  const TrainRecipe& r = *run.recipe;
  std::vector<Prompt> prompts(count);
  data::SplitMix64 rng(StreamSeed(StreamSeed(r.seed, kPrompts, static_cast<uint64_t>(step)), kPrompts,
                                  static_cast<uint64_t>(round)));
  for (auto& p : prompts) {
    if (r.data_source == DataSource::kAddition) {
      p.example = data::GenerateAddition(rng, r.addition, data::AdditionSplit::kTrain);
    } else {
      p.row = sampler->Next();
      p.example = run.train_set.examples[p.row];
    }
    GRPO_ASSIGN_OR_RETURN(p.text, run.prompt->Render(p.example.fields));
    GRPO_ASSIGN_OR_RETURN(p.tokens, run.tok->Encode(p.text));
  }
  return prompts;
}

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof(b), f, v);
  return b;
}

// ===== The stages of one GRPO step ===========================================================
//
//   rollout -> score   CollectStep        (with rollout.max_staleness k >= 1, queued up to k
//                                          steps earlier: RolloutQueue)
//   advantages         StepAdvantages
//   step known good    SummarizeRewards   (fails when no sample got a reward: nothing stored)
//   store              StoreStep          (durable before the update)
//   [max_staleness]    the CollectSteps of the next steps up to step + k are queued here
//   staleness          BoundStaleness     (per-token versions; older than k: dropped, counted)
//   update             UpdatePolicy
//   push               PushAfterRollout   (k = 1: waits for the overlapping rollout; k >= 2: live)
//   metrics, eval      StepRow, Evaluate
//   checkpoint         CheckpointDue / SaveRunCheckpoint

// One step's batch after rollout and scoring (dynamic sampling rounds included).
struct StepBatch {
  std::vector<Prompt> prompts;
  std::vector<GroupRequest> requests;
  std::vector<GroupResult> groups;
  std::vector<std::vector<grpo::v1::RewardResult>> rewards;  // [group][sample]
  std::vector<std::vector<std::string>> texts;                // [group][sample]
  // The dataset position after this step's prompts (what a checkpoint of this step resumes at),
  // taken when the step's last prompts were drawn, before any later step's rollout draws more.
  data::Cursor cursor_after;
  double t_rollout = 0, t_reward = 0;
  int64_t dropped = 0, rounds = 0;
};

// The rewards of the samples whose scoring succeeded (a failed one has no reward).
std::vector<double> ScoredRewards(const std::vector<grpo::v1::RewardResult>& group) {
  std::vector<double> rw;
  for (const auto& res : group) {
    if (res.has_reward()) rw.push_back(res.reward());
  }
  return rw;
}

// A group that carries no learning signal: fewer than two rewards, or all of them equal (the
// groups DAPO's dynamic sampling drops).
bool FlatGroup(const std::vector<double>& scored) {
  for (double v : scored) {
    if (v != scored.front()) return false;
  }
  return true;  // also for 0 or 1 rewards
}

// Rollout and scoring of step `step`: the inputs the stage reads, fixed for the whole run. It is
// the one stage that may run concurrently with another (the update, with rollout.max_staleness); it
// touches only the rollout, the scorer and the prompt sampler, which nothing else uses meanwhile.
struct CollectStep {
  Run* run;
  PolicyRollout* rollout;
  RewardScorer* scorer;
  data::EpochSampler* sampler;  // null for generated prompts
  bool routing;                 // return the experts chosen (routing replay)

  absl::StatusOr<StepBatch> operator()(int64_t step) const {
    const TrainRecipe& r = *run->recipe;
    const int64_t max_rounds = r.dynamic_sampling ? r.max_sampling_rounds : 1;
    StepBatch b;
    for (int64_t round = 0; round < max_rounds; ++round) {
      const int64_t want = r.prompts_per_step - static_cast<int64_t>(b.prompts.size());
      if (want <= 0) break;
      ++b.rounds;
      GRPO_ASSIGN_OR_RETURN(std::vector<Prompt> batch, StepPrompts(*run, step, round, want, sampler));
      const uint64_t round_seed = StreamSeed(StreamSeed(r.seed, kRollout, static_cast<uint64_t>(step)), kRollout,
                                             static_cast<uint64_t>(round));
      std::vector<GroupRequest> requests;
      for (size_t p = 0; p < batch.size(); ++p) {
        requests.push_back(MakeRequest(*run, batch[p], r.group_size, r.sampling,
                                       StreamSeed(round_seed, kRollout, p), routing));
      }
      auto t0 = Clock::now();
      GRPO_ASSIGN_OR_RETURN(std::vector<GroupResult> gen, rollout->Generate(requests));
      auto t1 = Clock::now();
      GRPO_ASSIGN_OR_RETURN(Scored s, ScoreGroups(*run, *scorer, batch, std::move(gen)));
      auto t2 = Clock::now();
      b.t_rollout += Seconds(t0, t1);
      b.t_reward += Seconds(t1, t2);
      const bool last_round = round + 1 >= max_rounds;
      for (size_t g = 0; g < s.groups.size(); ++g) {
        if (r.dynamic_sampling && !last_round && FlatGroup(ScoredRewards(s.rewards[g]))) {
          ++b.dropped;
          continue;
        }
        b.prompts.push_back(std::move(batch[g]));
        b.requests.push_back(std::move(requests[g]));
        b.groups.push_back(std::move(s.groups[g]));
        b.rewards.push_back(std::move(s.rewards[g]));
        b.texts.push_back(std::move(s.texts[g]));
      }
    }
    b.cursor_after = sampler ? sampler->cursor() : data::Cursor{};
    return b;
  }
};

// Advantages of every sample, group after group ([g * group_size + i]), by the recipe's
// estimator over the samples that got a reward: those form the groups and, for the REINFORCE++
// estimators, the batch. A sample whose scoring failed gets 0 (and is left out of the loss and
// of the reward means).
absl::StatusOr<std::vector<double>> StepAdvantages(const StepBatch& b, const AdvantageOptions& options) {
  std::vector<double> scored;
  std::vector<int64_t> offsets = {0};
  for (const auto& group : b.rewards) {
    for (double v : ScoredRewards(group)) scored.push_back(v);
    if (static_cast<int64_t>(scored.size()) > offsets.back()) offsets.push_back(static_cast<int64_t>(scored.size()));
  }
  GroupAdvantages ga;
  if (!scored.empty()) {
    GRPO_ASSIGN_OR_RETURN(ga, ComputeGroupAdvantages(scored, offsets, options));
  }
  std::vector<double> adv;
  size_t k = 0;
  for (const auto& group : b.rewards) {
    for (const auto& res : group) adv.push_back(res.has_reward() ? ga.advantages[k++] : 0.0);
  }
  return adv;
}

// The step's reward statistics (over the samples that got a reward).
struct RewardStats {
  double sum = 0, sq = 0, correct = 0, scored = 0;
  double len_sum = 0, samples = 0;  // over every sample
  double tool_samples = 0, tool_calls = 0;  // samples that called a tool; calls (over every sample)
  int64_t errors = 0;
  std::string first_error;
  std::map<std::string, std::pair<double, double>> rule_sums;  // rule -> (sum, count)
  int64_t zero_std_groups = 0;  // groups whose rewards are all equal (fewer than two included)
};

// The reward statistics of a batch; FailedPrecondition when no sample got a reward, so such a
// step is never stored nor trained on (a resume generates it again).
absl::StatusOr<RewardStats> SummarizeRewards(const StepBatch& b, int64_t step, const TrainOptions& o) {
  RewardStats st;
  for (size_t g = 0; g < b.groups.size(); ++g) {
    for (size_t i = 0; i < b.groups[g].samples.size(); ++i) {
      const auto& res = b.rewards[g][i];
      st.len_sum += static_cast<double>(b.groups[g].samples[i].tokens.size());
      st.samples += 1;
      const size_t calls = b.groups[g].samples[i].environment_spans.size();
      st.tool_samples += calls > 0;
      st.tool_calls += static_cast<double>(calls);
      if (!res.has_reward()) {  // scoring failed: counted, reported, left out of the means
        ++st.errors;
        if (st.first_error.empty()) st.first_error = res.error();
        continue;
      }
      const double rv = res.reward();
      st.sum += rv;
      st.sq += rv * rv;
      st.correct += Correct(res);
      st.scored += 1;
      for (const auto& rule : res.rules()) {
        if (!rule.error().empty()) continue;
        auto& acc = st.rule_sums[rule.rule()];
        acc.first += rule.score();
        acc.second += 1;
      }
    }
    st.zero_std_groups += FlatGroup(ScoredRewards(b.rewards[g]));
  }
  if (st.errors > 0) {
    Progress(o, "step " + std::to_string(step + 1) + ": " + std::to_string(st.errors) +
                    " samples got no reward (left out of the loss); first error: " + st.first_error);
  }
  if (st.scored == 0) {
    return absl::FailedPreconditionError("step " + std::to_string(step + 1) +
                                         ": no sample got a reward; first error: " + st.first_error);
  }
  return st;
}

// Writes the step's prompts and trajectories to the store in one atomic write; returns its time.
absl::StatusOr<double> StoreStep(store::TrajectoryStore& store, const TrainRecipe& r, const tokenizer::Tokenizer& tok,
                                 int64_t step, const StepBatch& b, const std::vector<double>& adv) {
  const auto t0 = Clock::now();
  store::StepRecords rec;
  rec.step = static_cast<uint64_t>(step);
  for (size_t g = 0; g < b.groups.size(); ++g) {
    const Prompt& prompt = b.prompts[g];
    const uint64_t group_id = static_cast<uint64_t>(step) * 1000000 + g;
    grpo::v1::PromptRecord pr;
    pr.set_prompt_index(static_cast<uint32_t>(g));
    pr.set_group_id(group_id);
    pr.set_prompt_text(prompt.text);
    for (int32_t t : prompt.tokens) pr.add_prompt_token_ids(t);
    pr.set_answer(prompt.example.answer);
    pr.set_task(prompt.example.task);
    pr.set_dataset(r.data_source == DataSource::kAddition ? "addition" : r.train_path);
    if (prompt.row >= 0) pr.set_dataset_row_id(std::to_string(prompt.row));
    rec.prompts.push_back(pr);
    for (size_t i = 0; i < b.groups[g].samples.size(); ++i) {
      const SampleResult& sr = b.groups[g].samples[i];
      grpo::v1::Trajectory t;
      t.set_prompt_index(static_cast<uint32_t>(g));
      t.set_sample_index(static_cast<uint32_t>(sr.index));
      t.set_group_id(group_id);
      SampleResultToProto(sr, b.requests[g], b.groups[g], t.mutable_sample());
      t.mutable_sample()->set_text(b.texts[g][i]);
      GRPO_RETURN_IF_ERROR(SetTurnTexts(tok, {.skip_special_tokens = true}, sr, t.mutable_sample()));
      *t.mutable_reward() = b.rewards[g][i];
      t.set_advantage(static_cast<float>(adv[g * r.group_size + i]));
      if (prompt.row >= 0) t.set_dataset_row_id(std::to_string(prompt.row));
      rec.trajectories.push_back(std::move(t));
    }
  }
  GRPO_RETURN_IF_ERROR(store.WriteStep(r.name, &rec));
  return Seconds(t0, Clock::now());
}

// The learner's view of the batch: prompt, completions, rollout logprobs, routing, advantages.
absl::StatusOr<std::vector<RlGroup>> TrainingGroups(const StepBatch& b, const std::vector<double>& adv,
                                                    int64_t group_size) {
  std::vector<RlGroup> out(b.groups.size());
  for (size_t g = 0; g < b.groups.size(); ++g) {
    out[g].prompt = b.prompts[g].tokens;
    out[g].prompt_routing = b.groups[g].prompt_routing;
    for (size_t i = 0; i < b.groups[g].samples.size(); ++i) {
      const SampleResult& sr = b.groups[g].samples[i];
      RlSample rs;
      rs.completion = sr.tokens;
      rs.rollout_logprobs = sr.raw_logprobs;
      rs.routing = sr.routing;
      rs.advantage = adv[g * group_size + i];
      rs.trained = b.rewards[g][i].has_reward() && sr.finish_reason != FinishReason::kAborted;
      if (!sr.environment_spans.empty()) {  // the environment's tokens are context, not actions
        GRPO_ASSIGN_OR_RETURN(rs.loss_mask,
                              GeneratedTokenMask(static_cast<int64_t>(sr.tokens.size()), sr.environment_spans));
      }
      out[g].samples.push_back(std::move(rs));
    }
  }
  return out;
}

// How far behind the learner a step's samples were generated, in weight versions.
struct StalenessStats {
  double mean = 0;        // over the samples with tokens, of learner version - oldest token version
  int64_t max = 0;
  int64_t dropped = 0;    // samples older than rollout.max_staleness: not trained
  int64_t multi_version = 0;  // samples whose tokens span more than one version (partial rollouts)
};

// Each sample's staleness is `learner_version` (the weights the update starts from) minus the
// version of its oldest token (rollout/engine.h records them per token). Samples over
// `max_staleness` are dropped from the loss (`trained` false), not down-weighted; younger ones
// keep every token, each corrected by the loss's is_correction against the logprob it was
// sampled with.
StalenessStats BoundStaleness(const StepBatch& b, uint64_t learner_version, int64_t max_staleness,
                              std::vector<RlGroup>* groups) {
  StalenessStats st;
  int64_t counted = 0;
  double sum = 0;
  for (size_t g = 0; g < b.groups.size(); ++g) {
    for (size_t i = 0; i < b.groups[g].samples.size(); ++i) {
      const SampleResult& sr = b.groups[g].samples[i];
      if (sr.versions.empty()) continue;  // no tokens
      uint64_t oldest = sr.versions.front().version;
      for (const VersionSpan& v : sr.versions) oldest = std::min(oldest, v.version);
      const int64_t stale = oldest >= learner_version ? 0 : static_cast<int64_t>(learner_version - oldest);
      ++counted;
      sum += static_cast<double>(stale);
      st.max = std::max(st.max, stale);
      if (sr.versions.size() > 1) ++st.multi_version;
      if (stale > max_staleness && (*groups)[g].samples[i].trained) {
        (*groups)[g].samples[i].trained = false;
        ++st.dropped;
      }
    }
  }
  if (counted > 0) st.mean = sum / static_cast<double>(counted);
  return st;
}

// Each sample of `g` as the teacher reads it: the prompt, then the completion.
std::vector<std::vector<int32_t>> SampleSequences(const RlGroup& g) {
  std::vector<std::vector<int32_t>> seqs;
  for (const RlSample& s : g.samples) {
    seqs.push_back(g.prompt);
    seqs.back().insert(seqs.back().end(), s.completion.begin(), s.completion.end());
  }
  return seqs;
}

// On-policy distillation: the teacher's logprob of every completion token (one Logprobs call per
// group, its samples together) turns into per-token advantages coef * -(student - teacher), the
// student's logprob being the rollout's raw one (the policy that sampled the token). Without
// distill.rule_rewards the samples' rule-reward advantages are dropped. Returns the mean of
// student - teacher over the tokens: the sampled estimate of KL(student || teacher).
absl::StatusOr<double> AddDistillation(Teacher& teacher, const TrainRecipe& r, std::vector<RlGroup>* groups) {
  double sum = 0;
  int64_t n = 0;
  for (RlGroup& g : *groups) {
    const std::vector<std::vector<int32_t>> seqs = SampleSequences(g);
    GRPO_ASSIGN_OR_RETURN(std::vector<std::vector<float>> scores, teacher.Logprobs(seqs));
    for (size_t i = 0; i < g.samples.size(); ++i) {
      RlSample& s = g.samples[i];
      const size_t P = g.prompt.size(), T = s.completion.size();
      const std::span<const float> teacher_lp(scores[i].data() + P - 1, T);
      if (s.rollout_logprobs.size() != T) {
        return absl::InvalidArgumentError("distill.teacher: a sample has no rollout logprobs (the student's)");
      }
      GRPO_ASSIGN_OR_RETURN(s.token_advantages, DistillationAdvantages(s.rollout_logprobs, teacher_lp, r.distill_coef));
      for (size_t t = 0; t < T; ++t) sum += static_cast<double>(s.rollout_logprobs[t]) - teacher_lp[t];
      n += static_cast<int64_t>(T);
      if (!r.distill_rule_rewards) s.advantage = 0;
    }
  }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

// Full-distribution distillation (distill.divergence reverse_kl / forward_kl): the teacher's
// logits at every completion token's position go with the sample (RlSample::teacher_logits),
// one Logits call per group; the loss then adds coef * KL over the vocabulary (RlUpdate). Without
// distill.rule_rewards the samples' rule-reward advantages are dropped. The memory the logits
// take is checked before the teacher runs: completion tokens x vocab floats twice (with the
// samples, and packed for the update), and one group's teacher output (every position's logits)
// twice while it is split into samples.
absl::Status AddTeacherLogits(Teacher& teacher, const TrainRecipe& r, int64_t vocab, std::vector<RlGroup>* groups) {
  int64_t tokens = 0, group_rows = 0;
  for (const RlGroup& g : *groups) {
    if (g.prompt.empty()) return absl::InvalidArgumentError("distill.divergence: a group has an empty prompt");
    int64_t rows = 0;
    for (const RlSample& s : g.samples) {
      tokens += static_cast<int64_t>(s.completion.size());
      rows += static_cast<int64_t>(g.prompt.size() + s.completion.size()) - 1;
    }
    group_rows = std::max(group_rows, rows);
  }
  const std::string keys = " (distill.divergence; rollout.prompts_per_step, group_size, max_new_tokens)";
  MemoryPlan plan;
  plan.Add("teacher logits of the step's " + std::to_string(tokens) + " completion tokens x vocab " +
               std::to_string(vocab) + ", twice" + keys,
           CheckedInt64(tokens) * vocab * int64_t{4} * int64_t{2});
  plan.Add("one group's teacher output, " + std::to_string(group_rows) + " positions x vocab " + std::to_string(vocab) +
               ", twice" + keys,
           CheckedInt64(group_rows) * vocab * int64_t{4} * int64_t{2});
  GRPO_RETURN_IF_ERROR(plan.Check("full-distribution distillation"));
  for (RlGroup& g : *groups) {
    GRPO_ASSIGN_OR_RETURN(std::vector<std::vector<float>> logits, teacher.Logits(SampleSequences(g)));
    const int64_t P = static_cast<int64_t>(g.prompt.size());
    for (size_t i = 0; i < g.samples.size(); ++i) {
      RlSample& s = g.samples[i];
      const int64_t T = static_cast<int64_t>(s.completion.size());
      if (i >= logits.size() || static_cast<int64_t>(logits[i].size()) != (P + T - 1) * vocab) {
        return absl::InternalError("distill.teacher: the teacher's logits do not cover a sample");
      }
      s.teacher_logits.assign(logits[i].begin() + (P - 1) * vocab, logits[i].end());
      logits[i] = std::vector<float>();  // freed as soon as it is copied
      if (!r.distill_rule_rewards) s.advantage = 0;
    }
  }
  return absl::OkStatus();
}

// The teacher of on-policy distillation: distill.teacher on the policy's backend, or the rollout
// server(s) distill.teacher_server; null without one. Its vocabulary must be the student's (the same
// token ids).
absl::StatusOr<std::unique_ptr<Teacher>> LoadTeacher(const Run& run) {
  const TrainRecipe& r = *run.recipe;
  const int64_t sv = run.policy->config().vocab_size;
  if (!r.distill_teacher_servers.empty()) {
    TeacherServerOptions to;
    to.endpoints = r.distill_teacher_servers;
    to.student_vocab_size = sv;
    return ConnectTeacher(to);
  }
  if (r.distill_teacher.empty()) return std::unique_ptr<Teacher>();
  absl::StatusOr<std::unique_ptr<CausalLM>> teacher = CausalLM::Load(r.distill_teacher, *run.backend);
  if (!teacher.ok()) return WithContext(teacher.status(), "distill.teacher " + r.distill_teacher);
  const int64_t tv = (*teacher)->config().vocab_size;
  if (tv != sv) {
    return absl::InvalidArgumentError("distill.teacher " + r.distill_teacher + " has vocab_size " + std::to_string(tv) +
                                      ", the student " + std::to_string(sv) + ": they must share the tokenizer");
  }
  return EmbeddedTeacher(*std::move(teacher));
}

// What the update needs besides the batch.
struct Learner {
  CausalLM* policy;
  CausalLM* reference;  // null unless algorithm.kl_beta > 0
  AdamW* opt;           // over no parameters when `zero` steps instead
  ShardedAdamW* zero;   // data-parallel ranks (ZeRO-1), else null
  GradientReducer* reducer;  // data-parallel ranks: the gradient buckets, else null
  std::vector<Buffer>* grads;  // scratch (device gradients)
};

struct UpdateResult {
  RlUpdateStats stats;
  double t_learn = 0;
  std::optional<double> sent_mib;  // data-parallel ranks: what this rank sent during the update
};

absl::StatusOr<UpdateResult> UpdatePolicy(const Learner& l, const TrainRecipe& r, bool routing,
                                          const std::vector<RlGroup>& groups, Collective* collective) {
  const auto t0 = Clock::now();
  const uint64_t sent0 = collective != nullptr ? collective->bytes_sent() : 0;
  if (collective != nullptr) GRPO_RETURN_IF_ERROR(SendStep(*collective, groups));
  UpdateResult u;
  GRPO_ASSIGN_OR_RETURN(u.stats, RlUpdate(*l.policy, l.reference, *l.opt, groups,
                                          UpdateOptions(r, routing, collective, l.zero, l.reducer), l.grads));
  u.t_learn = Seconds(t0, Clock::now());
  if (collective != nullptr) u.sent_mib = static_cast<double>(collective->bytes_sent() - sent0) / (1 << 20);
  return u;
}

// The rollouts of the steps after the current one (rollout.max_staleness >= 1): launched after
// a step's store write, up to max_staleness steps ahead, and run one after another in step order
// (they share the engine and the prompt sampler), collected at the start of their step.
class RolloutQueue {
 public:
  explicit RolloutQueue(CollectStep collect) : collect_(collect) {}
  RolloutQueue(const RolloutQueue&) = delete;
  RolloutQueue& operator=(const RolloutQueue&) = delete;
  ~RolloutQueue() { WaitAll(); }

  bool empty() const { return queue_.empty(); }

  // Launches the rollout of `step` behind those queued.
  void Launch(int64_t step) {
    auto done = std::make_shared<std::promise<void>>();
    std::shared_future<void> before = last_done_;
    last_done_ = done->get_future().share();
    queue_.push_back(std::async(std::launch::async, [collect = collect_, before, done, step] {
      if (before.valid()) before.wait();
      absl::StatusOr<StepBatch> b = collect(step);
      done->set_value();
      return b;
    }));
    next_step_ = step + 1;
  }
  // Launches the rollouts of the steps after `step` not launched yet, up to `max_staleness`
  // steps ahead and none past the last of `steps`.
  void LaunchAhead(int64_t step, int64_t max_staleness, int64_t steps) {
    for (int64_t ahead = std::max(next_step_, step + 1); ahead <= std::min(step + max_staleness, steps - 1); ++ahead) {
      Launch(ahead);
    }
  }
  // The oldest queued step's batch (waits for it).
  absl::StatusOr<StepBatch> Take() {
    absl::StatusOr<StepBatch> b = queue_.front().get();
    queue_.pop_front();
    return b;
  }
  // Waits until every queued rollout has finished.
  void WaitAll() const {
    if (last_done_.valid()) last_done_.wait();
  }

 private:
  CollectStep collect_;
  std::deque<std::future<absl::StatusOr<StepBatch>>> queue_;
  std::shared_future<void> last_done_;
  int64_t next_step_ = 0;
};

struct PushResult {
  uint64_t version = 0;  // the version pushed
  double t_overlap_wait = 0, t_sync = 0;
};

// Pushes the updated weights as version `version + 1`. With max_staleness 1 (rollout.overlap)
// after the overlapping rollout has finished with the previous version, so which weights generate
// which step does not depend on timing. (With GRPO_NUM_THREADS > 1 the two concurrent computations
// still differ run to run in the last float bits; see docs/training.md.) With max_staleness >= 2
// without waiting: the engine, or each rollout server, takes the weights between two of its
// decode steps, in the middle of the queued rollouts' generations (partial rollouts; the tokens
// record their versions, which rollout servers return with the samples).
absl::StatusOr<PushResult> PushAfterRollout(PolicyRollout& rollout, const CausalLM& policy, uint64_t version,
                                            int64_t max_staleness, const RolloutQueue& queued) {
  PushResult p;
  if (max_staleness == 1) {
    const auto t0 = Clock::now();
    queued.WaitAll();
    p.t_overlap_wait = Seconds(t0, Clock::now());
  }
  const auto t0 = Clock::now();
  p.version = version + 1;
  GRPO_RETURN_IF_ERROR(rollout.PushWeights(p.version, policy));
  p.t_sync = Seconds(t0, Clock::now());
  return p;
}

// The step's metrics row (before evaluation and the step time).
std::map<std::string, double> StepRow(const Run& run, const StepBatch& b, const RewardStats& rs,
                                      const StalenessStats& st, const UpdateResult& u, const PushResult& p,
                                      double t_store) {
  const TrainRecipe& r = *run.recipe;
  const RlUpdateStats& us = u.stats;
  std::map<std::string, double> row;
  const double mean = rs.sum / rs.scored;
  row["reward_mean"] = mean;
  row["reward_std"] = std::sqrt(std::max(0.0, rs.sq / rs.scored - mean * mean));
  row["reward_errors"] = static_cast<double>(rs.errors);
  for (const auto& [rule, acc] : rs.rule_sums) row["reward/" + rule] = acc.first / acc.second;
  row["accuracy"] = rs.correct / rs.scored;
  row["response_len_mean"] = rs.len_sum / rs.samples;
  if (ToolsOn(run)) {
    row["tool_call_rate"] = rs.tool_samples / rs.samples;
    row["tool_calls_mean"] = rs.tool_calls / rs.samples;
  }
  row["kl"] = us.kl;
  row["clip_frac"] = us.clip_frac;
  row["entropy"] = us.entropy;
  row["grad_norm"] = us.grad_norm;
  row["lr"] = us.lr;
  row["skipped_updates"] = static_cast<double>(us.skipped_steps);
  row["samples_trained"] = static_cast<double>(us.samples_trained);
  row["loss"] = us.loss;
  if (us.mismatch_tokens > 0) {  // the rollout returns raw logprobs for every sample
    row["mismatch/max_abs_logprob"] = us.mismatch_max_abs_logprob;
    row["mismatch/mean_abs_logprob"] = us.mismatch_mean_abs_logprob;
  }
  row["zero_std_groups"] = static_cast<double>(rs.zero_std_groups);
  if (r.dynamic_sampling) {
    row["dynamic_sampling/dropped_groups"] = static_cast<double>(b.dropped);
    row["dynamic_sampling/rounds"] = static_cast<double>(b.rounds);
  }
  row["weight_version"] = static_cast<double>(p.version);
  row["staleness/mean"] = st.mean;
  row["staleness/max"] = static_cast<double>(st.max);
  row["staleness/dropped_samples"] = static_cast<double>(st.dropped);
  row["staleness/multi_version_samples"] = static_cast<double>(st.multi_version);
  if (r.data_source == DataSource::kJsonl) {  // rows of data.jsonl.train / .eval skipped as bad
    row["data/bad_rows"] = static_cast<double>(run.train_set.bad_rows.size() + run.eval_set.bad_rows.size());
  }
  row["time/rollout"] = b.t_rollout;
  row["time/reward"] = b.t_reward;
  row["time/store"] = t_store;
  row["time/learn"] = u.t_learn;
  if (u.sent_mib) row["comm/sent_mib"] = *u.sent_mib;
  row["time/sync"] = p.t_sync;
  if (r.overlap) row["time/overlap_wait"] = p.t_overlap_wait;
  return row;
}

std::string ProgressLine(int64_t step, int64_t steps, std::map<std::string, double>& row, const UpdateResult& u,
                         double t_rollout) {
  return "step " + std::to_string(step + 1) + "/" + std::to_string(steps) + " | reward " +
         Fmt("%.3f", row["reward_mean"]) + " acc " + Fmt("%.3f", row["accuracy"]) +
         (row.count("reward/format") ? " fmt " + Fmt("%.3f", row["reward/format"]) : "") +
         (row.count("tool_call_rate") ? " tool " + Fmt("%.3f", row["tool_call_rate"]) : "") + " | len " +
         Fmt("%.1f", row["response_len_mean"]) + " | ent " + Fmt("%.3f", u.stats.entropy) + " clip " +
         Fmt("%.3f", u.stats.clip_frac) + " | " + Fmt("%.1fs", row["time/step"]) + " (rollout " +
         Fmt("%.1f", t_rollout) + " learn " + Fmt("%.1f", u.t_learn) + ")";
}

// ===== Setup of the RL stage ==================================================================

// The frozen reference: the policy as RL starts (saved once as checkpoints/reference); null
// without a KL term.
absl::StatusOr<std::unique_ptr<CausalLM>> LoadReference(const Run& run) {
  if (run.recipe->loss.kl_beta <= 0) return std::unique_ptr<CausalLM>();
  const std::string ref_dir = run.dir + "/checkpoints/reference";
  if (!fs::exists(ref_dir + "/model.safetensors")) {  // written whole, then put in place
    const std::string tmp = ref_dir + ".tmp";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    GRPO_RETURN_IF_ERROR(SaveModel(run.policy->config(), run.policy->ReadParameters(), tmp));
    GRPO_RETURN_IF_ERROR(WriteChecksumManifest(tmp));  // CausalLM::Load verifies it
    GRPO_RETURN_IF_ERROR(ReplaceDirectory(tmp, ref_dir));
  }
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> reference, CausalLM::Load(ref_dir, *run.backend));
  // It computes as the policy does (learner.precision), so their KL is 0 before the first update.
  GRPO_RETURN_IF_ERROR(reference->SetComputeDType(run.recipe->learner_precision));
  return reference;
}

// The recipe's tools: section.
ToolSettings RecipeToolSettings(const TrainRecipe& r) {
  return {.environment = r.tool_environment,
          .tags = r.tool_tags,
          .plugin = r.tool_plugin,
          .plugin_config = r.tool_plugin_config,
          .timeout_ms = r.tool_timeout_ms,
          .max_calls = r.max_tool_calls,
          .max_output_tokens = r.max_tool_output_tokens,
          .call_threads = r.tool_call_threads};
}

// The embedded rollouts' tool environment (tools.environment); null for single-turn rollouts and
// with rollout.endpoints, whose servers run the environment.
absl::StatusOr<std::shared_ptr<Environment>> OpenEnvironment(const TrainRecipe& r) {
  if (!r.rollout_endpoints.empty()) return std::shared_ptr<Environment>();
  return OpenToolEnvironment(RecipeToolSettings(r));
}

absl::StatusOr<std::unique_ptr<RewardScorer>> OpenScorer(const TrainRecipe& r) {
  if (!r.reward_endpoints.empty()) return MakeRemoteScorer(r.reward_endpoints);
  GRPO_ASSIGN_OR_RETURN(reward::RuleSet rules, reward::RuleSet::FromConfig(r.rules, {}));
  return MakeEmbeddedScorer(std::make_shared<reward::RuleSet>(std::move(rules)));
}

// The rollout role at weight version `*version`. Remote servers first receive the trainer's
// current weights as the next version, whatever they loaded (`*version` is advanced).
absl::StatusOr<std::unique_ptr<PolicyRollout>> OpenRollout(const Run& run, uint64_t* version, Collective* ranks) {
  const TrainRecipe& r = *run.recipe;
  if (r.rollout_endpoints.empty()) {
    EmbeddedRolloutOptions ro;
    ro.format = r.serve_format;
    ro.kv_memory_bytes = r.kv_memory_mb << 20;
    ro.initial_version = *version;
    ro.tokenizer = run.tok.get();
    ro.tool_call_threads = r.tool_call_threads;
    return MakeEmbeddedRollout(*run.policy, *run.backend, ro);
  }
  RemoteRolloutOptions ro;
  ro.endpoints = r.rollout_endpoints;
  ro.push = PushOptions(r);
  if (ranks != nullptr) {  // data-parallel ranks push their shards in parallel
    ro.ranks = ranks;
    ro.announce = [ranks](uint64_t v, const std::vector<bool>& up) { return SendPush(*ranks, v, up); };
  }
  ro.tools = RecipeToolSettings(r);
  // The job's push token, which rollout servers require on weight pushes (docs/security.md).
  GRPO_ASSIGN_OR_RETURN(ro.push_token, PushTokenFromFileOrEnv(""));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<PolicyRollout> rollout, MakeRemoteRollout(ro));
  GRPO_RETURN_IF_ERROR(rollout->PushWeights(*version + 1, *run.policy));
  *version += 1;
  return rollout;
}

// The run's trajectory store, rolled back to step `start` on a resume: steps stored from there
// on belong to an attempt that did not reach its next checkpoint (killed, or failed, e.g. on a
// damaged model); they are removed and generated again, so no resume finds its next step
// already stored.
absl::StatusOr<std::unique_ptr<store::TrajectoryStore>> OpenStore(const Run& run, int64_t start) {
  const TrainRecipe& r = *run.recipe;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<store::TrajectoryStore> store, store::TrajectoryStore::Open(run.dir + "/store"));
  if (!store->GetRun(r.name).ok()) {
    grpo::v1::RunMetadata meta;
    meta.set_run_name(r.name);
    meta.set_recipe_yaml(r.source.Dump());
    meta.set_seed(r.seed);
    meta.mutable_model()->set_model_type(run.policy->config().model_type);
    meta.mutable_model()->set_path(r.model_path.empty() ? "(initialized by the recipe)" : r.model_path);
    meta.mutable_tokenizer()->set_path(run.tokenizer_dir);
    GRPO_RETURN_IF_ERROR(store->CreateRun(meta));
  }
  if (!run.checkpoint) return store;
  GRPO_ASSIGN_OR_RETURN(std::vector<uint64_t> removed, store->DeleteStepsFrom(r.name, static_cast<uint64_t>(start)));
  if (!removed.empty()) {
    std::fprintf(stderr,
                 "resume: removed %zu step(s) from the store (store steps %llu to %llu, written after "
                 "checkpoint %s by an attempt that did not reach its next checkpoint); they are generated "
                 "again\n",
                 removed.size(), static_cast<unsigned long long>(removed.front()),
                 static_cast<unsigned long long>(removed.back()), fs::path(run.checkpoint->dir).filename().c_str());
  }
  return store;
}

// metrics.jsonl, rolled back on a resume: the rows after the checkpoint go (all of them when RL
// never checkpointed).
absl::StatusOr<std::unique_ptr<MetricsWriter>> OpenMetrics(const Run& run, int64_t start, bool resumed_rl) {
  const std::string metrics_path = run.dir + "/metrics.jsonl";
  MetricsWriterOptions mo;
  if (fs::exists(metrics_path)) {
    mo.resumed_from_step = start;
    GRPO_RETURN_IF_ERROR(TruncateAfterStep(metrics_path, resumed_rl ? start : -1));
  }
  return MetricsWriter::Open(run.dir, mo);
}

// Evaluation for a metrics row, remembered in the summary as well.
absl::Status EvaluateInto(Run& run, PolicyRollout& rollout, RewardScorer& scorer,
                          const std::vector<Prompt>& prompts, const TrainOptions& o, int64_t step,
                          std::map<std::string, double>* row, TrainSummary* summary) {
  GRPO_ASSIGN_OR_RETURN(auto m, Evaluate(run, rollout, scorer, prompts));
  std::string line = "eval @" + std::to_string(step) + ":";
  for (const auto& [k, v] : m) {
    (*row)[k] = v;
    line += " " + k.substr(5) + " " + Fmt("%.3f", v);
  }
  Progress(o, line);
  if (m.count("eval/accuracy")) {
    if (summary->first_eval_accuracy < 0) summary->first_eval_accuracy = m["eval/accuracy"];
    summary->last_eval_accuracy = m["eval/accuracy"];
  }
  if (m.count("eval/format")) summary->last_eval_format = m["eval/format"];
  return absl::OkStatus();
}

// rollout.batch_invariant on the run's backend, set before any model of the stage computes and
// before the engine sizes its KV cache (MLA caches more per position in the mode). Remote rollout
// servers need `grpo rollout serve --batch-invariant`.
absl::Status SetBatchInvariantMode(const Run& run) {
  if (run.backend->SetBatchInvariant(run.recipe->batch_invariant)) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string("rollout.batch_invariant: backend '") + run.backend->name() +
                                    "' has no batch-invariant mode");
}

// The optimizer state of the RL stage: AdamW over every trainable parameter, or on
// data-parallel ranks its ZeRO-1 shards (`opt` then covers no parameters) and the bucketed
// gradient reduction (learner/gradient_reducer.h). On a resume of the
// stage it continues from the checkpoint's state.
struct RlOptimizer {
  AdamW opt;
  std::optional<ShardedAdamW> zero;
  std::unique_ptr<GradientReducer> reducer;  // data-parallel ranks: the gradients summed in buckets
};

absl::StatusOr<RlOptimizer> OpenOptimizer(const Run& run, const TrainOptions& o, Collective* ranks,
                                          bool resumed_rl) {
  const TrainRecipe& r = *run.recipe;
  const std::vector<ParameterSpec>& specs = run.policy->parameter_specs();
  GRPO_ASSIGN_OR_RETURN(AdamW opt, AdamW::Create(run.policy->backend(), ranks ? std::vector<ParameterSpec>{} : specs,
                                                 r.adamw));
  RlOptimizer optimizer{std::move(opt), std::nullopt, nullptr};
  if (ranks != nullptr) {
    GRPO_RETURN_IF_ERROR(OpenZero(r, *run.policy, *ranks, &optimizer.zero, &optimizer.reducer));
    if (resumed_rl) GRPO_RETURN_IF_ERROR(optimizer.zero->LoadShard(run.checkpoint->dir));
    GRPO_RETURN_IF_ERROR(SendStart(*ranks, *run.policy, resumed_rl ? run.checkpoint->dir : ""));
    Progress(o, ShardingSummary(*ranks, *optimizer.zero, *optimizer.reducer));
  } else if (resumed_rl) {
    GRPO_RETURN_IF_ERROR(LoadOptimizerState(*run.checkpoint, &optimizer.opt));
  }
  return optimizer;
}

// The checkpoint after RL step `steps_done`: what a resume starts from (the weights' version and
// the data cursor included). Data-parallel ranks save their optimizer shards beside it.
absl::Status SaveRlCheckpoint(const Run& run, int64_t steps_done, uint64_t version, const data::Cursor& cursor,
                              const RlOptimizer& optimizer, Collective* ranks) {
  TrainerState st;
  st.stage = "rl";
  st.step = steps_done;
  st.pretrain_steps_done = run.recipe->pretrain.steps;
  st.weight_version = version;
  st.data_cursor = cursor;
  if (!optimizer.zero) return SaveRunCheckpoint(run, st, &optimizer.opt, 2);
  return SaveRunCheckpoint(run, st, nullptr, 2,
                           [&](const std::string& dir) { return SaveShards(*ranks, *optimizer.zero, dir); });
}

// The prompt sampler over data.jsonl.train (none for generated tasks), at the checkpoint's
// cursor on a resume of the stage.
absl::StatusOr<std::optional<data::EpochSampler>> OpenSampler(const Run& run, bool resumed_rl) {
  const TrainRecipe& r = *run.recipe;
  if (r.data_source != DataSource::kJsonl) return std::optional<data::EpochSampler>();
  return data::EpochSampler::Create(static_cast<int64_t>(run.train_set.examples.size()), r.seed, true,
                                    resumed_rl ? run.checkpoint->state.data_cursor : data::Cursor{});
}

// The end of the stage: data-parallel ranks released, metrics and store flushed, report.html
// written.
absl::Status FinishRl(const Run& run, Collective* ranks, MetricsWriter& metrics, store::TrajectoryStore& store) {
  if (ranks != nullptr) GRPO_RETURN_IF_ERROR(SendDone(*ranks));
  GRPO_RETURN_IF_ERROR(metrics.Close());
  GRPO_RETURN_IF_ERROR(store.Flush());
  ReportOptions rep;
  rep.title = run.recipe->name;
  return WriteReport(run.dir + "/metrics.jsonl", run.dir + "/report.html", rep);
}

}  // namespace

RlUpdateOptions UpdateOptions(const TrainRecipe& r, bool routing, Collective* collective,
                              ShardedAdamW* sharded, GradientReducer* reducer) {
  RlUpdateOptions uo;
  uo.loss = r.loss;
  if (r.distill_divergence && !r.distill_teacher.empty()) {  // a teacher server is refused for it
    uo.loss.divergence_coef = r.distill_coef;
    uo.divergence = *r.distill_divergence;
  }
  uo.mini_batches = r.mini_batches;
  uo.epochs = r.epochs;
  uo.schedule = r.schedule;
  uo.max_grad_norm = r.max_grad_norm;
  uo.routing_replay = routing;
  uo.collective = collective;
  uo.sharded_optimizer = sharded;
  uo.gradient_reducer = reducer;
  return uo;
}

absl::StatusOr<TrainSummary> RunRl(Run& run, const TrainOptions& o) {
  const TrainRecipe& r = *run.recipe;
  TrainSummary summary;
  summary.run_dir = run.dir;
  summary.stage = "rl";
  const bool resumed_rl = run.checkpoint && run.checkpoint->state.stage == "rl";
  const int64_t start = resumed_rl ? run.checkpoint->state.step : 0;
  uint64_t version = resumed_rl ? run.checkpoint->state.weight_version : 0;

  GRPO_RETURN_IF_ERROR(SetBatchInvariantMode(run));  // before any model of the stage computes
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> reference, LoadReference(run));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<Teacher> teacher, LoadTeacher(run));
  Collective* ranks = Distributed(o) ? o.collective : nullptr;
  GRPO_ASSIGN_OR_RETURN(RlOptimizer optimizer, OpenOptimizer(run, o, ranks, resumed_rl));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<RewardScorer> scorer, OpenScorer(r));
  GRPO_ASSIGN_OR_RETURN(run.environment, OpenEnvironment(r));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<PolicyRollout> rollout, OpenRollout(run, &version, ranks));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<store::TrajectoryStore> store, OpenStore(run, start));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<MetricsWriter> metrics, OpenMetrics(run, start, resumed_rl));
  GRPO_ASSIGN_OR_RETURN(std::optional<data::EpochSampler> sampler, OpenSampler(run, resumed_rl));
  GRPO_ASSIGN_OR_RETURN(std::vector<Prompt> eval_prompts, EvalPrompts(run));
  if (start == 0 && !eval_prompts.empty()) {
    std::map<std::string, double> row;
    GRPO_RETURN_IF_ERROR(EvaluateInto(run, *rollout, *scorer, eval_prompts, o, 0, &row, &summary));
    GRPO_RETURN_IF_ERROR(metrics->Log(0, row));
  }

  // Multi-turn samples carry routing for every token, the environment's included (rollout/engine.h).
  const bool routing = run.policy->config().NumMoeLayers() > 0 && r.routing_replay;
  const CollectStep collect{&run, rollout.get(), scorer.get(), sampler ? &*sampler : nullptr, routing};
  std::vector<Buffer> grads;
  const Learner learner{run.policy.get(), reference.get(), &optimizer.opt,
                        optimizer.zero ? &*optimizer.zero : nullptr, optimizer.reducer.get(), &grads};
  RolloutQueue queued(collect);  // the next steps' rollouts, with rollout.max_staleness >= 1
  int64_t steps_this_run = 0;
  for (int64_t step = start; step < r.steps; ++step) {
    const auto t_step = Clock::now();
    GRPO_ASSIGN_OR_RETURN(StepBatch batch, queued.empty() ? collect(step) : queued.Take());
    GRPO_ASSIGN_OR_RETURN(std::vector<double> adv, StepAdvantages(batch, r.advantage));
    GRPO_ASSIGN_OR_RETURN(RewardStats rewards, SummarizeRewards(batch, step, o));
    GRPO_ASSIGN_OR_RETURN(double t_store, StoreStep(*store, r, *run.tok, step, batch, adv));
    queued.LaunchAhead(step, r.max_staleness, r.steps);
    GRPO_ASSIGN_OR_RETURN(std::vector<RlGroup> groups, TrainingGroups(batch, adv, r.group_size));
    const StalenessStats staleness = BoundStaleness(batch, version, r.max_staleness, &groups);
    std::optional<double> reverse_kl;
    if (teacher != nullptr && r.distill_divergence) {
      GRPO_RETURN_IF_ERROR(AddTeacherLogits(*teacher, r, run.policy->config().vocab_size, &groups));
    } else if (teacher != nullptr) {
      GRPO_ASSIGN_OR_RETURN(reverse_kl, AddDistillation(*teacher, r, &groups));
    }
    GRPO_ASSIGN_OR_RETURN(UpdateResult update, UpdatePolicy(learner, r, routing, groups, ranks));
    GRPO_ASSIGN_OR_RETURN(PushResult push,
                          PushAfterRollout(*rollout, *run.policy, version, r.max_staleness, queued));
    version = push.version;

    std::map<std::string, double> row = StepRow(run, batch, rewards, staleness, update, push, t_store);
    if (reverse_kl) row["distill/reverse_kl"] = *reverse_kl;
    if (teacher != nullptr && r.distill_divergence) row["distill/divergence"] = update.stats.divergence;
    const bool last = step + 1 == r.steps;
    if ((r.eval_every > 0 && (step + 1) % r.eval_every == 0) || last) {
      const auto t_eval0 = Clock::now();
      queued.WaitAll();  // evaluation has the rollout and the scorer to itself
      GRPO_RETURN_IF_ERROR(EvaluateInto(run, *rollout, *scorer, eval_prompts, o, step + 1, &row, &summary));
      row["time/eval"] = Seconds(t_eval0, Clock::now());
    }
    row["time/step"] = Seconds(t_step, Clock::now());
    GRPO_RETURN_IF_ERROR(metrics->Log(step + 1, row));
    Progress(o, ProgressLine(step, r.steps, row, update, batch.t_rollout));

    ++steps_this_run;
    const bool stop = (o.stop != nullptr && o.stop->load()) ||
                      (o.max_steps_this_run > 0 && steps_this_run >= o.max_steps_this_run);
    if (CheckpointDue(step + 1, last, stop, r.checkpoint_every)) {
      GRPO_RETURN_IF_ERROR(SaveRlCheckpoint(run, step + 1, version, batch.cursor_after, optimizer, ranks));
    }
    summary.steps_done = step + 1;
    if (stop && !last) {
      summary.stopped_early = true;
      break;
    }
  }
  GRPO_RETURN_IF_ERROR(FinishRl(run, ranks, *metrics, *store));
  return summary;
}

}  // namespace grpo::trainer_internal
