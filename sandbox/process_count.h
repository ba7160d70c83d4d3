// Test support: counting the host processes a sandbox left behind.
#ifndef GRPO_SANDBOX_PROCESS_COUNT_H_
#define GRPO_SANDBOX_PROCESS_COUNT_H_

#include <cstdint>

namespace grpo::sandbox {

// Live processes (zombies excluded) whose real uid is `uid`, read from /proc. Tests give their
// sandboxes an outside uid no other process has, so this counts exactly what they left running.
int LiveProcessesOfUid(int64_t uid);

// LiveProcessesOfUid once it is 0, or after about 2 s: a sandbox's processes are reaped in the
// background after its run returns, so they may take a moment to disappear.
int LiveProcessesOfUidAfterAMoment(int64_t uid);

}  // namespace grpo::sandbox

#endif  // GRPO_SANDBOX_PROCESS_COUNT_H_
