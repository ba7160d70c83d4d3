// `grpo info`: the build (version, compiler, flags, whether CUDA is compiled in), the backends
// compiled in with their availability here, and the devices found.
#ifndef GRPO_CLI_INFO_COMMAND_H_
#define GRPO_CLI_INFO_COMMAND_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

// The version `grpo --version` and `grpo info` print.
inline constexpr char kGrpoVersion[] = "0.1.0";

// Adds `info` under `app`.
void AddInfoSubcommand(CLI::App& app);

}  // namespace grpo::cli

#endif  // GRPO_CLI_INFO_COMMAND_H_
