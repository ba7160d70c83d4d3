// `grpo data gen`: write a synthetic task dataset (Countdown or multi-step arithmetic) as JSON
// Lines, one instance per line with its gold answer (data/synthetic.h).
#ifndef GRPO_CLI_DATA_COMMANDS_H_
#define GRPO_CLI_DATA_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

// Adds "gen" under the "data" group.
void AddDataGenCommand(CLI::App& data);

}  // namespace grpo::cli

#endif  // GRPO_CLI_DATA_COMMANDS_H_
