// `grpo train RECIPE.yaml [--set k=v]... [--resume] [--overwrite]`, `grpo sft RECIPE.yaml ...`
// and `grpo report RUN_DIR` (learner/trainer.h, learner/report.h).
#ifndef GRPO_CLI_TRAIN_COMMANDS_H_
#define GRPO_CLI_TRAIN_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

void AddTrainCommands(CLI::App& app);

}  // namespace grpo::cli

#endif  // GRPO_CLI_TRAIN_COMMANDS_H_
