#include "cli/store_commands.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/subcommand.h"
#include "core/jsonl.h"
#include "core/output_path.h"
#include "store/export.h"
#include "store/inspect.h"
#include "store/trajectory_store.h"

namespace grpo::cli {
namespace {

using store::CorrectnessSpec;

// Flags shared by both commands for what "correct" means.
struct CorrectnessFlags {
  std::vector<std::string> rules;
  double threshold = 1.0;
  void Add(CLI::App* cmd) {
    cmd->add_option("--correct-rule", rules,
                    "Rule whose score decides correctness (repeatable; default: math, countdown, exact, "
                    "accuracy, correct)");
    cmd->add_option("--correct-threshold", threshold, "Score at or above which that rule means correct")
        ->capture_default_str();
  }
  CorrectnessSpec Spec() const {
    CorrectnessSpec spec;
    if (!rules.empty()) spec.rules = rules;
    spec.threshold = threshold;
    return spec;
  }
};

struct ExportFlags {
  std::string store_dir, run, format, output, reasoning = "inline";
  std::optional<double> min_reward;
  std::optional<uint64_t> max_tokens, first_step, last_step;
  bool correct_only = false, best_of_group = false, dedupe = false, drop_truncated = false;
  bool metadata = false, no_progress = false;
  CorrectnessFlags correctness;
};

std::string Mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}

// A one-line progress bar on stderr, redrawn at most 10 times a second.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  void Update(const store::ExportStats& s, bool final = false) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double frac = s.total ? std::min(1.0, static_cast<double>(s.scanned) / s.total) : 1.0;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r[%s%s] %3d%% %llu/%llu samples, kept %llu, %.1f MB/s ", std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<int>(frac * 100),
                 static_cast<unsigned long long>(s.scanned), static_cast<unsigned long long>(s.total),
                 static_cast<unsigned long long>(s.kept), s.seconds > 0 ? s.bytes_in / 1e6 / s.seconds : 0.0);
    if (final) std::fputc('\n', stderr);
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point last_{};
};

absl::Status RunExport(const ExportFlags& f) {
  // Written atomically as "<output>.tmp" then renamed: inside the store it would replace (or,
  // named CURRENT, destroy) what is being read.
  GRPO_RETURN_IF_ERROR(CheckOutputPath("--output", f.output, {{"--store", f.store_dir}}));
  store::ExportOptions o;
  GRPO_ASSIGN_OR_RETURN(o.format, store::ParseExportFormat(f.format));
  if (f.reasoning != "inline" && f.reasoning != "split") {
    return absl::InvalidArgumentError("--reasoning must be inline or split, not '" + f.reasoning + "'");
  }
  o.reasoning = f.reasoning == "split" ? store::Reasoning::kSplit : store::Reasoning::kInline;
  o.run = f.run;
  o.first_step = f.first_step;
  o.last_step = f.last_step;
  o.min_reward = f.min_reward;
  o.correct_only = f.correct_only;
  o.correctness = f.correctness.Spec();
  o.best_of_group = f.best_of_group;
  o.dedupe = f.dedupe;
  o.max_tokens = f.max_tokens;
  o.drop_truncated = f.drop_truncated;
  o.with_metadata = f.metadata;

  GRPO_ASSIGN_OR_RETURN(auto db, store::TrajectoryStore::OpenReadOnly(f.store_dir));
  // Replaced atomically (core/jsonl.h), so a failed export leaves no partial file.
  const bool to_stdout = f.output == "-";
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> out, JsonlWriter::Open(f.output));
  ProgressBar bar(!f.no_progress && isatty(STDERR_FILENO));
  store::ExportStats stats;
  absl::Status s = store::Export(*db, o, out.get(), &stats, [&](const store::ExportStats& st) { bar.Update(st); });
  bar.Update(stats, true);
  GRPO_RETURN_IF_ERROR(s);
  std::string dropped;
  for (int i = 0; i < store::kNumDropReasons; ++i) {
    if (stats.dropped[i] == 0) continue;
    dropped += (dropped.empty() ? "" : ", ") + std::string(store::kDropReasons[i]) + " " +
               std::to_string(stats.dropped[i]);
  }
  // Samples read, none kept: a failure, and the output stays as it was.
  if (stats.scanned > 0 && stats.kept == 0) {
    return absl::InvalidArgumentError("nothing to output: none of the " + std::to_string(stats.scanned) +
                                      " samples read was kept (dropped: " + dropped + ")");
  }
  GRPO_RETURN_IF_ERROR(out->Close());
  std::fprintf(stderr, "grpo export: kept %llu of %llu samples -> %s (%s JSONL) in %.2f s, read %s at %.1f MB/s\n",
               static_cast<unsigned long long>(stats.kept), static_cast<unsigned long long>(stats.scanned),
               to_stdout ? "stdout" : f.output.c_str(), Mb(stats.bytes_out).c_str(), stats.seconds,
               Mb(stats.bytes_in).c_str(), stats.seconds > 0 ? stats.bytes_in / 1e6 / stats.seconds : 0.0);
  std::fprintf(stderr, "grpo export: dropped: %s\n", dropped.empty() ? "none" : dropped.c_str());
  return absl::OkStatus();
}

