// CpuDevices (model/ops/registry.h): what `grpo info` says about the host CPU.
#include <cblas.h>
#include <sched.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/memory_plan.h"
#include "model/ops/registry.h"

namespace grpo {
namespace {

// The value of the first "key<spaces>: value" line of a /proc file, or "".
std::string ProcValue(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = line.substr(0, colon);
    if (name.find_last_not_of(" \t") + 1 != key.size()) continue;  // "model name" vs "model"
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "";
}

int UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  return CPU_COUNT(&set);
}

}  // namespace

std::vector<DeviceInfo> CpuDevices() {
  DeviceInfo cpu;
  cpu.id = "cpu";
  cpu.name = ProcValue("/proc/cpuinfo", "model name");
  if (cpu.name.empty()) cpu.name = "unknown CPU model";
  cpu.details = std::to_string(UsableCores()) + " cores usable (" +
                std::to_string(std::thread::hardware_concurrency()) + " online)";
  const std::string total_kb = ProcValue("/proc/meminfo", "MemTotal");  // "24683784 kB"
  if (const long long kb = std::strtoll(total_kb.c_str(), nullptr, 10); kb > 0) {
    cpu.details += ", memory " + FormatBytes(kb * 1024) + " total";
  }
  const MemoryBudget budget = MemoryBudget::Available();
  cpu.details += ", " + FormatBytes(budget.bytes) + " available (" + budget.source + ")";
  cpu.details += std::string(", ") + openblas_get_config();
  return {cpu};
}

}  // namespace grpo
