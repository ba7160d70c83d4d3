// `--backend NAME` for the commands that run a model (generate, logprobs, rollout serve, train,
// sft): which registered backend (model/ops/registry.h) the model runs on.
#ifndef GRPO_CLI_BACKEND_FLAG_H_
#define GRPO_CLI_BACKEND_FLAG_H_

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "core/status.h"
#include "model/causal_lm.h"
#include "model/ops/backend.h"

namespace grpo::cli {

// Adds `--backend NAME` to `sub`, stored in *name. `default_note` ends the help line, e.g.
// "default cpu".
void AddBackendOption(CLI::App* sub, std::string* name, const std::string& default_note);

// The backend `name` names ("" means the default, cpu); the registry's error otherwise, which
// lists the available backends.
absl::StatusOr<Backend*> BackendFromFlag(const std::string& name);

// The model in `dir` loaded for serving (generate, rollout serve): on the backend `--backend`
// names, with its weights held as `--serve-format` says (f32, bf16, fp8, stored). Errors name
// the flag that was wrong.
absl::StatusOr<std::unique_ptr<CausalLM>> LoadServingModel(const std::string& dir, const std::string& backend_flag,
                                                           const std::string& serve_format_flag);

}  // namespace grpo::cli

#endif  // GRPO_CLI_BACKEND_FLAG_H_
