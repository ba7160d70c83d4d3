#include "cli/data_commands.h"

#include <cstdio>
#include <memory>
#include <string>

#include "cli/subcommand.h"
#include "core/jsonl.h"
#include "data/synthetic.h"

namespace grpo::cli {
namespace {

struct GenArgs {
  std::string task, output;
  int64_t n = 1000;
  uint64_t seed = 0;
  data::CountdownOptions countdown;
  data::ArithmeticOptions arithmetic;
  std::string ops;
};

absl::Status RunGen(GenArgs a) {
  if (a.task != "countdown" && a.task != "arithmetic") {
    return absl::InvalidArgumentError("--task must be countdown or arithmetic, not '" + a.task + "'");
  }
  // A dataset of no rows is a silent outcome for the run that trains on it: refused here.
  if (a.n < 1) return absl::InvalidArgumentError("--n must be >= 1, got " + std::to_string(a.n));
  if (!a.ops.empty()) a.countdown.ops = a.arithmetic.ops = a.ops;
  GRPO_RETURN_IF_ERROR(a.task == "countdown" ? data::Validate(a.countdown) : data::Validate(a.arithmetic));
  GRPO_ASSIGN_OR_RETURN(auto writer, JsonlWriter::Open(a.output));
  data::SplitMix64 rng(a.seed);
  for (int64_t i = 0; i < a.n; ++i) {
    auto e = a.task == "countdown" ? data::GenerateCountdown(rng, a.countdown) : data::GenerateArithmetic(rng, a.arithmetic);
    if (!e.ok()) return grpo::WithContext(e.status(), "instance " + std::to_string(i));
    GRPO_RETURN_IF_ERROR(writer->Write(data::ExampleToRow(*e)));
  }
  GRPO_RETURN_IF_ERROR(writer->Close());
  std::fprintf(stderr, "grpo data gen: wrote %lld %s instances to %s\n", static_cast<long long>(a.n),
               a.task.c_str(), a.output == "-" ? "stdout" : a.output.c_str());
  return absl::OkStatus();
}

}  // namespace

void AddDataGenCommand(CLI::App& data) {
  auto a = std::make_shared<GenArgs>();
  CLI::App* cmd = AddSubcommand(data, "gen", "Write a synthetic task dataset (Countdown, arithmetic)",
                                [a]() { return RunGen(*a); });
  cmd->add_option("--task", a->task, "countdown or arithmetic")->required();
  cmd->add_option("--output", a->output, "Output JSONL; - for stdout")->required();
  cmd->add_option("--n", a->n, "Number of instances, >= 1 (default 1000)");
  cmd->add_option("--seed", a->seed, "Random seed (default 0); the same seed gives the same file");
  cmd->add_option("--ops", a->ops, "Allowed operations, e.g. \"+-*\" (default \"+-*/\")");
  cmd->add_option("--min-numbers", a->countdown.min_numbers, "Countdown: fewest numbers (default 3)");
  cmd->add_option("--max-numbers", a->countdown.max_numbers, "Countdown: most numbers (default 4)");
  cmd->add_option("--max-number", a->countdown.max_number, "Countdown: largest number (default 100)");
  cmd->add_option("--min-target", a->countdown.min_target, "Countdown: smallest target (default 1)");
  cmd->add_option("--max-target", a->countdown.max_target, "Countdown: largest target (default 1000)");
  cmd->add_option("--min-steps", a->arithmetic.min_steps, "Arithmetic: fewest operations (default 2)");
  cmd->add_option("--max-steps", a->arithmetic.max_steps, "Arithmetic: most operations (default 4)");
  cmd->add_option("--min-operand", a->arithmetic.min_operand, "Arithmetic: smallest operand (default 1)");
  cmd->add_option("--max-operand", a->arithmetic.max_operand, "Arithmetic: largest operand (default 100)");
  cmd->add_flag("--allow-negative", a->arithmetic.allow_negative, "Arithmetic: allow negative values");
}

}  // namespace grpo::cli
