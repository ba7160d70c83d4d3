#include "cli/subcommand.h"

#include <cstdio>
#include <new>
#include <stdexcept>

namespace grpo::cli {
namespace {

// "reward score" for a nested subcommand.
std::string CommandPath(const CLI::App* app) {
  std::string path;
  for (const CLI::App* a = app; a != nullptr && a->get_parent() != nullptr; a = a->get_parent()) {
    path = path.empty() ? a->get_name() : a->get_name() + " " + path;
  }
  return path;
}

}  // namespace

absl::Status OutOfMemoryError(const std::string& what) {
  return absl::ResourceExhaustedError("out of memory: an allocation failed (" + what +
                                      "); lower the sizes in use (batch, KV cache, model) or "
                                      "free memory and run again");
}

CLI::App* AddSubcommand(CLI::App& parent, const std::string& name, const std::string& description,
                        std::function<absl::Status()> run) {
  CLI::App* sub = parent.add_subcommand(name, description);
  sub->callback([sub, run = std::move(run)] {
    absl::Status status;
    try {
      status = run();
    } catch (const std::bad_alloc& e) {  // what(): "std::bad_alloc", or the CUDA backend's explanation
      status = OutOfMemoryError(e.what());
    } catch (const std::length_error& e) {  // a container asked for more than it can hold
      status = OutOfMemoryError(std::string("std::length_error: ") + e.what());
    }
    if (!status.ok()) {
      std::fprintf(stderr, "grpo %s: %s\n", CommandPath(sub).c_str(), status.ToString().c_str());
      throw CommandExit{kExitFailure};
    }
  });
  return sub;
}

CLI::App* AddUnbuiltSubcommand(CLI::App& parent, const std::string& name,
                               const std::string& description, const std::string& issue) {
  CLI::App* sub = parent.add_subcommand(name, description + " [not built yet]");
  sub->allow_extras();
  sub->callback([sub, issue] {
    std::fprintf(stderr, "grpo %s: not built yet; %s will build it\n", CommandPath(sub).c_str(),
                 issue.c_str());
    throw CommandExit{kExitUnbuilt};
  });
  return sub;
}

}  // namespace grpo::cli
