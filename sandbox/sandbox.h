// A sandbox for untrusted code (generated programs, reward plugins): one process tree with no
// way out. docs/sandbox.md says what it isolates and what it does not.
//
// Contract (Isolation::kNamespaces, the default):
//  - The process runs in its own user, PID, mount, network, IPC and UTS namespaces. Inside it
//    is uid/gid kInsideId (1000) with no capabilities; outside it is `outside_uid` (the
//    caller's uid, or 65534 "nobody" when the caller is root), so the host's file permissions
//    apply to it as to an unprivileged user.
//  - Its file system is a new root: read-only binds of the system directories and a few /etc
//    files, the extra read-only `binds`, a fresh /proc of its own PID namespace, a /dev with
//    null, zero, full, random and urandom, and a private tmpfs of `scratch_bytes` at /tmp,
//    which is its working directory and HOME. Nothing else of the host is visible.
//  - Its network namespace has no interface up: no network at all.
//  - A seccomp filter (sandbox/seccomp_policy.h) refuses ptrace, mount, modules, keyctl, bpf,
//    perf_event_open, kexec, reboot, setns/unshare, namespace clones and sockets other than
//    AF_UNIX with EPERM.
//  - rlimits from Limits (CPU seconds, address space, file size, open files, processes).
//  - The program is PID 1 of its namespace: when it exits or is killed (deadline, Kill), the
//    kernel kills every process it left behind. The sandbox dies with its creator
//    (PR_SET_PDEATHSIG).
//  - It holds only fds 0, 1, 2 (pipes to the host, or /dev/null), the Config's `fds` and the
//    Job's `fds`. A job's descriptors travel with the job over the control socket (SCM_RIGHTS),
//    so a sandbox built before the job (sandbox::Pool) can receive them.
//
// Isolation::kWeak runs without namespaces (for hosts that forbid user namespaces, where
// kNamespaces fails with FailedPrecondition naming the reason): rlimits, seccomp (which then
// also refuses setsid/setpgid so no child leaves the group), a process group killed as a whole,
// uid `outside_uid` when started as root, fds closed, a fresh scratch directory as cwd. The
// file system and the network of the host stay visible to it.
#ifndef GRPO_SANDBOX_SANDBOX_H_
#define GRPO_SANDBOX_SANDBOX_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"

