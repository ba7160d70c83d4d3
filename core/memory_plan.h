// Memory planning: what an operation is about to allocate, compared with what the machine has,
// before the first byte of it is allocated.
//
// Every size that comes from outside (a config, a recipe, a request, a flag) is turned into
// bytes with CheckedInt64 (core/checked_math.h) and added to a MemoryPlan as a part whose label
// names the keys that size it ("KV cache (--kv-memory-mb 100000000)"). Check() compares the
// total with a MemoryBudget; a plan that does not fit, or whose sizes overflow, is a
// ResourceExhausted error naming the largest part and listing all of them with their sizes.
//
// Plans are lower bounds (the buffers that must exist at once, without allocator overhead): a
// refused plan would certainly fail; an accepted one may still fail, which the commands report
// as an error too (cli/subcommand.h turns std::bad_alloc into one).
#ifndef GRPO_CORE_MEMORY_PLAN_H_
#define GRPO_CORE_MEMORY_PLAN_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/checked_math.h"
#include "core/status.h"

namespace grpo {

// "512 B", "1.50 KiB", ..., "3.00 EiB".
std::string FormatBytes(int64_t bytes);

// Bytes that may still be allocated, and where the number comes from.
struct MemoryBudget {
  int64_t bytes = 0;
  std::string source;  // e.g. "MemAvailable", "GRPO_MEMORY_LIMIT_MB=64"

  // The environment variable GRPO_MEMORY_LIMIT_MB (MiB) when set: a budget below the machine's,
  // or a fixed one for tests (not a number: a budget of 0 whose source says so). Otherwise the
  // smallest of /proc/meminfo's MemAvailable (sysconf's available pages where it is absent),
  // the cgroup v2 memory.max less memory.current, and RLIMIT_AS less the address space in use.
  static MemoryBudget Available();
};

class MemoryPlan {
 public:
  struct Part {
    std::string label;
    CheckedInt64 bytes;
  };

  // Adds a part. `label` names what it is and the keys or flags that size it.
  void Add(std::string label, CheckedInt64 bytes) { parts_.push_back({std::move(label), bytes}); }
  const std::vector<Part>& parts() const { return parts_; }
  // The sum of the parts (overflowed when any part or the sum is).
  CheckedInt64 total() const;
  // "label 1.00 GiB + label 2.00 GiB", in the order added.
  std::string ToString() const;

  // OK when total() fits in budget.bytes. Otherwise ResourceExhausted:
  //   "<what> needs at least 1.20 TiB of memory but 22.4 GiB is available (MemAvailable; set
  //    GRPO_MEMORY_LIMIT_MB to plan for another budget); largest part: <label> (...); all: ..."
  absl::Status Check(std::string_view what, const MemoryBudget& budget) const;
  absl::Status Check(std::string_view what) const { return Check(what, MemoryBudget::Available()); }

 private:
  std::vector<Part> parts_;
};

// Hands the memory the allocator keeps after frees back to the system (glibc's malloc_trim over
// every arena). The allocator keeps freed small blocks for reuse; after a request of hundreds
// of MB of small strings (a reward batch) the process would otherwise hold that peak for its
// lifetime. Services call it after a large request; it costs about a millisecond per GiB held.
void ReturnFreedMemoryToSystem();

}  // namespace grpo

#endif  // GRPO_CORE_MEMORY_PLAN_H_
