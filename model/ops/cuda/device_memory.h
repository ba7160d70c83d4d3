// The host-side bookkeeping of the CUDA backend's device memory, kept apart from the CUDA calls
// so it is tested on machines without a GPU.
//
// The CUDA backend allocates from a stream-ordered CUDA memory pool (cudaMallocAsync on its one
// stream, the pool keeping freed memory cached for reuse instead of returning it to the driver).
// DeviceMemoryLedger records what is handed out: the size of every live allocation (Free needs
// it for the counts), the live and peak bytes. When the pool cannot satisfy a request, the
// backend throws DeviceOutOfMemory, a std::bad_alloc (the Backend contract's allocation failure,
// which commands turn into an out-of-memory error) whose what() names the bytes asked for, what
// they were for, and the device's and the backend's memory at that moment.
#ifndef GRPO_MODEL_OPS_CUDA_DEVICE_MEMORY_H_
#define GRPO_MODEL_OPS_CUDA_DEVICE_MEMORY_H_

#include <cstdint>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

namespace grpo::cuda {

// Device memory as the driver reports it (cudaMemGetInfo), for messages.
struct DeviceMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};

// Out of device memory: a std::bad_alloc whose what() is the whole explanation.
class DeviceOutOfMemory : public std::bad_alloc {
 public:
  explicit DeviceOutOfMemory(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

// "out of CUDA device memory allocating 1.5 GiB (device buffer): device cuda:0 has 10.0 MiB
// free of 79.1 GiB; this backend holds 78.2 GiB in 312 buffers (peak 78.9 GiB)".
std::string OutOfMemoryMessage(int64_t requested_bytes, const std::string& what,
                               const std::string& device, const DeviceMemoryInfo& info,
                               int64_t live_bytes, int64_t live_count, int64_t peak_bytes);

// Live allocations by address. Thread-safe.
class DeviceMemoryLedger {
 public:
  // Records a new allocation of `bytes` at `address`. An address already live is a programming
  // error (the allocator handed it out twice): aborts naming it.
  void Add(const void* address, int64_t bytes);
  // Forgets the allocation at `address` and returns its size. An address not live (a double
  // free, a pointer from elsewhere) aborts naming it.
  int64_t Remove(const void* address);

  int64_t live_bytes() const;
  int64_t live_count() const;
  int64_t peak_bytes() const;
  void ResetPeak();  // peak = live

 private:
  mutable std::mutex mu_;
  std::unordered_map<const void*, int64_t> sizes_;
  int64_t live_bytes_ = 0;
  int64_t peak_bytes_ = 0;
};

}  // namespace grpo::cuda

#endif  // GRPO_MODEL_OPS_CUDA_DEVICE_MEMORY_H_
