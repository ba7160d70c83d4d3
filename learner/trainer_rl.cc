// The GRPO loop of `grpo train` and the held-out evaluation (see trainer.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>

#include <google/protobuf/util/time_util.h>

#include "core/checksum_manifest.h"
#include "core/file.h"
#include "core/metrics.h"
#include "data/addition.h"
#include "learner/advantage.h"
#include "learner/checkpoint.h"
#include "learner/remote_rollout.h"
#include "learner/report.h"
#include "learner/rl_update.h"
#include "learner/roles.h"
#include "learner/trainer_internal.h"
#include "rollout/push_token.h"
#include "rollout/sample_proto.h"
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
    double n = 0, correct = 0, fmt = 0, len = 0;
    bool has_format = false;
    for (size_t g = 0; g < s.groups.size(); ++g) {
      for (size_t i = 0; i < s.groups[g].samples.size(); ++i) {
        n += 1;
        correct += Correct(s.rewards[g][i]);
        fmt += RuleScore(s.rewards[g][i], "format", &has_format);
        len += static_cast<double>(s.groups[g].samples[i].tokens.size());
      }
    }
    const std::string suffix = greedy ? "_greedy" : "";
    m["eval/accuracy" + suffix] = correct / n;
    if (has_format) m["eval/format" + suffix] = fmt / n;
    m["eval/response_len" + suffix] = len / n;
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

}  // namespace

