#include "sandbox/process_count.h"

#include <dirent.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace grpo::sandbox {

int LiveProcessesOfUid(int64_t uid) {
  int n = 0;
  DIR* d = opendir("/proc");
  if (d == nullptr) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("State:", 0) == 0 && line.find('Z') != std::string::npos) break;  // dead
      if (line.rfind("Uid:", 0) == 0) {
        std::istringstream fields(line.substr(4));
        int64_t real = -1;
        fields >> real;
        n += real == uid;
        break;
      }
    }
  }
  closedir(d);
  return n;
}

int LiveProcessesOfUidAfterAMoment(int64_t uid) {
  int n = LiveProcessesOfUid(uid);
  for (int i = 0; i < 200 && n > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    n = LiveProcessesOfUid(uid);
  }
  return n;
}

}  // namespace grpo::sandbox
