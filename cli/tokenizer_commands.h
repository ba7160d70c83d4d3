// `grpo tokenize`: encode {"text": ..} lines to {"ids": [..]}, or with --decode {"ids": [..]} to
// {"text": ..}, with a HuggingFace tokenizer.json (ARCHITECTURE.md, "CLI"). A bad line is
// reported on stderr with its line number and answered with {"error": ".."} in the output (so
// output line k still belongs to input line k), or with --strict fails the run.
#ifndef GRPO_CLI_TOKENIZER_COMMANDS_H_
#define GRPO_CLI_TOKENIZER_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace grpo::cli {

void AddTokenizeCommand(CLI::App& app);

}  // namespace grpo::cli

#endif  // GRPO_CLI_TOKENIZER_COMMANDS_H_
