// Internal to sandbox/: what the sandboxed child does between clone and exec. Everything the
// child needs is prepared by the host before the clone (strings, the seccomp program, buffers),
// so the child makes system calls only: the host is multi-threaded, and after a fork only
// async-signal-safe calls are allowed.
#ifndef GRPO_SANDBOX_CHILD_H_
#define GRPO_SANDBOX_CHILD_H_

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sandbox/sandbox.h"

namespace grpo::sandbox::internal {

// One step of building the sandbox's file system, run in order.
struct MountStep {
  enum Op { kPrivateRoot, kTmpfs, kMkdir, kTouch, kSymlink, kBindReadOnly, kBindDevice, kProc,
            kRemountReadOnly, kPivotRoot, kEnterRoot };
  Op op;
  std::string a;  // target path (or symlink target, or tmpfs options for kTmpfs: see b)
  std::string b;  // second path (bind destination, symlink path, pivot put_old, tmpfs options)
};

// The job as the host sends it on the control socket: a header carrying the job's descriptors
// (SCM_RIGHTS, in the order of fd_to), then argc argv strings and envc env strings, each
// NUL-terminated.
struct JobHeader {
  uint32_t magic;
  uint32_t payload_bytes;  // after this header
  uint32_t argc, envc;
  uint32_t fdc;                  // descriptors sent with the header
  int32_t fd_to[kMaxJobFds];     // where each goes in the program
  int64_t cpu_seconds, address_space_bytes, file_size_bytes, open_files, processes;
};
inline constexpr uint32_t kJobMagic = 0x53424a32;  // "SBJ2"
inline constexpr size_t kMaxJobBytes = size_t{1} << 20;
inline constexpr size_t kMaxJobStrings = 8192;

struct ChildPlan {
  bool namespaces = true;
  bool drop_groups = true;      // setgroups(0) (allowed only when the host is root)
  uid_t uid = 0;                // the id to run as (inside the namespaces, or on the host)
  gid_t gid = 0;
  std::vector<MountStep> steps;
  std::string hostname = "sandbox";
  std::string workdir = "/tmp";
  // Host fds and where they go; control (a socket) and report get the two numbers after the
  // highest.
  std::vector<int> fd_from, fd_to;
  int control_fd = -1, report_fd = -1;
  sock_fprog filter{};
  // Preallocated for the job (the child must not allocate).
  char* job_buffer = nullptr;
  char** job_strings = nullptr;
};

// How the program ended, as PID 1 reports it.
struct ExitReport {
  char tag;  // 'S'
  int32_t status;  // wait status
  int64_t user_us, system_us;
};

// Runs in the child (which becomes PID 1 of the sandbox and runs the program as its child);
// never returns. Report protocol on report_fd: 'R' when ready for the job; then 'X' once the
// program has exec'd, then an ExitReport when it ends. 'E' + message on a failure at any point
// (then the child exits with 127).
[[noreturn]] void ChildMain(const ChildPlan& plan);

}  // namespace grpo::sandbox::internal

#endif  // GRPO_SANDBOX_CHILD_H_
