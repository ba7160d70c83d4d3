// `grpo rollout serve`: RolloutService over gRPC for one model (rollout/service.h).
#ifndef GRPO_CLI_ROLLOUT_COMMANDS_H_
#define GRPO_CLI_ROLLOUT_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

// Adds `serve` under the `rollout` group.
void AddRolloutCommands(CLI::App& rollout);

}  // namespace grpo::cli

#endif  // GRPO_CLI_ROLLOUT_COMMANDS_H_
