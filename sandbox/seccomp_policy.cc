#include "sandbox/seccomp_policy.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

namespace grpo::sandbox {
namespace {

constexpr const char* kRefused[] = {
    "ptrace",          "process_vm_readv", "process_vm_writev", "kcmp",
    "pidfd_getfd",     "mount",            "umount2",           "pivot_root",
    "chroot",          "open_tree",        "move_mount",        "fsopen",
    "fsconfig",        "fsmount",          "fspick",            "mount_setattr",
    "init_module",     "finit_module",     "delete_module",     "kexec_load",
    "kexec_file_load", "reboot",           "keyctl",            "add_key",
    "request_key",     "bpf",              "perf_event_open",   "userfaultfd",
    "io_uring_setup",  "setns",            "unshare",           "swapon",
    "swapoff",         "syslog",           "acct",              "quotactl",
    "settimeofday",    "clock_settime",    "clock_adjtime",     "adjtimex",
    "iopl",            "ioperm",           "open_by_handle_at", "name_to_handle_at",
    "lookup_dcookie",  "vhangup",
};

constexpr uint64_t kNamespaceFlags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                                     CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_NEWTIME;

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(static_cast<scmp_filter_ctx>(ctx)); }
};

absl::Status Add(scmp_filter_ctx ctx, uint32_t action, const char* name, unsigned n,
                 const scmp_arg_cmp* args) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return absl::OkStatus();  // not on this architecture
  int rc = seccomp_rule_add_array(ctx, action, nr, n, args);
  if (rc < 0) return ErrnoError(std::string("seccomp_rule_add ") + name, -rc);
  return absl::OkStatus();
}

absl::Status AddRules(scmp_filter_ctx ctx, bool forbid_new_session) {
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kRefused) GRPO_RETURN_IF_ERROR(Add(ctx, eperm, name, 0, nullptr));
  GRPO_RETURN_IF_ERROR(Add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, nullptr));
  // clone: refuse when any namespace bit is set (one rule per bit; rules of one call are ORed).
  for (uint64_t bit = 1; bit != 0 && bit <= kNamespaceFlags; bit <<= 1) {
    if (!(kNamespaceFlags & bit)) continue;
    scmp_arg_cmp has_bit = SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit);
    GRPO_RETURN_IF_ERROR(Add(ctx, eperm, "clone", 1, &has_bit));
  }
  for (const char* name : {"socket", "socketpair"}) {
    scmp_arg_cmp not_unix = SCMP_A0(SCMP_CMP_NE, AF_UNIX);
    GRPO_RETURN_IF_ERROR(Add(ctx, eperm, name, 1, &not_unix));
  }
  scmp_arg_cmp tiocsti = SCMP_A1(SCMP_CMP_EQ, TIOCSTI);
  GRPO_RETURN_IF_ERROR(Add(ctx, eperm, "ioctl", 1, &tiocsti));
  if (forbid_new_session) {
    for (const char* name : {"setsid", "setpgid"})
      GRPO_RETURN_IF_ERROR(Add(ctx, eperm, name, 0, nullptr));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<sock_filter>> BuildSeccompFilter(bool forbid_new_session) {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return absl::InternalError("seccomp_init failed");
  // The filter is installed by our own prctl after PR_SET_NO_NEW_PRIVS.
  seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  GRPO_RETURN_IF_ERROR(AddRules(ctx.get(), forbid_new_session));
  int fd = ::memfd_create("seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) return ErrnoError("memfd_create", errno);
  int rc = seccomp_export_bpf(ctx.get(), fd);
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (rc < 0 || size <= 0 || size % sizeof(sock_filter) != 0) {
    ::close(fd);
    return absl::InternalError("seccomp_export_bpf failed: " + std::to_string(rc));
  }
  std::vector<sock_filter> prog(static_cast<size_t>(size) / sizeof(sock_filter));
  ssize_t got = ::pread(fd, prog.data(), static_cast<size_t>(size), 0);
  ::close(fd);
  if (got != size) return absl::InternalError("reading the exported seccomp filter failed");
  return prog;
}

}  // namespace grpo::sandbox
