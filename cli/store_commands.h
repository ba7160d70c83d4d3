// `grpo export` and `grpo inspect`: the trajectory store's subcommands (issue #6).
// Contracts: ../shared/ARCHITECTURE.md "CLI"; options and formats: docs/store.md.
#ifndef GRPO_CLI_STORE_COMMANDS_H_
#define GRPO_CLI_STORE_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

// Adds `export` (SFT/distillation JSONL from a store) under `app`.
void AddExportSubcommand(CLI::App& app);
// Adds `inspect` (runs, steps, rewards and samples of a store) under `app`.
void AddInspectSubcommand(CLI::App& app);

}  // namespace grpo::cli

#endif  // GRPO_CLI_STORE_COMMANDS_H_
