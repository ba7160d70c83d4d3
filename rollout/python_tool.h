// A Python tool for multi-turn rollouts (rollout/environment.h): the body of a call is a Python 3
// program, run in a sandbox (sandbox/pool.h: own namespaces, no network, read-only system,
// seccomp, rlimits, a deadline), and what it prints is the result the model sees.
//
// Output: the program's stdout, then, when it failed, the tail of its stderr (a traceback's last
// lines, at most max_output_bytes / 2), within max_output_bytes ("...[output cut]" marks a cut); "error: timed out after S s" or
// "error: killed by signal N" when it did not finish. A sandbox that cannot be set up on this
// machine is MakePythonEnvironment's error; a later failure to start one (say, out of processes)
// is the call's output, "error: the sandbox failed: ...".
#ifndef GRPO_ROLLOUT_PYTHON_TOOL_H_
#define GRPO_ROLLOUT_PYTHON_TOOL_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/status.h"
#include "rollout/environment.h"
#include "sandbox/sandbox.h"

namespace grpo {

// A call is a fenced python block, the result a fenced output block.
inline ToolTags PythonToolTags() { return {"```python\n", "\n```", "```output\n", "\n```\n"}; }

struct PythonToolOptions {
  ToolTags tags = PythonToolTags();
  std::string python = "/usr/bin/python3";
  sandbox::Isolation isolation = sandbox::Isolation::kNamespaces;
  absl::Duration timeout = absl::Seconds(5);  // per call, wall clock (CPU seconds: the same, rounded up)
  int64_t memory_mb = 256;                    // address space
  size_t max_output_bytes = 1024;
  int pool_size = 2;                          // warm sandboxes
};

// InvalidArgument for bad options; the sandbox's setup error (FailedPrecondition) where it cannot
// run on this machine. The environment is thread-safe (the pool is).
absl::StatusOr<std::unique_ptr<Environment>> MakePythonEnvironment(PythonToolOptions options = {});

}  // namespace grpo

#endif  // GRPO_ROLLOUT_PYTHON_TOOL_H_
