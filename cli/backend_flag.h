// `--backend NAME` for the commands that run a model (generate, logprobs, rollout serve, train,
// sft): which registered backend (model/ops/registry.h) the model runs on.
#ifndef GRPO_CLI_BACKEND_FLAG_H_
#define GRPO_CLI_BACKEND_FLAG_H_

#include <CLI/CLI.hpp>

#include <string>

#include "core/status.h"
#include "model/ops/backend.h"

namespace grpo::cli {

// Adds `--backend NAME` to `sub`, stored in *name. `default_note` ends the help line, e.g.
// "default cpu".
void AddBackendOption(CLI::App* sub, std::string* name, const std::string& default_note);

// The backend `name` names ("" means the default, cpu); the registry's error otherwise, which
// lists the available backends.
absl::StatusOr<Backend*> BackendFromFlag(const std::string& name);

}  // namespace grpo::cli

#endif  // GRPO_CLI_BACKEND_FLAG_H_
