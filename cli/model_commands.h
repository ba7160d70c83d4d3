// `grpo init-model` and `grpo logprobs`: the model core's subcommands (issue #3).
// Contracts: ../shared/ARCHITECTURE.md "CLI"; options: docs/model.md.
#ifndef GRPO_CLI_MODEL_COMMANDS_H_
#define GRPO_CLI_MODEL_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

// Adds `init-model` (random weights of any family in the HF layout) under `app`.
void AddInitModelSubcommand(CLI::App& app);
// Adds `logprobs` ({"tokens":[..]} -> {"logprobs":[..]} JSON Lines) under `app`.
void AddLogprobsSubcommand(CLI::App& app);

}  // namespace grpo::cli

#endif  // GRPO_CLI_MODEL_COMMANDS_H_
