// The CPU backend's construction hooks, for backends built on its kernels (cpu_guarded) and for
// the CPU kernels' own tests and benchmarks.
#ifndef GRPO_MODEL_OPS_CPU_CPU_BACKEND_H_
#define GRPO_MODEL_OPS_CPU_CPU_BACKEND_H_

#include <cstddef>
#include <memory>
#include <span>

#include "model/ops/backend.h"

namespace grpo::cpu {

// Where a CPU-kernel backend's device memory comes from, and what happens around each of its
// op and transfer calls. The plain CPU backend has none (aligned host allocations, a caching
// allocator, nothing around calls); cpu_guarded keeps its memory inaccessible outside its calls.
class DeviceArena {
 public:
  virtual ~DeviceArena() = default;
  virtual void* Allocate(size_t bytes) = 0;  // 64-byte aligned; throws std::bad_alloc
  virtual void Free(void* p) = 0;
  // Before and after every op or transfer (nested and concurrent calls included). `touched`
  // lists the device addresses the call reads or writes, each anywhere inside a block Allocate
  // returned (an address inside no live block is ignored); Exit gets the same list as its Enter.
  virtual void Enter(std::span<const void* const> touched) = 0;
  virtual void Exit(std::span<const void* const> touched) = 0;
  // A device-to-host copy: the host bytes become valid at Synchronize at the latest.
  virtual void CopyToHost(const void* src, void* host, size_t bytes) = 0;
  virtual void Synchronize() = 0;
};

// A backend running the CPU kernels over `arena`'s memory, named `name`. ImportHost copies.
std::unique_ptr<Backend> NewCpuKernelBackend(std::unique_ptr<DeviceArena> arena, const char* name);

// The plain CPU backend's device memory is host memory: these wrap host addresses as device
// pointers, for the CPU kernels' tests and benchmarks that call CpuBackend() on host arrays.
// Valid with CpuBackend() only; model, engine and learner code never use them.
DevicePtr<float> HostAsDevice(float* p);
DevicePtr<const float> HostAsDevice(const float* p);
DevicePtr<const int32_t> HostAsDevice(const int32_t* p);
DevicePtr<const void> HostAsDevice(const void* p);

}  // namespace grpo::cpu

#endif  // GRPO_MODEL_OPS_CPU_CPU_BACKEND_H_
