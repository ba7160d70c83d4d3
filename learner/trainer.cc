#include "learner/trainer.h"
#include "learner/trainer_internal.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "core/checksum_manifest.h"
#include "core/file.h"
#include "core/input_tally.h"
#include "core/jsonl.h"
#include "core/output_path.h"
#include "core/metrics.h"
#include "learner/schedule.h"
#include "data/addition.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "learner/checkpoint.h"
#include "learner/lm_training.h"
#include "learner/report.h"
#include "learner/rl_update.h"
#include "learner/roles.h"
#include "model/ops/registry.h"
#include "model/presets.h"
#include "store/trajectory_store.h"
#include "tokenizer/builtin.h"
#include "tokenizer/prompt_template.h"

namespace grpo {
namespace trainer_internal {

absl::StatusOr<std::vector<int32_t>> EncodePrompt(const Run& run, const data::Example& e) {
  GRPO_ASSIGN_OR_RETURN(std::string text, run.prompt->Render(e.fields));
  return run.tok->Encode(text);
}

absl::Status SaveRunCheckpoint(const Run& run, TrainerState state, const AdamW* opt, int keep,
                               const std::function<absl::Status(const std::string& dir)>& write_more) {
  state.elapsed_seconds = run.Elapsed();
  return SaveCheckpoint(run.dir, CheckpointName(state.stage, state.step), *run.policy, opt, state,
                        run.tokenizer_dir, keep, write_more);
}

}  // namespace trainer_internal

absl::Status LoadJsonlDatasets(const TrainRecipe& r, data::Dataset* train, data::Dataset* eval) {
  data::DatasetOptions dopts;
  GRPO_ASSIGN_OR_RETURN(dopts.format, data::DatasetFormatFromName(r.dataset_format));
  dopts.max_bad_fraction = r.max_bad_fraction;
  auto load = [&](const char* key, const std::string& path, data::Dataset* out) -> absl::Status {
    absl::StatusOr<data::Dataset> d = data::LoadJsonl(path, dopts);
    if (!d.ok()) return grpo::WithContext(d.status(), key);
    *out = std::move(d).value();
    if (out->tally.skipped() > 0) {
      std::fprintf(stderr, "warning: %s: %s: %s\n", key, path.c_str(),
                   out->tally.Summary("rows", "usable", "bad (skipped)").c_str());
    }
    return absl::OkStatus();
  };
  GRPO_RETURN_IF_ERROR(load("data.jsonl.train", r.train_path, train));
  if (train->examples.empty()) return absl::InvalidArgumentError("data.jsonl.train: no usable row in " + r.train_path);
  if (!r.eval_path.empty()) GRPO_RETURN_IF_ERROR(load("data.jsonl.eval", r.eval_path, eval));
  return absl::OkStatus();
}

namespace {

namespace fs = std::filesystem;
using namespace trainer_internal;

// A resumed run must use the recipe it started with: only how long it runs and how often it
// evaluates and checkpoints may change (anything else would silently break reproducibility).
absl::Status CheckResumedRecipe(const std::string& stored_path, const TrainRecipe& r) {
  if (!fs::exists(stored_path)) return absl::OkStatus();
  GRPO_ASSIGN_OR_RETURN(Config stored, Config::LoadFile(stored_path));
  nlohmann::json a = stored.json(), b = r.source.json();
  for (nlohmann::json* j : {&a, &b}) {
    if (j->contains("train") && (*j)["train"].is_object()) {
      for (const char* k : {"steps", "eval_every", "checkpoint_every"}) (*j)["train"].erase(k);
    }
    if (j->contains("sft") && (*j)["sft"].is_object()) (*j)["sft"].erase("steps");
    j->erase("cluster");
    // Nor is the backend it runs on: a run may continue on another machine (bit-exact resume
    // holds on the same backend).
    j->erase("backend");
    // Where the services run is not part of the run: a requeued cluster job (deploy/) gets new
    // hosts and ports for its rollout and reward servers.
    for (const char* section : {"rollout", "reward"}) {
      if (j->contains(section) && (*j)[section].is_object()) (*j)[section].erase("endpoints");
    }
    // Nor how data-parallel ranks schedule their gradient reduction (the rank count may change
    // on resume too): overlapping gives the same bits, and the buckets change at most the
    // summation order across 3 or more ranks.
    if (j->contains("learner") && (*j)["learner"].is_object()) {
      for (const char* k : {"bucket_mb", "overlap_grad_reduce"}) (*j)["learner"].erase(k);
      if ((*j)["learner"].empty()) j->erase("learner");
    }
  }
  if (a != b) {
    const nlohmann::json diff = nlohmann::json::diff(a, b);
    std::string where = diff.empty() ? "" : diff[0].value("path", "");
    return absl::InvalidArgumentError("--resume: the recipe differs from the one the run started with (" + stored_path +
                                   ") at " + where + "; only train.steps, train.eval_every, "
                                   "train.checkpoint_every, backend, learner.bucket_mb and learner.overlap_grad_reduce may change on resume");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CausalLM>> InitialModel(const TrainRecipe& r, int32_t tokenizer_vocab,
                                                       Backend& backend) {
  if (!r.model_path.empty()) {
    GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model, CausalLM::Load(r.model_path, backend));
    if (model->config().vocab_size < tokenizer_vocab) {
      return absl::InvalidArgumentError("model.path " + r.model_path + ": vocab_size " +
                                     std::to_string(model->config().vocab_size) + " is smaller than the tokenizer's " +
                                     std::to_string(tokenizer_vocab));
    }
    return model;
  }
  GRPO_ASSIGN_OR_RETURN(ModelConfig config, RecipeModelConfig(r));
  if (config.vocab_size < tokenizer_vocab) {
    return absl::InvalidArgumentError("model.init: vocab_size " + std::to_string(config.vocab_size) +
                                   " is smaller than the tokenizer's " + std::to_string(tokenizer_vocab));
  }
  return CausalLM::Create(config, InitParameters(config, r.init_seed, r.init_std), backend);
}

// ---------------------------------------------------------------- setup

absl::Status SetUp(const TrainRecipe& r, const TrainOptions& o, bool sft, Run* run) {
  run->recipe = &r;
  run->dir = (fs::path(r.output_dir) / r.name).string();
  std::error_code ec;
  if (o.resume && o.overwrite) return absl::InvalidArgumentError("--resume and --overwrite exclude each other");
  // Before anything of the run is read or written: a backend this machine lacks fails here.
  GRPO_ASSIGN_OR_RETURN(run->backend, GetBackend(r.backend));
  if (o.resume) {
    if (!fs::exists(run->dir)) {
      return absl::NotFoundError("--resume: there is no run " + run->dir + ", so it has no checkpoint; start it "
                                 "without --resume");
    }
    // Verifies the checkpoint's checksums before anything of the run is read or written.
    GRPO_ASSIGN_OR_RETURN(run->checkpoint, FindLatestCheckpoint(run->dir));
    if (!run->checkpoint) {
      // E.g. killed during pretraining, which is checkpointed only when it finishes or is stopped.
      return absl::NotFoundError(
          "--resume: run " + run->dir + " has no checkpoint to continue from: it ended before writing its first "
          "one (pretraining is checkpointed when it finishes or is stopped with SIGTERM/SIGINT, RL every "
          "train.checkpoint_every steps). Nothing can be resumed; start the run over with --overwrite");
    }
    if (!run->checkpoint->checksummed) {
      std::fprintf(stderr, "warning: checkpoint %s has no %s (written by an older version); loading it unverified\n",
                   run->checkpoint->dir.c_str(), kChecksumManifestName);
    }
    run->elapsed_before = run->checkpoint->state.elapsed_seconds;
    if (sft != (run->checkpoint->state.stage == "sft")) {
      return absl::InvalidArgumentError(
          "--resume: the latest checkpoint of " + run->dir + " is of stage '" + run->checkpoint->state.stage + "'" +
          (sft ? ", not an SFT run; continue it with grpo train --resume" : "; continue it with grpo sft --resume"));
    }
    GRPO_RETURN_IF_ERROR(CheckResumedRecipe(run->dir + "/recipe.yaml", r));
  } else if (fs::exists(run->dir)) {
    if (!o.overwrite) {
      if (!fs::exists(fs::path(run->dir) / "checkpoints" / "latest")) {
        return absl::AlreadyExistsError("run directory " + run->dir +
                                        " exists but has no checkpoint to resume from; pass --overwrite to start "
                                        "over");
      }
      return absl::AlreadyExistsError("run directory " + run->dir +
                                   " exists; pass --resume to continue it or --overwrite to start over");
    }
    // --overwrite deletes the run directory: never with one of the run's own inputs inside it.
    for (const auto& [key, path] : std::vector<std::pair<const char*, std::string>>{
             {"model.path", r.model_path}, {"tokenizer.path", r.tokenizer_path}, {"data.jsonl.train", r.train_path},
             {"data.jsonl.eval", r.eval_path}, {"sft.train", r.sft.train_path}}) {
      if (IsSameOrInside(path, run->dir)) {
        return absl::InvalidArgumentError(std::string("--overwrite would delete ") + key + " " + path +
                                          ", which lies inside the run directory " + run->dir +
                                          "; move it out of the run first");
      }
    }
    fs::remove_all(run->dir, ec);
    if (ec) return absl::UnknownError("cannot remove " + run->dir + ": " + ec.message());
  }
  fs::create_directories(run->dir, ec);
  if (ec) return absl::UnknownError("cannot create " + run->dir + ": " + ec.message());
  GRPO_RETURN_IF_ERROR(WriteFileAtomic(run->dir + "/recipe.yaml", r.source.Dump()));
  run->tokenizer_dir = run->dir + "/tokenizer";
  fs::create_directories(run->tokenizer_dir, ec);
  if (!r.tokenizer_builtin.empty()) {
    GRPO_RETURN_IF_ERROR(tokenizer::WriteBuiltinTokenizer(r.tokenizer_builtin, run->tokenizer_dir));
  } else {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path src = fs::is_directory(r.tokenizer_path) ? fs::path(r.tokenizer_path) / f : fs::path(r.tokenizer_path);
      if (fs::exists(src)) {
        fs::copy_file(src, fs::path(run->tokenizer_dir) / f, fs::copy_options::overwrite_existing, ec);
        if (ec) return absl::UnknownError("tokenizer.path: cannot copy " + src.string() + ": " + ec.message());
      }
      if (!fs::is_directory(r.tokenizer_path)) break;
    }
  }
  GRPO_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::Load(run->tokenizer_dir));
  run->tok = std::make_unique<tokenizer::Tokenizer>(std::move(tok));
  if (!run->tok->eos_id()) return absl::InvalidArgumentError("tokenizer: no eos_token (tokenizer_config.json)");
  run->eos = *run->tok->eos_id();
  GRPO_ASSIGN_OR_RETURN(tokenizer::PromptTemplate pt, tokenizer::PromptTemplate::Parse(r.prompt_template));
  run->prompt = std::make_unique<tokenizer::PromptTemplate>(std::move(pt));

