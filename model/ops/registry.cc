#include "model/ops/registry.h"

#include <utility>

#include "absl/strings/str_join.h"
#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/ops/cuda/cuda_backend.h"
#include "model/ops/cuda/cuda_devices.h"

namespace grpo {
namespace {

absl::Status AlwaysAvailable() { return absl::OkStatus(); }

// The backends compiled into this build. To add one, declare its accessor (Backend& FooBackend())
// in its header and add its line here; a backend built only in some configurations (CUDA) puts
// its line under the same #if as its sources.
constexpr BackendEntry kBackends[] = {
    {"cpu", "f32 on the host: OpenBLAS GEMMs, threads from one shared pool", &AlwaysAvailable, &CpuBackend,
     &CpuDevices},
    {"cpu_guarded",
     "test backend: the cpu kernels over memory the host cannot touch outside the backend's calls "
     "(mprotect); slower, bit-identical to cpu",
     &AlwaysAvailable, &CpuGuardedBackend, nullptr},
    {"cuda",
     "f32 on one NVIDIA GPU (device 0): cuBLASLt GEMMs (TF32 off), kernels of its own, a stream-ordered "
     "memory pool; compiled and CPU-tested, not yet verified on a GPU (docs/gpu.md)",
     &CudaAvailability, &CudaBackend, &CudaDevices},
};

// Names the project knows whose backend some builds lack, and how to get one that has it.
struct KnownElsewhere {
  const char* name;
  const char* how;
};
constexpr KnownElsewhere kKnownElsewhere[] = {
    {"cuda", "build with the CUDA toolkit (docs/build.md)"},
};

const BackendEntry* Find(std::span<const BackendEntry> table, const std::string& name) {
  for (const BackendEntry& e : table) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

}  // namespace

std::string AvailableBackendNamesFrom(std::span<const BackendEntry> table) {
  std::vector<std::string> names;
  for (const BackendEntry& e : table) {
    if (e.availability().ok()) names.push_back(e.name);
  }
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

absl::StatusOr<Backend*> GetBackendFrom(std::span<const BackendEntry> table, const std::string& name) {
  const std::string available = "; available backends: " + AvailableBackendNamesFrom(table);
  const BackendEntry* entry = Find(table, name);
  if (entry == nullptr) {
    for (const KnownElsewhere& k : kKnownElsewhere) {
      if (name == k.name) {
        return absl::InvalidArgumentError("backend '" + name + "' is not compiled into this build (" + k.how + ")" +
                                          available);
      }
    }
    return absl::InvalidArgumentError("unknown backend '" + name + "'" + available);
  }
  if (absl::Status why = entry->availability(); !why.ok()) {
    return absl::FailedPreconditionError("backend '" + name + "' is compiled in but unavailable here: " +
                                         std::string(why.message()) + available);
  }
  return &entry->instance();
}

std::vector<BackendInfo> ListBackendsFrom(std::span<const BackendEntry> table) {
  std::vector<BackendInfo> out;
  for (const BackendEntry& e : table) {
    const absl::Status why = e.availability();
    out.push_back({e.name, e.description, why.ok(), std::string(why.message())});
  }
  return out;
}

absl::StatusOr<Backend*> GetBackend(const std::string& name) { return GetBackendFrom(kBackends, name); }
std::vector<BackendInfo> ListBackends() { return ListBackendsFrom(kBackends); }

std::vector<DeviceInfo> ListDevices() {
  std::vector<DeviceInfo> out;
  for (const BackendEntry& e : kBackends) {
    if (e.devices == nullptr || !e.availability().ok()) continue;
    for (DeviceInfo& d : e.devices()) out.push_back(std::move(d));
  }
  return out;
}

std::string AvailableBackendNames() { return AvailableBackendNamesFrom(kBackends); }

}  // namespace grpo
