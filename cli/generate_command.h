// `grpo generate`: groups of samples per prompt from a model (ARCHITECTURE.md "CLI").
#ifndef GRPO_CLI_GENERATE_COMMAND_H_
#define GRPO_CLI_GENERATE_COMMAND_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

void AddGenerateSubcommand(CLI::App& app);

}  // namespace grpo::cli

#endif  // GRPO_CLI_GENERATE_COMMAND_H_
