// The sandbox's system call filter, built with libseccomp and exported as a classic BPF
// program, so that the sandboxed child can install it with one prctl (no allocation after
// fork).
//
// Refused with EPERM (every architecture but the native one is killed):
//   ptrace, process_vm_readv/writev, kcmp, pidfd_getfd; mount, umount2, pivot_root, chroot,
//   the new mount API (open_tree, move_mount, fsopen, fsconfig, fsmount, fspick,
//   mount_setattr); init_module, finit_module, delete_module; kexec_load, kexec_file_load,
//   reboot; keyctl, add_key, request_key; bpf, perf_event_open, userfaultfd, io_uring_setup;
//   setns, unshare, and clone with any CLONE_NEW* flag; swapon, swapoff, syslog, acct,
//   quotactl, settimeofday, clock_settime, clock_adjtime, adjtimex, iopl, ioperm,
//   open_by_handle_at, name_to_handle_at, lookup_dcookie, vhangup;
//   socket and socketpair of every family but AF_UNIX; ioctl TIOCSTI.
//   clone3 gets ENOSYS (its flags live in memory a filter cannot read; libc falls back to
//   clone, whose flags it can).
// With `forbid_new_session` (weak isolation) setsid and setpgid are refused too, so no process
// leaves the process group the host kills.
#ifndef GRPO_SANDBOX_SECCOMP_POLICY_H_
#define GRPO_SANDBOX_SECCOMP_POLICY_H_

#include <linux/filter.h>

#include <vector>

#include "core/status.h"

namespace grpo::sandbox {

absl::StatusOr<std::vector<sock_filter>> BuildSeccompFilter(bool forbid_new_session);

}  // namespace grpo::sandbox

#endif  // GRPO_SANDBOX_SECCOMP_POLICY_H_
