// Which CUDA devices this process can use, for the backend registry and `grpo info`. Plain
// CUDA runtime queries: they work (and say why not) on machines without a GPU or driver.
#ifndef GRPO_MODEL_OPS_CUDA_CUDA_DEVICES_H_
#define GRPO_MODEL_OPS_CUDA_CUDA_DEVICES_H_

#include <vector>

#include "core/status.h"
#include "model/ops/registry.h"

namespace grpo {

// OK when at least one CUDA device is usable; otherwise FailedPrecondition "no CUDA device found
// (cudaGetDeviceCount: <the runtime's reason>)", or, with a device, the reason cuBLASLt cannot be
// loaded (cublaslt_library.h). Queried once per process, then cached.
absl::Status CudaAvailability();

// One entry per device: id "cuda:N", the device's name, its memory, SM count and compute
// capability. Empty without a device.
std::vector<DeviceInfo> CudaDevices();

}  // namespace grpo

#endif  // GRPO_MODEL_OPS_CUDA_CUDA_DEVICES_H_
