#include "cli/backend_flag.h"

#include "model/ops/registry.h"

namespace grpo::cli {

void AddBackendOption(CLI::App* sub, std::string* name, const std::string& default_note) {
  // The names are not listed here: that would query every backend's devices on each start.
  sub->add_option("--backend", *name,
                  "backend the model runs on (" + default_note + "; `grpo info` lists them)");
}

absl::StatusOr<Backend*> BackendFromFlag(const std::string& name) {
  if (name.empty()) return GetBackend(kDefaultBackendName);
  return GetBackend(name);
}

absl::StatusOr<std::unique_ptr<CausalLM>> LoadServingModel(const std::string& dir, const std::string& backend_flag,
                                                           const std::string& serve_format_flag) {
  GRPO_ASSIGN_OR_RETURN(Backend* backend, BackendFromFlag(backend_flag));
  const absl::StatusOr<WeightFormat> format = ParseWeightFormat(serve_format_flag);
  if (!format.ok()) return grpo::WithContext(format.status(), "--serve-format");
  return CausalLM::Load(dir, *backend, {.serve_format = *format});
}

}  // namespace grpo::cli
