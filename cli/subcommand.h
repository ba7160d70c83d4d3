// How subcommands plug into the single `grpo` binary.
//
// Each part of the system that owns a subcommand provides a function that adds it to the CLI11
// app (options and a callback); cli/main.cc calls them all. A callback reports failure by
// returning a non-OK absl::Status, which main prints as "grpo <command>: <error>" and turns into
// exit code 1. Usage errors (unknown flags, missing arguments) exit with 2. A subcommand that
// is not built yet is registered with AddUnbuiltSubcommand: it is listed in --help and exits 3
// with a message naming the issue that will build it.
#ifndef GRPO_CLI_SUBCOMMAND_H_
#define GRPO_CLI_SUBCOMMAND_H_

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "core/status.h"

namespace grpo::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnbuilt = 3;

// Thrown from a subcommand callback to leave CLI11's parse with an exit code; caught in main.
struct CommandExit {
  int code;
};

// Adds `name` under `parent` with a one-line description. `run` is called after parsing; its
// non-OK absl::Status is printed to stderr with the command path and the process exits 1.
// An allocation that fails in `run`'s thread (std::bad_alloc, std::length_error) is such an
// error too (OutOfMemoryError), never an abort.
CLI::App* AddSubcommand(CLI::App& parent, const std::string& name, const std::string& description,
                        std::function<absl::Status()> run);

// ResourceExhausted "out of memory: an allocation failed (<what>); ...".
absl::Status OutOfMemoryError(const std::string& what);

// Adds a listed subcommand that is not built yet; running it prints which issue builds it and
// exits 3. It accepts any arguments so that scripts get this message rather than a usage error.
CLI::App* AddUnbuiltSubcommand(CLI::App& parent, const std::string& name,
                               const std::string& description, const std::string& issue);

}  // namespace grpo::cli

#endif  // GRPO_CLI_SUBCOMMAND_H_
