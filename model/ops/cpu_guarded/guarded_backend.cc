#include "model/ops/cpu_guarded/guarded_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/ops/cpu/cpu_backend.h"

namespace grpo {
namespace {

constexpr size_t kReserveBytes = size_t{64} << 30;
constexpr size_t kAlign = 64;
constexpr size_t kPage = 4096;

// One reserved range handed out by a bump pointer, freed blocks reused by exact size. Open
// (read/write) while at least one call is inside the backend.
class GuardedArena final : public cpu::DeviceArena {
 public:
  GuardedArena() {
    void* p = mmap(nullptr, kReserveBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      std::perror("fatal: cpu_guarded cannot reserve its arena");
      std::abort();
    }
    base_ = static_cast<char*>(p);
  }

  // Requests are rounded up to size classes (multiples of kAlign up to 4 KiB, then four classes
  // per power of two), so that freed blocks are reused when batch shapes vary from step to step;
  // with exact sizes the arena's used range, which every call opens and closes, kept growing.
  static size_t SizeClass(size_t bytes) {
    if (bytes <= 4096) return (bytes + kAlign - 1) / kAlign * kAlign;
    const int top = 63 - __builtin_clzll(bytes);  // 2^top <= bytes < 2^(top+1)
    const size_t step = size_t{1} << (top - 2);
    return (bytes + step - 1) / step * step;
  }

  void* Allocate(size_t bytes) override {
    const size_t size = SizeClass(std::max<size_t>(bytes, 1));
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      char* p = it->second.back();
      it->second.pop_back();
      sizes_[p] = size;
      return p;
    }
    if (used_ + size > kReserveBytes) throw std::bad_alloc();
    char* p = base_ + used_;
    used_ += size;
    const size_t open = (used_ + kPage - 1) / kPage * kPage;
    if (open > open_) {
      if (entered_ > 0) Protect(base_ + open_, open - open_, PROT_READ | PROT_WRITE);
      open_ = open;
    }
    sizes_[p] = size;
    return p;
  }

  void Free(void* p) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(static_cast<char*>(p));
    if (it == sizes_.end()) {
      std::fprintf(stderr, "fatal: cpu_guarded Free of an address it did not allocate\n");
      std::abort();
    }
    free_[it->second].push_back(it->first);
    sizes_.erase(it);
  }

  void Enter() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (entered_++ == 0 && open_ > 0) Protect(base_, open_, PROT_READ | PROT_WRITE);
  }

  void Exit() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (--entered_ == 0 && open_ > 0) Protect(base_, open_, PROT_NONE);
  }

  void CopyToHost(const void* src, void* host, size_t bytes) override {
    std::vector<char> staged(bytes);
    Enter();
    std::memcpy(staged.data(), src, bytes);
    Exit();
    std::memset(host, 0xFF, bytes);
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({host, std::move(staged)});
  }

  void Synchronize() override {
    std::vector<Pending> pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending.swap(pending_);
    }
    for (Pending& p : pending) std::memcpy(p.host, p.bytes.data(), p.bytes.size());
  }

 private:
  struct Pending {
    void* host;
    std::vector<char> bytes;
  };
  static void Protect(char* at, size_t bytes, int prot) {
    if (mprotect(at, bytes, prot) != 0) {
      std::perror("fatal: cpu_guarded mprotect");
      std::abort();
    }
  }

  std::mutex mu_;
  char* base_ = nullptr;
  size_t used_ = 0;   // bytes handed out so far
  size_t open_ = 0;   // page-rounded used_: the range opened on entry
  int64_t entered_ = 0;
  std::unordered_map<size_t, std::vector<char*>> free_;
  std::unordered_map<char*, size_t> sizes_;
  std::vector<Pending> pending_;
};

}  // namespace

Backend& CpuGuardedBackend() {
  static Backend* backend =
      cpu::NewCpuKernelBackend(std::make_unique<GuardedArena>(), "cpu_guarded").release();
  return *backend;
}

Backend& BackendForTests() {
  const char* name = std::getenv("GRPO_TEST_BACKEND");
  if (name == nullptr || *name == '\0' || std::string(name) == "cpu") return CpuBackend();
  if (std::string(name) == "cpu_guarded") return CpuGuardedBackend();
  std::fprintf(stderr, "fatal: GRPO_TEST_BACKEND=%s is not a backend (cpu, cpu_guarded)\n", name);
  std::abort();
}

}  // namespace grpo
