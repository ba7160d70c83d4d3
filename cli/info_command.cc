#include "cli/info_command.h"

#include <cstdio>
#include <string>
#include <vector>

#include "cli/subcommand.h"
#include "model/ops/registry.h"

namespace grpo::cli {
namespace {

std::string YesNo(bool b) { return b ? "yes" : "no"; }

// How this binary was compiled: the macros of this translation unit, built with the same flags
// as the rest (.bazelrc).
std::vector<std::pair<std::string, std::string>> BuildLines() {
#if defined(__clang__)
  const std::string compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  const std::string compiler = std::string("gcc ") + __VERSION__;
#else
  const std::string compiler = "unknown";
#endif
#if defined(__OPTIMIZE__)
  const bool optimized = true;
#else
  const bool optimized = false;
#endif
#if defined(NDEBUG)
  const bool asserts = false;
#else
  const bool asserts = true;
#endif
#if defined(__AVX2__)
  const bool avx2 = true;
#else
  const bool avx2 = false;
#endif
#if defined(__SSE4_2__)
  const bool sse42 = true;
#else
  const bool sse42 = false;
#endif
  bool cuda = false;
  for (const BackendInfo& b : ListBackends()) cuda = cuda || b.name == "cuda";
  return {
      {"version", std::string("grpo ") + kGrpoVersion},
      {"compiler", compiler + ", C++" + std::to_string(__cplusplus / 100 % 100)},
      {"optimized", YesNo(optimized) + ", asserts " + (asserts ? "on" : "off")},
      {"target", std::string("x86-64, SSE4.2 ") + YesNo(sse42) + ", AVX2 " + YesNo(avx2)},
      {"cuda", cuda ? "compiled in" : "not compiled in"},
  };
}

absl::Status RunInfo() {
  std::printf("build:\n");
  for (const auto& [key, value] : BuildLines()) std::printf("  %-10s %s\n", key.c_str(), value.c_str());
  std::printf("backends:\n");
  for (const BackendInfo& b : ListBackends()) {
    std::printf("  %-12s %s  %s\n", b.name.c_str(),
                b.available ? "available" : ("unavailable: " + b.unavailable_reason).c_str(), b.description.c_str());
  }
  std::printf("devices:\n");
  for (const DeviceInfo& d : ListDevices()) {
    std::printf("  %-8s %s: %s\n", d.id.c_str(), d.name.c_str(), d.details.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

void AddInfoSubcommand(CLI::App& app) {
  AddSubcommand(app, "info", "Print the build, the backends compiled in and the devices found", [] { return RunInfo(); });
}

}  // namespace grpo::cli
