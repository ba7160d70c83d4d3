// The backends this build can run the model on, by name: what `--backend NAME` and the recipe
// key `backend:` choose from, and what `grpo info` lists.
//
// Every backend has one entry in the table in registry.cc (name, a one-line description, an
// availability check and the accessor of its process-wide instance); adding a backend is one
// line there. A backend can be compiled in and still unavailable on this machine (`cuda` built
// but no device found): GetBackend then fails with the reason.
//
// Thread-safe: the table is fixed at compile time; accessors return process-wide instances.
#ifndef GRPO_MODEL_OPS_REGISTRY_H_
#define GRPO_MODEL_OPS_REGISTRY_H_

#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/ops/backend.h"

namespace grpo {

// The name used when neither a flag nor a recipe names one.
inline constexpr char kDefaultBackendName[] = "cpu";

// A device a backend runs on, as `grpo info` shows it.
struct DeviceInfo {
  std::string id;       // "cpu", "cuda:0"
  std::string name;     // "AMD EPYC 7763 64-Core Processor"
  std::string details;  // "16 cores usable (16 online), 125.8 GiB memory (...)"
};

// One registered backend.
struct BackendEntry {
  const char* name;
  const char* description;
  // OK when the backend can run here; otherwise an error whose message says why not ("no CUDA
  // device found"). Called on every lookup, so it stays cheap.
  absl::Status (*availability)();
  // The process-wide instance; called only when availability() is OK.
  Backend& (*instance)();
  // The devices it runs on; null when it shares another entry's devices (a test variant of the
  // CPU backend lists no second CPU).
  std::vector<DeviceInfo> (*devices)();
};

// What ListBackends reports of an entry.
struct BackendInfo {
  std::string name;
  std::string description;
  bool available = false;
  std::string unavailable_reason;  // empty when available
};

// The backend named `name`. InvalidArgument for a name no entry has (a name the project knows
// but this build lacks, such as `cuda`, says it is not compiled in); FailedPrecondition for a
// backend that is compiled in but unavailable, with the reason. Both messages end with
// "available backends: cpu, ...".
absl::StatusOr<Backend*> GetBackend(const std::string& name);

// Every backend compiled into this build, in table order, with its availability here.
std::vector<BackendInfo> ListBackends();

// The devices of the available backends, each device once.
std::vector<DeviceInfo> ListDevices();

// The host CPU: model name, cores usable by this process and online, memory total and
// available (core/memory_plan.h's budget), the BLAS library's build.
std::vector<DeviceInfo> CpuDevices();

// "cpu, cpu_guarded": the names of the backends available here, for messages and --help.
std::string AvailableBackendNames();

// The same over an explicit table (tests use their own).
absl::StatusOr<Backend*> GetBackendFrom(std::span<const BackendEntry> table, const std::string& name);
std::vector<BackendInfo> ListBackendsFrom(std::span<const BackendEntry> table);
std::string AvailableBackendNamesFrom(std::span<const BackendEntry> table);

}  // namespace grpo

#endif  // GRPO_MODEL_OPS_REGISTRY_H_
