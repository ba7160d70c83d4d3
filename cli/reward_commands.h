// `grpo reward score`, `grpo reward serve` and the hidden `grpo reward plugin-worker`
// (contracts: ../shared/ARCHITECTURE.md "CLI", reward/rule_set.h, reward/service.h).
#ifndef GRPO_CLI_REWARD_COMMANDS_H_
#define GRPO_CLI_REWARD_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

// Adds score, serve and plugin-worker under the `reward` group.
void AddRewardCommands(CLI::App& reward);

}  // namespace grpo::cli

#endif  // GRPO_CLI_REWARD_COMMANDS_H_
