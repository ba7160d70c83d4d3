#include "model/ops/cuda/cuda_devices.h"

#include <cuda_runtime_api.h>

#include <string>

#include "core/memory_plan.h"
#include "model/ops/cuda/cublaslt_library.h"

namespace grpo {
namespace {

struct DeviceCount {
  int count = 0;
  cudaError_t error = cudaSuccess;
};

const DeviceCount& Count() {
  static const DeviceCount count = [] {
    DeviceCount c;
    c.error = cudaGetDeviceCount(&c.count);
    if (c.error != cudaSuccess) {
      c.count = 0;
      (void)cudaGetLastError();  // not sticky: clear it
    }
    return c;
  }();
  return count;
}

}  // namespace

absl::Status CudaAvailability() {
  const DeviceCount& c = Count();
  if (c.error != cudaSuccess) {
    return absl::FailedPreconditionError(std::string("no CUDA device found (cudaGetDeviceCount: ") +
                                         cudaGetErrorName(c.error) + ": " +
                                         cudaGetErrorString(c.error) + ")");
  }
  if (c.count == 0) {
    return absl::FailedPreconditionError("no CUDA device found (cudaGetDeviceCount: 0 devices)");
  }
  if (absl::StatusOr<const cuda::CublasLtApi*> lt = cuda::LoadCublasLt(); !lt.ok()) {
    return lt.status();
  }
  return absl::OkStatus();
}

std::vector<DeviceInfo> CudaDevices() {
  std::vector<DeviceInfo> out;
  for (int d = 0; d < Count().count; ++d) {
    cudaDeviceProp prop;
    DeviceInfo info;
    info.id = "cuda:" + std::to_string(d);
    if (const cudaError_t err = cudaGetDeviceProperties(&prop, d); err != cudaSuccess) {
      info.name = "unknown CUDA device";
      info.details = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(err);
    } else {
      info.name = prop.name;
      info.details = FormatBytes(static_cast<int64_t>(prop.totalGlobalMem)) + " memory, " +
                     std::to_string(prop.multiProcessorCount) + " SMs, compute capability " +
                     std::to_string(prop.major) + "." + std::to_string(prop.minor);
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace grpo