  if (run->checkpoint) {
    GRPO_ASSIGN_OR_RETURN(run->policy, CausalLM::Load(run->checkpoint->dir, *run->backend));
  } else {
    GRPO_ASSIGN_OR_RETURN(run->policy, InitialModel(r, run->tok->vocab_size(), *run->backend));
  }
  GRPO_RETURN_IF_ERROR(WithContext(run->policy->SetComputeDType(r.learner_precision), "learner.precision"));
  if (r.data_source == DataSource::kJsonl) {
    GRPO_RETURN_IF_ERROR(LoadJsonlDatasets(r, &run->train_set, &run->eval_set));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- pretraining

absl::Status Pretrain(Run& run, const TrainOptions& o) {
  const TrainRecipe& r = *run.recipe;
  const LmStageRecipe& p = r.pretrain;
  int64_t done = run.checkpoint ? run.checkpoint->state.pretrain_steps_done : 0;
  if (p.steps == 0 || done >= p.steps) return absl::OkStatus();
  if (r.data_source != DataSource::kAddition) {
    return absl::InvalidArgumentError("pretrain: the corpus is generated for data.source addition only");
  }
  GRPO_ASSIGN_OR_RETURN(AdamW opt, AdamW::Create(run.policy->backend(), run.policy->parameter_specs(), r.adamw));
  if (run.checkpoint && run.checkpoint->state.stage == "pretrain") {
    GRPO_RETURN_IF_ERROR(LoadOptimizerState(*run.checkpoint, &opt));
  }
  std::vector<Buffer> grads;
  const std::string log_path = run.dir + "/pretrain_metrics.jsonl";
  // Resumed: drop the rows after the checkpoint (steps done..), which the run logs again.
  if (run.checkpoint) GRPO_RETURN_IF_ERROR(TruncateAfterStep(log_path, done - 1));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlAppender> log, JsonlAppender::Open(log_path));
  const auto t0 = Clock::now();
  double loss_avg = 0;
  for (int64_t step = done; step < p.steps; ++step) {
    data::SplitMix64 rng(StreamSeed(r.seed, kPretrainBatch, static_cast<uint64_t>(step)));
    std::vector<LmSequence> batch(p.batch_size);
    for (auto& seq : batch) {
      const data::Example e = data::GenerateAddition(rng, r.addition, data::AdditionSplit::kTrain);
      GRPO_ASSIGN_OR_RETURN(seq.tokens, EncodePrompt(run, e));
      seq.prompt_length = 0;  // pretraining learns the prompts too
      GRPO_ASSIGN_OR_RETURN(std::vector<int32_t> completion,
                            run.tok->Encode(data::TeacherCompletion(rng, e, r.addition, p.teacher_mix)));
      seq.tokens.insert(seq.tokens.end(), completion.begin(), completion.end());
      seq.tokens.push_back(run.eos);
    }
    LmStepOptions so;
    so.lr = LearningRate(p.schedule, step);
    so.max_grad_norm = p.max_grad_norm;
    GRPO_ASSIGN_OR_RETURN(LmStepResult res, LmTrainStep(*run.policy, opt, batch, so, &grads));
    loss_avg = step == done ? res.loss : 0.9 * loss_avg + 0.1 * res.loss;
    GRPO_ASSIGN_OR_RETURN(const std::string row,
                          MetricsJsonLine(step, {{"loss", res.loss}, {"grad_norm", res.grad_norm}, {"lr", so.lr}}));
    GRPO_RETURN_IF_ERROR(log->AppendText(row));
    if ((step + 1) % 25 == 0 || step + 1 == p.steps) {
      char line[200];
      std::snprintf(line, sizeof(line), "pretrain %lld/%lld | loss %.4f | lr %.2e | %.1f steps/s",
                    static_cast<long long>(step + 1), static_cast<long long>(p.steps), loss_avg, so.lr,
                    (step + 1 - done) / std::max(1e-9, Seconds(t0, Clock::now())));
      Progress(o, line);
    }
    const bool stop = o.stop != nullptr && o.stop->load();
    if (CheckpointDue(step + 1, step + 1 == p.steps, stop, /*every=*/0)) {
      TrainerState st;
      st.stage = "pretrain";
      st.step = step + 1;
      st.pretrain_steps_done = step + 1;
      GRPO_RETURN_IF_ERROR(SaveRunCheckpoint(run, st, &opt, 1));
      if (stop) return absl::CancelledError("stopped during pretraining; resume with --resume");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainSummary> Train(const TrainRecipe& recipe, const TrainOptions& options) {
  GRPO_RETURN_IF_ERROR(CheckTrainingMemory(recipe, /*sft=*/false));  // before anything is allocated
  if (Distributed(options) && options.collective->rank() != 0) return FollowRank0(recipe, options);
  trainer_internal::Run run;
  GRPO_RETURN_IF_ERROR(SetUp(recipe, options, /*sft=*/false, &run));
  absl::Status pre = Pretrain(run, options);
  if (pre.code() == absl::StatusCode::kCancelled) {
    if (Distributed(options)) GRPO_RETURN_IF_ERROR(SendDone(*options.collective));
    TrainSummary s;
    s.run_dir = run.dir;
    s.stopped_early = true;
    s.stage = "pretrain";
    GRPO_ASSIGN_OR_RETURN(auto latest, FindLatestCheckpoint(run.dir));
    if (latest) s.steps_done = latest->state.pretrain_steps_done;
    return s;
  }
  GRPO_RETURN_IF_ERROR(pre);
  return trainer_internal::RunRl(run, options);
}

absl::StatusOr<SftDataset> LoadSftDataset(const TrainRecipe& recipe) {
  const std::string& path = recipe.sft.train_path;
  if (path.empty()) return absl::InvalidArgumentError("sft.train: the JSONL file to train on is required");
  absl::StatusOr<std::unique_ptr<JsonlReader>> in = JsonlReader::Open(path);
  if (!in.ok()) return grpo::WithContext(in.status(), "sft.train");
  SftDataset data;
  std::vector<SftRow>& rows = data.rows;
  InputTally tally;
  JsonlRecord record;
  while ((*in)->Next(&record)) {
    const nlohmann::json& j = record.value;
    if (!record.ok() || !j.contains("prompt") || !j.contains("completion") || !j["prompt"].is_string() ||
        !j["completion"].is_string()) {
      const std::string where = path + ":" + std::to_string(record.line) + ": ";
      if (tally.skipped() < 5) {
        std::fprintf(stderr, "%sskipped: expected {\"prompt\": string, \"completion\": string}\n", where.c_str());
      }
      if (!record.ok()) {
        tally.Skip("not JSON", std::string(record.status.message()));
      } else {
        tally.Skip("not {\"prompt\": string, \"completion\": string}", where + "expected string keys");
      }
      continue;
    }
    tally.Used();
    rows.push_back({j["prompt"].get<std::string>(), j["completion"].get<std::string>()});
  }
  GRPO_RETURN_IF_ERROR((*in)->status());
  const std::string counts = tally.Summary("rows", "usable", "bad (skipped)");
  if (rows.empty()) return absl::InvalidArgumentError("sft.train: no usable row in " + path + " (" + counts + ")");
  if (tally.skipped() > 0) {
    std::fprintf(stderr, "warning: sft.train: %s: %s\n", path.c_str(), counts.c_str());
    if (static_cast<double>(tally.skipped()) > recipe.max_bad_fraction * static_cast<double>(tally.total())) {
      char fraction[32];
      std::snprintf(fraction, sizeof fraction, "%g", recipe.max_bad_fraction);
      return absl::InvalidArgumentError("sft.train: " + path + ": more than " + fraction +
                                        " of the rows are bad (data.max_bad_fraction): " + counts);
    }
  }
  data.bad_rows = tally.skipped();
  return data;
}

absl::StatusOr<TrainSummary> Sft(const TrainRecipe& recipe, const TrainOptions& options) {
  if (Distributed(options)) return absl::UnimplementedError("grpo sft runs as one process (no --nproc)");
  const LmStageRecipe& sft = recipe.sft;
  if (sft.train_path.empty()) return absl::InvalidArgumentError("sft.train: the JSONL file to train on is required");
  if (sft.steps <= 0) return absl::InvalidArgumentError("sft.steps: must be > 0");
  if (sft.format != "prompt-completion") {
    return absl::InvalidArgumentError("sft.format: only prompt-completion is supported (write the file with "
                                   "`grpo export --format prompt-completion`), got '" + sft.format + "'");
  }
  GRPO_RETURN_IF_ERROR(CheckTrainingMemory(recipe, /*sft=*/true));  // before anything is allocated
  trainer_internal::Run run;
  GRPO_RETURN_IF_ERROR(SetUp(recipe, options, /*sft=*/true, &run));
  GRPO_ASSIGN_OR_RETURN(const SftDataset examples, LoadSftDataset(recipe));
  std::vector<LmSequence> rows;
  for (const SftRow& row : examples.rows) {
    LmSequence seq;
    GRPO_ASSIGN_OR_RETURN(seq.tokens, run.tok->Encode(row.prompt));
    seq.prompt_length = static_cast<int64_t>(seq.tokens.size());
    GRPO_ASSIGN_OR_RETURN(std::vector<int32_t> completion, run.tok->Encode(row.completion));
    seq.tokens.insert(seq.tokens.end(), completion.begin(), completion.end());
    seq.tokens.push_back(run.eos);
    rows.push_back(std::move(seq));
  }
  GRPO_ASSIGN_OR_RETURN(AdamW opt, AdamW::Create(run.policy->backend(), run.policy->parameter_specs(), recipe.adamw));
  int64_t start = 0;
  data::Cursor cursor;
  if (run.checkpoint) {
    GRPO_RETURN_IF_ERROR(LoadOptimizerState(*run.checkpoint, &opt));
    start = run.checkpoint->state.step;
    cursor = run.checkpoint->state.data_cursor;
  }
  GRPO_ASSIGN_OR_RETURN(data::EpochSampler sampler,
                        data::EpochSampler::Create(static_cast<int64_t>(rows.size()), recipe.seed, true, cursor));
  MetricsWriterOptions mo;
  if (start > 0) {
    mo.resumed_from_step = start;
    GRPO_RETURN_IF_ERROR(TruncateAfterStep(run.dir + "/metrics.jsonl", start));
  }
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<MetricsWriter> metrics, MetricsWriter::Open(run.dir, mo));
  std::vector<Buffer> grads;
  TrainSummary summary;
  summary.run_dir = run.dir;
  summary.stage = "sft";
  for (int64_t step = start; step < sft.steps; ++step) {
    std::vector<LmSequence> batch;
    for (int64_t i : sampler.NextBatch(sft.batch_size)) batch.push_back(rows[i]);
    LmStepOptions so;
    so.lr = LearningRate(sft.schedule, step);
    so.max_grad_norm = sft.max_grad_norm;
    GRPO_ASSIGN_OR_RETURN(LmStepResult res, LmTrainStep(*run.policy, opt, batch, so, &grads));
    GRPO_RETURN_IF_ERROR(metrics->Log(step + 1, std::map<std::string, double>{{"loss", res.loss}, {"grad_norm", res.grad_norm}, {"lr", so.lr},
                                                 {"tokens", static_cast<double>(res.tokens)},
                                                 {"data/bad_rows", static_cast<double>(examples.bad_rows)}}));
    if ((step + 1) % 10 == 0 || step + 1 == sft.steps) {
      char line[160];
      std::snprintf(line, sizeof(line), "sft %lld/%lld | loss %.4f | lr %.2e", static_cast<long long>(step + 1),
                    static_cast<long long>(sft.steps), res.loss, so.lr);
      Progress(options, line);
    }
    const bool stop = options.stop != nullptr && options.stop->load();
    const bool last = step + 1 == sft.steps;
    if (CheckpointDue(step + 1, last, stop, recipe.checkpoint_every)) {
      TrainerState st;
      st.stage = "sft";
      st.step = step + 1;
      st.data_cursor = sampler.cursor();
      GRPO_RETURN_IF_ERROR(SaveRunCheckpoint(run, st, &opt, 2));
    }
    summary.steps_done = step + 1;
    if (stop && !last) {
      summary.stopped_early = true;
      break;
    }
  }
  GRPO_RETURN_IF_ERROR(metrics->Close());
  return summary;
}

}  // namespace grpo
