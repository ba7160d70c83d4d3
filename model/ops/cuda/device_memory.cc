#include "model/ops/cuda/device_memory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "core/memory_plan.h"

namespace grpo::cuda {

std::string OutOfMemoryMessage(int64_t requested_bytes, const std::string& what,
                               const std::string& device, const DeviceMemoryInfo& info,
                               int64_t live_bytes, int64_t live_count, int64_t peak_bytes) {
  return "out of CUDA device memory allocating " + FormatBytes(requested_bytes) + " (" + what +
         "): device " + device + " has " + FormatBytes(info.free_bytes) + " free of " +
         FormatBytes(info.total_bytes) + "; this backend holds " + FormatBytes(live_bytes) +
         " in " + std::to_string(live_count) + " buffers (peak " + FormatBytes(peak_bytes) + ")";
}

void DeviceMemoryLedger::Add(const void* address, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sizes_.emplace(address, bytes).second) {
    std::fprintf(stderr, "fatal: CUDA allocator handed out %p twice\n", address);
    std::abort();
  }
  live_bytes_ += bytes;
  peak_bytes_ = std::max(peak_bytes_, live_bytes_);
}

int64_t DeviceMemoryLedger::Remove(const void* address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sizes_.find(address);
  if (it == sizes_.end()) {
    std::fprintf(stderr, "fatal: Free of %p, which the CUDA backend did not allocate (or freed)\n",
                 address);
    std::abort();
  }
  const int64_t bytes = it->second;
  sizes_.erase(it);
  live_bytes_ -= bytes;
  return bytes;
}

int64_t DeviceMemoryLedger::live_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_bytes_;
}

int64_t DeviceMemoryLedger::live_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(sizes_.size());
}

int64_t DeviceMemoryLedger::peak_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_bytes_;
}

void DeviceMemoryLedger::ResetPeak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_bytes_ = live_bytes_;
}

}  // namespace grpo::cuda