absl::StatusOr<TrainSummary> RunRl(Run& run, const TrainOptions& o) {
  const TrainRecipe& r = *run.recipe;
  TrainSummary summary;
  summary.run_dir = run.dir;
  summary.stage = "rl";
  const bool resumed_rl = run.checkpoint && run.checkpoint->state.stage == "rl";
  int64_t start = resumed_rl ? run.checkpoint->state.step : 0;
  uint64_t version = resumed_rl ? run.checkpoint->state.weight_version : 0;

  // The frozen reference: the policy as RL starts (saved once as checkpoints/reference).
  std::unique_ptr<CausalLM> reference;
  const std::string ref_dir = run.dir + "/checkpoints/reference";
  if (r.loss.kl_beta > 0) {
    if (!fs::exists(ref_dir + "/model.safetensors")) {  // written whole, then put in place
      const std::string tmp = ref_dir + ".tmp";
      std::error_code ec;
      fs::remove_all(tmp, ec);
      GRPO_RETURN_IF_ERROR(SaveModel(run.policy->config(), run.policy->ReadParameters(), tmp));
      GRPO_RETURN_IF_ERROR(WriteChecksumManifest(tmp));  // CausalLM::Load verifies it
      GRPO_RETURN_IF_ERROR(ReplaceDirectory(tmp, ref_dir));
    }
    GRPO_ASSIGN_OR_RETURN(reference, CausalLM::Load(ref_dir));
  }

  GRPO_ASSIGN_OR_RETURN(AdamW opt, AdamW::Create(run.policy->backend(), run.policy->parameter_specs(), r.adamw));
  if (resumed_rl) GRPO_RETURN_IF_ERROR(LoadOptimizerState(*run.checkpoint, &opt));

  std::unique_ptr<RewardScorer> scorer;
  if (r.reward_endpoints.empty()) {
    GRPO_ASSIGN_OR_RETURN(reward::RuleSet rules, reward::RuleSet::FromConfig(r.rules, {}));
    scorer = MakeEmbeddedScorer(std::make_shared<reward::RuleSet>(std::move(rules)));
  } else {
    GRPO_ASSIGN_OR_RETURN(scorer, MakeRemoteScorer(r.reward_endpoints));
  }
  std::unique_ptr<PolicyRollout> rollout;
  if (r.rollout_endpoints.empty()) {
    EmbeddedRolloutOptions ro;
    ro.format = r.serve_format;
    ro.kv_memory_bytes = r.kv_memory_mb << 20;
    ro.initial_version = version;
    ro.tokenizer = run.tok.get();
    ro.backend = &run.policy->backend();
    GRPO_ASSIGN_OR_RETURN(rollout, MakeEmbeddedRollout(run.policy->config(), run.policy->ReadParameters(), ro));
  } else {
    RemoteRolloutOptions ro;
    ro.endpoints = r.rollout_endpoints;
    ro.push.format = r.serve_format;
    // The job's push token, which rollout servers require on weight pushes (docs/security.md).
    GRPO_ASSIGN_OR_RETURN(ro.push_token, PushTokenFromFileOrEnv(""));
    GRPO_ASSIGN_OR_RETURN(rollout, MakeRemoteRollout(ro));
    // Every server starts from the trainer's current weights, whatever it loaded.
    GRPO_RETURN_IF_ERROR(rollout->PushWeights(version + 1, run.policy->ReadParameters()));
    version += 1;
  }

  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<store::TrajectoryStore> store, store::TrajectoryStore::Open(run.dir + "/store"));
  {
    auto info = store->GetRun(r.name);
    if (!info.ok()) {
      grpo::v1::RunMetadata meta;
      meta.set_run_name(r.name);
      meta.set_recipe_yaml(r.source.Dump());
      meta.set_seed(r.seed);
      meta.mutable_model()->set_model_type(run.policy->config().model_type);
      meta.mutable_model()->set_path(r.model_path.empty() ? "(initialized by the recipe)" : r.model_path);
      meta.mutable_tokenizer()->set_path(run.tokenizer_dir);
      GRPO_RETURN_IF_ERROR(store->CreateRun(meta));
    }
  }
  // A resume starts at its checkpoint's step. Steps stored from there on belong to an attempt
  // that did not reach its next checkpoint (killed, or failed, e.g. on a damaged model): they
  // are removed and generated again, so no resume finds its next step already stored.
  if (run.checkpoint) {
    GRPO_ASSIGN_OR_RETURN(std::vector<uint64_t> removed,
                          store->DeleteStepsFrom(r.name, static_cast<uint64_t>(start)));
    if (!removed.empty()) {
      std::fprintf(stderr,
                   "resume: removed %zu step(s) from the store (store steps %llu to %llu, written after "
                   "checkpoint %s by an attempt that did not reach its next checkpoint); they are generated "
                   "again\n",
                   removed.size(), static_cast<unsigned long long>(removed.front()),
                   static_cast<unsigned long long>(removed.back()),
                   fs::path(run.checkpoint->dir).filename().c_str());
    }
  }
  const std::string metrics_path = run.dir + "/metrics.jsonl";
  MetricsWriterOptions mo;
  if (fs::exists(metrics_path)) {
    // A resumed run drops the rows after its checkpoint (all of them when RL never checkpointed).
    mo.resumed_from_step = start;
    GRPO_RETURN_IF_ERROR(TruncateAfterStep(metrics_path, resumed_rl ? start : -1));
  }
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<MetricsWriter> metrics, MetricsWriter::Open(run.dir, mo));

  data::EpochSampler* sampler_ptr = nullptr;
  std::optional<data::EpochSampler> sampler;
  if (r.data_source == DataSource::kJsonl) {
    GRPO_ASSIGN_OR_RETURN(data::EpochSampler s,
                          data::EpochSampler::Create(static_cast<int64_t>(run.train_set.examples.size()), r.seed,
                                                     true, resumed_rl ? run.checkpoint->state.data_cursor : data::Cursor{}));
    sampler.emplace(std::move(s));
    sampler_ptr = &*sampler;
  }
  GRPO_ASSIGN_OR_RETURN(std::vector<Prompt> eval_prompts, EvalPrompts(run));

  auto evaluate = [&](int64_t step, std::map<std::string, double>* row) -> absl::Status {
    GRPO_ASSIGN_OR_RETURN(auto m, Evaluate(run, *rollout, *scorer, eval_prompts));
    std::string line = "eval @" + std::to_string(step) + ":";
    for (const auto& [k, v] : m) {
      (*row)[k] = v;
      line += " " + k.substr(5) + " " + Fmt("%.3f", v);
    }
    Progress(o, line);
    if (m.count("eval/accuracy")) {
      if (summary.first_eval_accuracy < 0) summary.first_eval_accuracy = m["eval/accuracy"];
      summary.last_eval_accuracy = m["eval/accuracy"];
    }
    if (m.count("eval/format")) summary.last_eval_format = m["eval/format"];
    return absl::OkStatus();
  };

  if (start == 0 && !eval_prompts.empty()) {
    std::map<std::string, double> row;
    GRPO_RETURN_IF_ERROR(evaluate(0, &row));
    GRPO_RETURN_IF_ERROR(metrics->Log(0, row));
  }

  std::vector<Buffer> grads;
  const bool moe = run.policy->config().NumMoeLayers() > 0;
  const bool routing = moe && r.routing_replay;
  int64_t steps_this_run = 0;
  // One step's batch: prompts, groups, rewards, advantages (dynamic sampling rounds included).
  struct StepBatch {
    std::vector<Prompt> prompts;
    std::vector<GroupRequest> requests;
    std::vector<GroupResult> groups;
    std::vector<std::vector<grpo::v1::RewardResult>> rewards;
    std::vector<std::vector<std::string>> texts;
    std::vector<double> adv;
    double t_rollout = 0, t_reward = 0;
    int64_t dropped = 0, rounds = 0;
  };
  auto collect = [&](int64_t step) -> absl::StatusOr<StepBatch> {
    StepBatch b;
    for (int64_t round = 0; round < (r.dynamic_sampling ? r.max_sampling_rounds : 1); ++round) {
      const int64_t want = r.prompts_per_step - static_cast<int64_t>(b.prompts.size());
      if (want <= 0) break;
      ++b.rounds;
      GRPO_ASSIGN_OR_RETURN(std::vector<Prompt> batch, StepPrompts(run, step, round, want, sampler_ptr));
      std::vector<GroupRequest> requests;
      for (size_t p = 0; p < batch.size(); ++p) {
        requests.push_back(MakeRequest(run, batch[p], r.group_size, r.sampling,
                                       StreamSeed(StreamSeed(StreamSeed(r.seed, kRollout, static_cast<uint64_t>(step)), kRollout,
                                                             static_cast<uint64_t>(round)),
                                                  kRollout, p),
                                       routing));
      }
      auto t0 = Clock::now();
      GRPO_ASSIGN_OR_RETURN(std::vector<GroupResult> gen, rollout->Generate(requests));
      auto t1 = Clock::now();
      GRPO_ASSIGN_OR_RETURN(Scored s, ScoreGroups(run, *scorer, batch, std::move(gen)));
      auto t2 = Clock::now();
      b.t_rollout += Seconds(t0, t1);
      b.t_reward += Seconds(t1, t2);
      for (size_t g = 0; g < s.groups.size(); ++g) {
        // Advantages over the samples that got a reward; a sample whose scoring failed gets 0
        // (and is left out of the loss and of the reward means).
        std::vector<double> rw;
        for (const auto& res : s.rewards[g]) {
          if (res.has_reward()) rw.push_back(res.reward());
        }
        GroupAdvantages ga;
        if (!rw.empty()) {
          GRPO_ASSIGN_OR_RETURN(ga, ComputeGroupAdvantages(rw, static_cast<int64_t>(rw.size()), r.advantage));
        }
        const bool flat = rw.size() < 2 || !ga.zero_std_groups.empty();
        {
          std::vector<double> full;
          size_t k = 0;
          for (const auto& res : s.rewards[g]) full.push_back(res.has_reward() ? ga.advantages[k++] : 0.0);
          ga.advantages = std::move(full);
        }
        const bool last_round = round + 1 >= (r.dynamic_sampling ? r.max_sampling_rounds : 1);
        if (r.dynamic_sampling && flat && !last_round) {
          ++b.dropped;
          continue;
        }
        b.prompts.push_back(std::move(batch[g]));
        b.requests.push_back(std::move(requests[g]));
        b.groups.push_back(std::move(s.groups[g]));
        b.rewards.push_back(std::move(s.rewards[g]));
        b.texts.push_back(std::move(s.texts[g]));
        b.adv.insert(b.adv.end(), ga.advantages.begin(), ga.advantages.end());
      }
    }
    return b;
  };
  // One-step off-policy (rollout.overlap): step s+1's rollout runs while step s's update runs,
  // with the weights from before that update; the new weights are pushed once both are done, so
  // which weights generate which step does not depend on timing. (With GRPO_NUM_THREADS > 1 the
  // two concurrent computations still differ run to run in the last float bits; see
  // docs/training.md.)
  std::future<absl::StatusOr<StepBatch>> pending;

  for (int64_t step = start; step < r.steps; ++step) {
    const auto t_step = Clock::now();
    std::map<std::string, double> row;
    // ---- rollout (+ dynamic sampling rounds) and reward; with overlap, launched during the
    // previous step's update
    absl::StatusOr<StepBatch> collected = pending.valid() ? pending.get() : collect(step);
    GRPO_RETURN_IF_ERROR(collected.status());
    StepBatch& sb = *collected;
    std::vector<Prompt>& prompts = sb.prompts;
    std::vector<GroupResult>& groups = sb.groups;
    std::vector<std::vector<grpo::v1::RewardResult>>& rewards = sb.rewards;
    std::vector<std::vector<std::string>>& texts = sb.texts;
    std::vector<double>& adv = sb.adv;
    const double t_rollout = sb.t_rollout, t_reward = sb.t_reward;
    const int64_t dropped = sb.dropped, rounds = sb.rounds;
    // The dataset position after this step's prompts (what a checkpoint of this step resumes at).
    const data::Cursor cursor_after = sampler_ptr ? sampler_ptr->cursor() : data::Cursor{};
    // ---- store (durable before the update)
    auto t_store0 = Clock::now();
    store::StepRecords rec;
    rec.step = static_cast<uint64_t>(step);
    double reward_sum = 0, reward_sq = 0, len_sum = 0, correct = 0, n = 0, n_scored = 0, first_reward = 0;
    int64_t reward_errors = 0;
    std::string first_reward_error;
    std::map<std::string, std::pair<double, double>> rule_sums;
    int64_t zero_std = 0;
    std::vector<RlGroup> rl_groups(groups.size());
    for (size_t g = 0; g < groups.size(); ++g) {
      const uint64_t group_id = static_cast<uint64_t>(step) * 1000000 + g;
      grpo::v1::PromptRecord pr;
      pr.set_prompt_index(static_cast<uint32_t>(g));
      pr.set_group_id(group_id);
      pr.set_prompt_text(prompts[g].text);
      for (int32_t t : prompts[g].tokens) pr.add_prompt_token_ids(t);
      pr.set_answer(prompts[g].example.answer);
      pr.set_task(prompts[g].example.task);
      pr.set_dataset(r.data_source == DataSource::kAddition ? "addition" : r.train_path);
      if (prompts[g].row >= 0) pr.set_dataset_row_id(std::to_string(prompts[g].row));
      rec.prompts.push_back(pr);
      rl_groups[g].prompt = prompts[g].tokens;
      rl_groups[g].prompt_routing = groups[g].prompt_routing;
      bool all_equal = true;
      for (size_t i = 0; i < groups[g].samples.size(); ++i) {
        const SampleResult& sr = groups[g].samples[i];
        const auto& res = rewards[g][i];
        const double a = adv[g * r.group_size + i];
        grpo::v1::Trajectory t;
        t.set_prompt_index(static_cast<uint32_t>(g));
        t.set_sample_index(static_cast<uint32_t>(sr.index));
        t.set_group_id(group_id);
        SampleResultToProto(sr, sb.requests[g], groups[g], t.mutable_sample());
        t.mutable_sample()->set_text(texts[g][i]);
        *t.mutable_reward() = res;
        t.set_advantage(static_cast<float>(a));
        if (prompts[g].row >= 0) t.set_dataset_row_id(std::to_string(prompts[g].row));
        rec.trajectories.push_back(std::move(t));

        RlSample rs;
        rs.completion = sr.tokens;
        rs.rollout_logprobs = sr.raw_logprobs;
        rs.routing = sr.routing;
        rs.advantage = a;
        rs.trained = res.has_reward() && sr.finish_reason != FinishReason::kAborted;
        rl_groups[g].samples.push_back(std::move(rs));

        len_sum += static_cast<double>(sr.tokens.size());
        n += 1;
        if (!res.has_reward()) {  // scoring failed: counted, reported, left out of the means
          ++reward_errors;
          if (first_reward_error.empty()) first_reward_error = res.error();
          continue;
        }
        const double rv = res.reward();
        if (n_scored > 0 && rv != first_reward) all_equal = false;
        if (n_scored == 0) first_reward = rv;
        reward_sum += rv;
        reward_sq += rv * rv;
        correct += Correct(res);
        n_scored += 1;
        for (const auto& rs2 : res.rules()) {
          if (!rs2.error().empty()) continue;
          auto& acc = rule_sums[rs2.rule()];
          acc.first += rs2.score();
          acc.second += 1;
        }
      }
      zero_std += all_equal;
    }
    if (reward_errors > 0) {
      Progress(o, "step " + std::to_string(step + 1) + ": " + std::to_string(reward_errors) +
                      " samples got no reward (left out of the loss); first error: " + first_reward_error);
    }
    if (n_scored == 0) {
      return absl::FailedPreconditionError("step " + std::to_string(step + 1) + ": no sample got a reward; first error: " +
                                        first_reward_error);
    }
    GRPO_RETURN_IF_ERROR(store->WriteStep(r.name, &rec));
    const double t_store = Seconds(t_store0, Clock::now());

    // ---- the next step's rollout, overlapping this update
    if (r.overlap && step + 1 < r.steps) pending = std::async(std::launch::async, collect, step + 1);

    // ---- learner update
    auto t_learn0 = Clock::now();
    RlUpdateOptions uo;
    uo.loss = r.loss;
    uo.mini_batches = r.mini_batches;
    uo.epochs = r.epochs;
    uo.schedule = r.schedule;
    uo.max_grad_norm = r.max_grad_norm;
    uo.routing_replay = routing;
    GRPO_ASSIGN_OR_RETURN(RlUpdateStats us, RlUpdate(*run.policy, reference.get(), opt, rl_groups, uo, &grads));
    const double t_learn = Seconds(t_learn0, Clock::now());

    // ---- weight sync (after the overlapping rollout, which used the previous version)
    double t_overlap_wait = 0;
    if (pending.valid()) {
      auto t_wait0 = Clock::now();
      pending.wait();
      t_overlap_wait = Seconds(t_wait0, Clock::now());
    }
    auto t_sync0 = Clock::now();
    version += 1;
    GRPO_RETURN_IF_ERROR(rollout->PushWeights(version, run.policy->ReadParameters()));
    const double t_sync = Seconds(t_sync0, Clock::now());

    // ---- metrics
    const double mean = reward_sum / n_scored;
    row["reward_mean"] = mean;
    row["reward_std"] = std::sqrt(std::max(0.0, reward_sq / n_scored - mean * mean));
    row["reward_errors"] = static_cast<double>(reward_errors);
    for (const auto& [rule, acc] : rule_sums) row["reward/" + rule] = acc.first / acc.second;
    row["accuracy"] = correct / n_scored;
    row["response_len_mean"] = len_sum / n;
    row["kl"] = us.kl;
    row["clip_frac"] = us.clip_frac;
    row["entropy"] = us.entropy;
    row["grad_norm"] = us.grad_norm;
    row["lr"] = us.lr;
    row["skipped_updates"] = static_cast<double>(us.skipped_steps);
    row["loss"] = us.loss;
    row["zero_std_groups"] = static_cast<double>(zero_std);
    if (r.dynamic_sampling) {
      row["dynamic_sampling/dropped_groups"] = static_cast<double>(dropped);
      row["dynamic_sampling/rounds"] = static_cast<double>(rounds);
    }
    row["weight_version"] = static_cast<double>(version);
    if (r.data_source == DataSource::kJsonl) {  // rows of data.jsonl.train / .eval skipped as bad
      row["data/bad_rows"] = static_cast<double>(run.train_set.bad_rows.size() + run.eval_set.bad_rows.size());
    }
    row["time/rollout"] = t_rollout;
    row["time/reward"] = t_reward;
    row["time/store"] = t_store;
    row["time/learn"] = t_learn;
    row["time/sync"] = t_sync;
    if (r.overlap) row["time/overlap_wait"] = t_overlap_wait;
    const bool last = step + 1 == r.steps;
    if ((r.eval_every > 0 && (step + 1) % r.eval_every == 0) || last) {
      auto t_eval0 = Clock::now();
      GRPO_RETURN_IF_ERROR(evaluate(step + 1, &row));
      row["time/eval"] = Seconds(t_eval0, Clock::now());
    }
    row["time/step"] = Seconds(t_step, Clock::now());
    GRPO_RETURN_IF_ERROR(metrics->Log(step + 1, row));
    Progress(o, "step " + std::to_string(step + 1) + "/" + std::to_string(r.steps) + " | reward " +
                    Fmt("%.3f", mean) + " acc " + Fmt("%.3f", row["accuracy"]) +
                    (row.count("reward/format") ? " fmt " + Fmt("%.3f", row["reward/format"]) : "") + " | len " +
                    Fmt("%.1f", row["response_len_mean"]) + " | ent " + Fmt("%.3f", us.entropy) + " clip " +
                    Fmt("%.3f", us.clip_frac) + " | " + Fmt("%.1fs", row["time/step"]) + " (rollout " +
                    Fmt("%.1f", t_rollout) + " learn " + Fmt("%.1f", t_learn) + ")");

    ++steps_this_run;
    const bool stop = (o.stop != nullptr && o.stop->load()) ||
                      (o.max_steps_this_run > 0 && steps_this_run >= o.max_steps_this_run);
    if (CheckpointDue(step + 1, last, stop, r.checkpoint_every)) {
      TrainerState st;
      st.stage = "rl";
      st.step = step + 1;
      st.pretrain_steps_done = r.pretrain.steps;
      st.weight_version = version;
      st.data_cursor = cursor_after;
      GRPO_RETURN_IF_ERROR(SaveRunCheckpoint(run, st, opt, 2));
    }
    summary.steps_done = step + 1;
    if (stop && !last) {
      summary.stopped_early = true;
      break;
    }
  }
  GRPO_RETURN_IF_ERROR(metrics->Close());
  GRPO_RETURN_IF_ERROR(store->Flush());
  ReportOptions rep;
  rep.title = r.name;
  GRPO_RETURN_IF_ERROR(WriteReport(metrics_path, run.dir + "/report.html", rep));
  return summary;
}

}  // namespace grpo::trainer_internal