namespace grpo::sandbox {

inline constexpr uid_t kInsideId = 1000;
inline constexpr size_t kMaxJobFds = 8;  // descriptors one Job may carry

enum class Isolation { kNamespaces, kWeak };

// "namespaces" or "weak" -> Isolation; anything else is InvalidArgument.
absl::StatusOr<Isolation> ParseIsolation(std::string_view name);

struct Limits {
  int cpu_seconds = 10;
  uint64_t address_space_bytes = uint64_t{1} << 30;
  uint64_t file_size_bytes = uint64_t{16} << 20;
  int open_files = 64;
  int processes = 64;
};

// A host file or directory visible read-only inside the sandbox at `inside` (absolute).
struct Bind {
  std::string host;
  std::string inside;
};

// A host descriptor the sandboxed process gets as descriptor `inside` (>= 3).
struct PassedFd {
  int host = -1;
  int inside = -1;
};

struct Config {
  Isolation isolation = Isolation::kNamespaces;
  // Host directories bound read-only at the same path (symlinks such as /bin -> usr/bin are
  // recreated as symlinks). Missing ones are skipped.
  std::vector<std::string> system_dirs = {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"};
  // Files and directories of /etc bound read-only (Debian's alternatives hold library links).
  std::vector<std::string> etc_files = {"/etc/ld.so.cache", "/etc/alternatives", "/etc/passwd",
                                        "/etc/group", "/etc/nsswitch.conf", "/etc/hosts",
                                        "/etc/localtime"};
  std::vector<Bind> binds;
  uint64_t scratch_bytes = uint64_t{64} << 20;
  // -1: the caller's uid, or 65534 when the caller is root.
  int64_t outside_uid = -1;
  // true: fds 0, 1, 2 are pipes to the host (Run); false: /dev/null (Start).
  bool capture_output = true;
  std::vector<PassedFd> fds;
};

struct Job {
  std::vector<std::string> argv;  // argv[0]: absolute path inside the sandbox
  std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"};
  std::string stdin_data;
  absl::Duration deadline = absl::Seconds(10);  // wall clock, from the start of Run
  Limits limits;
  size_t stdout_cap = size_t{1} << 20;  // bytes kept; the rest is read and dropped
  size_t stderr_cap = size_t{64} << 10;
  // Host descriptors the program gets, sent with the job: at most kMaxJobFds, `inside` >= 3,
  // distinct and not one of the Config's fds. The host keeps (and closes) its own copies, and
  // what the job does to the open file (its content, unless sealed; offset, flags, locks) the
  // host and every other holder see: see SealedMemfd.
  std::vector<PassedFd> fds;
};

struct Result {
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it (SIGKILL after a deadline)
  bool timed_out = false;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::string stdout_data;
  std::string stderr_data;
  absl::Duration wall_time;
  absl::Duration cpu_time;  // user + system of the program
  bool exited_ok() const { return !timed_out && signal == 0 && exit_code == 0; }
};

// One prepared sandbox: namespaces and file system are set up when Create returns, and the
// process waits for its one job. Not thread-safe; single use.
class Sandbox {
 public:
  // FailedPrecondition when the kernel refuses a namespace (the message names which and why).
  static absl::StatusOr<std::unique_ptr<Sandbox>> Create(const Config& config);
  ~Sandbox();  // kills what is still running and reaps it

  // Runs the job to the end (or its deadline) with output captured (config.capture_output).
  absl::StatusOr<Result> Run(const Job& job);
  // Starts the job and returns once it has exec'd; the caller watches pid() and Kill()s it.
  absl::Status Start(const Job& job);
  pid_t pid() const { return pid_; }
  // SIGKILL to the whole sandbox, then reaps it; returns how it ended ("exited with code 3").
  std::string KillAndReap();
  // Reaps a process that ended by itself, giving it `grace` first; then as KillAndReap.
  std::string Reap(absl::Duration grace);

 private:
  Sandbox() = default;
  absl::Status SendJob(const Job& job);
  absl::Status WaitExec();

  Isolation isolation_ = Isolation::kNamespaces;
  pid_t pid_ = -1;
  int control_fd_ = -1;  // host -> sandbox (a socket): maps written, then the job and its fds
  int report_fd_ = -1;   // sandbox -> host: ready, errors; EOF at exec
  int stdin_fd_ = -1, stdout_fd_ = -1, stderr_fd_ = -1;
  std::vector<int> config_fds_;  // inside numbers of Config::fds (a job's fds may not reuse them)
  std::string scratch_dir_;  // weak mode only: removed on destruction
  bool used_ = false;
};

// A memfd holding `bytes` (close-on-exec) whose content nobody can change: sealed against
// writes, growing, shrinking and further seals. For Job::fds: a program a job executes as
// /proc/self/fd/N (a compiled binary), or data it reads. Jobs given the same descriptor still
// share its inode and open file: its mode (which a job running as the file's owner, the host's
// uid when the host is not root, can chmod), offset, flags and locks. Where one hostile job
// must not reach the next, give each job its own. The caller owns the descriptor.
absl::StatusOr<int> SealedMemfd(const std::string& bytes);

// Creates a sandbox and runs one job in it.
absl::StatusOr<Result> Run(const Config& config, const Job& job);

// Whether this host lets us create the namespaces kNamespaces needs; the error names the reason.
absl::Status CheckNamespacesAvailable();

}  // namespace grpo::sandbox

#endif  // GRPO_SANDBOX_SANDBOX_H_
