#include "sandbox/seccomp_policy.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace grpo::sandbox {
namespace {

// Installs the filter in a child process; returns 0, or the number of the first check that failed.
int CheckInChild(bool forbid_new_session) {
  absl::StatusOr<std::vector<sock_filter>> f = BuildSeccompFilter(forbid_new_session);
  if (!f.ok() || f->empty()) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    sock_fprog prog{static_cast<unsigned short>(f->size()), f->data()};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      _exit(2);
    auto refused = [](long rc) { return rc == -1 && errno == EPERM; };
    if (!refused(mount("none", "/tmp", "tmpfs", 0, nullptr))) _exit(4);
    if (!refused(socket(AF_INET, SOCK_STREAM, 0))) _exit(5);
    if (!refused(socket(AF_INET6, SOCK_DGRAM, 0))) _exit(6);
    if (socket(AF_UNIX, SOCK_STREAM, 0) < 0) _exit(7);
    if (!refused(unshare(CLONE_NEWNET))) _exit(8);
    if (!refused(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0))) _exit(9);
    if (!refused(syscall(SYS_ptrace, 16, getppid(), 0, 0))) _exit(10);  // PTRACE_ATTACH
    if (!(syscall(SYS_clone3, nullptr, 0) == -1 && errno == ENOSYS)) _exit(11);
    pid_t kid = fork();  // a plain fork still works
    if (kid == 0) _exit(0);
    if (kid < 0 || waitpid(kid, nullptr, 0) != kid) _exit(12);
    if (forbid_new_session != refused(setsid())) _exit(13);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 3;
}

TEST(SeccompPolicy, RefusesWhatCodeUnderTestNeverNeeds) {
  EXPECT_EQ(CheckInChild(false), 0);
  EXPECT_EQ(CheckInChild(true), 0);
}

}  // namespace
}  // namespace grpo::sandbox
