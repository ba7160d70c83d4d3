#include "core/memory_plan.h"

#include <malloc.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

namespace grpo {

void ReturnFreedMemoryToSystem() { malloc_trim(0); }

namespace {

constexpr const char* kLimitVar = "GRPO_MEMORY_LIMIT_MB";

// The value in kB of `key` ("MemAvailable:", "VmSize:") in a /proc file; -1 when absent.
int64_t ProcKb(const char* path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    std::istringstream in(line.substr(key.size()));
    int64_t kb = -1;
    in >> kb;
    return in ? kb : -1;
  }
  return -1;
}

// A whole file holding one non-negative number; -1 when absent or "max".
int64_t FileNumber(const char* path) {
  std::ifstream f(path);
  int64_t v = -1;
  if (!(f >> v) || v < 0) return -1;
  return v;
}

}  // namespace

std::string FormatBytes(int64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit + 1 < 6) {
    v /= 1024;
    ++unit;
  }
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.2f %s", v, kUnits[unit]);
  return buf;
}

MemoryBudget MemoryBudget::Available() {
  if (const char* env = std::getenv(kLimitVar); env != nullptr && *env != '\0') {
    errno = 0;
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    const CheckedInt64 bytes = CheckedInt64(mb) * (int64_t{1} << 20);
    if (errno != 0 || *end != '\0' || mb < 0 || bytes.overflowed()) {
      return {0, std::string(kLimitVar) + "='" + env + "' is not a number of MiB"};
    }
    return {bytes.value(), std::string(kLimitVar) + "=" + env};
  }
  MemoryBudget b;
  if (const int64_t kb = ProcKb("/proc/meminfo", "MemAvailable:"); kb >= 0) {
    b = {(CheckedInt64(kb) * 1024).value(), "MemAvailable"};
  } else {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    b = {pages > 0 && page > 0 ? (CheckedInt64(pages) * page).value() : 0, "available physical pages"};
  }
  const int64_t cg_max = FileNumber("/sys/fs/cgroup/memory.max");
  const int64_t cg_cur = FileNumber("/sys/fs/cgroup/memory.current");
  if (cg_max >= 0 && cg_cur >= 0) {
    const int64_t left = cg_max > cg_cur ? cg_max - cg_cur : 0;
    if (left < b.bytes) b = {left, "cgroup memory.max less memory.current"};
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    const int64_t used_kb = ProcKb("/proc/self/status", "VmSize:");
    const CheckedInt64 limit = CheckedInt64(rl.rlim_cur);
    const CheckedInt64 used = CheckedInt64(used_kb > 0 ? used_kb : 0) * 1024;
    const int64_t left = limit.value() > used.value() ? (limit - used).value() : 0;
    if (left < b.bytes) b = {left, "RLIMIT_AS less the address space in use"};
  }
  return b;
}

CheckedInt64 MemoryPlan::total() const {
  CheckedInt64 t = 0;
  for (const Part& p : parts_) t += p.bytes;
  return t;
}

std::string MemoryPlan::ToString() const {
  std::string s;
  for (const Part& p : parts_) {
    if (!s.empty()) s += " + ";
    s += p.label + " " + (p.bytes.overflowed() ? "(overflows 64 bits)" : FormatBytes(p.bytes.value()));
  }
  return s;
}

absl::Status MemoryPlan::Check(std::string_view what, const MemoryBudget& budget) const {
  const CheckedInt64 need = total();
  if (!need.overflowed() && need.value() <= budget.bytes) return absl::OkStatus();
  const Part* largest = nullptr;
  for (const Part& p : parts_) {
    if (largest == nullptr || p.bytes.value() > largest->bytes.value()) largest = &p;
  }
  std::string msg(what);
  msg += need.overflowed() ? " needs more memory than 64-bit sizes can count"
                           : " needs at least " + FormatBytes(need.value()) + " of memory";
  msg += " but " + FormatBytes(budget.bytes) + " is available (" + budget.source;
  if (budget.source.rfind(kLimitVar, 0) != 0) msg += std::string("; ") + kLimitVar + " sets another budget";
  msg += ")";
  if (largest != nullptr) {
    msg += "; largest part: " + largest->label + " " +
           (largest->bytes.overflowed() ? "(overflows 64 bits)" : FormatBytes(largest->bytes.value()));
    if (parts_.size() > 1) msg += "; all: " + ToString();
  }
  return absl::ResourceExhaustedError(msg);
}

}  // namespace grpo