struct InspectFlags {
  std::string store_dir;
  std::optional<std::string> run;
  std::optional<uint64_t> step;
  std::optional<uint32_t> prompt, sample;
  uint32_t k = 0;
  bool json = false;
  CorrectnessFlags correctness;
  std::optional<double> min_reward, max_reward;
  std::optional<std::string> rule;
  std::optional<uint64_t> weight_version;
  uint64_t limit = 50;
};

// "NAME", "NAME:MIN" or "NAME:MIN:MAX".
absl::StatusOr<store::RuleOutcome> ParseRule(const std::string& text) {
  store::RuleOutcome r;
  size_t a = text.find(':');
  r.rule = text.substr(0, a);
  try {
    if (a != std::string::npos) {
      size_t b = text.find(':', a + 1);
      r.min_score = std::stod(text.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1));
      if (b != std::string::npos) r.max_score = std::stod(text.substr(b + 1));
    }
  } catch (const std::exception&) {
    return absl::InvalidArgumentError("--rule wants NAME[:MIN[:MAX]], got '" + text + "'");
  }
  if (r.rule.empty()) return absl::InvalidArgumentError("--rule wants NAME[:MIN[:MAX]], got '" + text + "'");
  return r;
}

absl::Status RunInspect(const InspectFlags& f) {
  GRPO_ASSIGN_OR_RETURN(auto db, store::TrajectoryStore::OpenReadOnly(f.store_dir));
  store::InspectRequest r;
  r.run = f.run;
  r.step = f.step;
  r.prompt = f.prompt;
  r.sample = f.sample;
  r.k = f.k;
  r.correctness = f.correctness.Spec();
  r.filter.min_reward = f.min_reward;
  r.filter.max_reward = f.max_reward;
  r.filter.weight_version = f.weight_version;
  if (f.rule) {
    GRPO_ASSIGN_OR_RETURN(r.filter.rule, ParseRule(*f.rule));
  }
  r.limit = f.limit;
  GRPO_ASSIGN_OR_RETURN(auto view, store::Inspect(*db, r));
  if (f.json) {
    std::cout << view.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << store::RenderInspectText(view);
  }
  std::cout.flush();
  return std::cout ? absl::OkStatus() : absl::UnknownError("writing to stdout failed");
}

}  // namespace

void AddExportSubcommand(CLI::App& app) {
  auto f = std::make_shared<ExportFlags>();
  CLI::App* cmd = AddSubcommand(app, "export", "Export trajectories as SFT/distillation datasets",
                                [f] { return RunExport(*f); });
  cmd->add_option("--store", f->store_dir, "Trajectory store directory (runs/<name>/store)")->required();
  cmd->add_option("--run", f->run, "Run to export (default: the store's only run)");
  cmd->add_option("--format", f->format, "openai | sharegpt | prompt-completion")->required();
  cmd->add_option("--output", f->output, "Output JSONL file ('-' for stdout)")->required();
  cmd->add_option("--min-reward", f->min_reward, "Keep samples with total reward >= R");
  cmd->add_flag("--correct-only", f->correct_only, "Keep correct samples only (see --correct-rule)");
  cmd->add_flag("--best-of-group", f->best_of_group,
                "Keep the highest-reward sample of each group (ties: lowest sample index)");
  cmd->add_flag("--dedupe", f->dedupe, "Drop samples whose prompt and completion were already kept");
  cmd->add_option("--max-tokens", f->max_tokens, "Drop samples longer than N tokens (prompt + completion)");
  cmd->add_flag("--drop-truncated", f->drop_truncated, "Drop samples that hit max_new_tokens");
  cmd->add_option("--reasoning", f->reasoning, "inline: keep <think> in the answer; split: separate field")
      ->capture_default_str();
  cmd->add_flag("--metadata", f->metadata, "Add a metadata object (run, step, indices, reward) to each line");
  cmd->add_option("--first-step", f->first_step, "First step to export (inclusive)");
  cmd->add_option("--last-step", f->last_step, "Last step to export (inclusive)");
  cmd->add_flag("--no-progress", f->no_progress, "No progress bar (it is shown only on a terminal anyway)");
  f->correctness.Add(cmd);
}

void AddInspectSubcommand(CLI::App& app) {
  auto f = std::make_shared<InspectFlags>();
  CLI::App* cmd = AddSubcommand(app, "inspect", "Show runs, steps, rewards and samples of a store",
                                [f] { return RunInspect(*f); });
  cmd->add_option("--store", f->store_dir, "Trajectory store directory (runs/<name>/store)")->required();
  cmd->add_option("--run", f->run, "Show this run's steps (default with --step: the only run)");
  cmd->add_option("--step", f->step, "Show this step's groups (pass@k per prompt)");
  cmd->add_option("--prompt", f->prompt, "With --step: show this group's samples in full");
  cmd->add_option("--sample", f->sample, "With --step and --prompt: show only this sample");
  cmd->add_option("--k", f->k, "k of pass@k in the step view (default: the group size)");
  cmd->add_option("--min-reward", f->min_reward, "List samples with total reward >= R");
  cmd->add_option("--max-reward", f->max_reward, "List samples with total reward <= R");
  cmd->add_option("--rule", f->rule, "List samples whose rule scored in range: NAME[:MIN[:MAX]]");
  cmd->add_option("--weight-version", f->weight_version, "List samples with tokens from this weight version");
  cmd->add_option("--limit", f->limit, "At most this many samples in a listing")->capture_default_str();
  cmd->add_flag("--json", f->json, "Print JSON instead of text");
  f->correctness.Add(cmd);
}

}  // namespace grpo::cli
