#include "sandbox/child.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/wait.h>

namespace grpo::sandbox::internal {
namespace {

// ---- reporting without allocation ----

void WriteStr(int fd, const char* s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = ::write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

[[noreturn]] void Fail(int report_fd, const char* what, const char* path, int err) {
  char num[16];
  int i = sizeof num - 1;
  num[i] = '\0';
  unsigned v = static_cast<unsigned>(err);
  do {
    num[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && i > 0);
  WriteStr(report_fd, "E");
  WriteStr(report_fd, what);
  if (path && *path) {
    WriteStr(report_fd, " ");
    WriteStr(report_fd, path);
  }
  WriteStr(report_fd, ": ");
  const char* text = strerrordesc_np(err);  // static English text: no locale, no allocation
  WriteStr(report_fd, text ? text : "error");
  WriteStr(report_fd, " (errno ");
  WriteStr(report_fd, num + i);
  WriteStr(report_fd, ")");
  ::_exit(127);
}

bool ReadFull(int fd, char* buf, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Reads `n` bytes from the control socket into `buf`, collecting the descriptors that came
// with them into fds[0..*nfds) (close-on-exec). More than kMaxJobFds, or a truncated control
// message, is a failure. False at EOF.
bool RecvWithFds(int fd, char* buf, size_t n, int* fds, size_t* nfds, int report) {
  *nfds = 0;
  while (n > 0) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxJobFds)];
    iovec iov{buf, n};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int got;
        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
        if (*nfds == kMaxJobFds) Fail(report, "job", "too many descriptors", EINVAL);
        fds[(*nfds)++] = got;
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) Fail(report, "job", "descriptors truncated", EMSGSIZE);
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// ---- descriptors ----

void ArrangeFds(const ChildPlan& p, int* control, int* report) {
  int top = 2;
  for (int to : p.fd_to) top = to > top ? to : top;
  const int ctl_to = top + 1, rep_to = top + 2, scratch_from = top + 3;
  int tmp[64];
  size_t n = p.fd_from.size();
  for (size_t i = 0; i < n; ++i) tmp[i] = ::fcntl(p.fd_from[i], F_DUPFD_CLOEXEC, scratch_from);
  int ctl = ::fcntl(p.control_fd, F_DUPFD_CLOEXEC, scratch_from);
  int rep = ::fcntl(p.report_fd, F_DUPFD_CLOEXEC, scratch_from);
  if (rep < 0 || ::dup3(rep, rep_to, O_CLOEXEC) < 0) ::_exit(126);
  if (ctl < 0 || ::dup3(ctl, ctl_to, O_CLOEXEC) < 0) Fail(rep_to, "dup", "control", errno);
  for (size_t i = 0; i < n; ++i) {
    if (tmp[i] < 0 || ::dup2(tmp[i], p.fd_to[i]) < 0) Fail(rep_to, "dup", "passed fd", errno);
  }
  // Everything else the host had open is gone from here on.
  for (int fd = 0; fd <= top; ++fd) {
    bool kept = false;
    for (int to : p.fd_to) kept = kept || to == fd;
    if (!kept) ::close(fd);
  }
  ::syscall(SYS_close_range, static_cast<unsigned>(scratch_from), ~0U, 0U);
  *control = ctl_to;
  *report = rep_to;
}

// ---- file system ----

// The flags a bind's remount must keep (the kernel refuses to clear locked ones).
unsigned long LockedFlags(const char* path) {
  struct statfs st;
  if (::syscall(SYS_statfs, path, &st) != 0) return 0;
  unsigned long f = 0;
  if (st.f_flags & ST_NOSUID) f |= MS_NOSUID;
  if (st.f_flags & ST_NODEV) f |= MS_NODEV;
  if (st.f_flags & ST_NOEXEC) f |= MS_NOEXEC;
  if (st.f_flags & ST_NOATIME) f |= MS_NOATIME;
  if (st.f_flags & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (st.f_flags & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

void RunStep(const MountStep& s, int report) {
  const char* a = s.a.c_str();
  const char* b = s.b.c_str();
  switch (s.op) {
    case MountStep::kPrivateRoot:
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        Fail(report, "make / private", "", errno);
      return;
    case MountStep::kTmpfs:
      if (::mount("tmpfs", a, "tmpfs", MS_NOSUID | MS_NODEV, b) != 0)
        Fail(report, "mount tmpfs on", a, errno);
      return;
    case MountStep::kMkdir:
      if (::mkdir(a, 0755) != 0 && errno != EEXIST) Fail(report, "mkdir", a, errno);
      return;
    case MountStep::kTouch: {
      int fd = ::open(a, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) Fail(report, "create", a, errno);
      ::close(fd);
      return;
    }
    case MountStep::kSymlink:
      if (::symlink(a, b) != 0) Fail(report, "symlink", b, errno);
      return;
    case MountStep::kBindReadOnly:
    case MountStep::kBindDevice: {
      if (::mount(a, b, nullptr, MS_BIND | MS_REC, nullptr) != 0) Fail(report, "bind", a, errno);
      unsigned long f = MS_REMOUNT | MS_BIND | MS_NOSUID | LockedFlags(b);
      if (s.op == MountStep::kBindReadOnly) f |= MS_RDONLY | MS_NODEV;
      if (::mount(nullptr, b, nullptr, f, nullptr) != 0) Fail(report, "remount read-only", b, errno);
      return;
    }
    case MountStep::kProc:
      if (::mount("proc", a, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        Fail(report, "mount proc on", a, errno);
      return;
    case MountStep::kRemountReadOnly:
      if (::mount(nullptr, a, nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0)
        Fail(report, "remount read-only", a, errno);
      return;
    case MountStep::kPivotRoot:
      if (::syscall(SYS_pivot_root, a, b) != 0) Fail(report, "pivot_root to", a, errno);
      if (::chdir("/") != 0) Fail(report, "chdir", "/", errno);
      return;
    case MountStep::kEnterRoot:  // the new root replaces the old one, which is then detached
      if (::chdir(a) != 0) Fail(report, "chdir", a, errno);
      if (::syscall(SYS_pivot_root, ".", ".") != 0) Fail(report, "pivot_root to", a, errno);
      if (::umount2(".", MNT_DETACH) != 0) Fail(report, "detach old root", "", errno);
      if (::chdir("/") != 0) Fail(report, "chdir", "/", errno);
      return;
  }
}

// ---- identity and privileges ----

// Raw system calls: glibc's setresuid & co. change the ids of every thread of the process,
// taking locks that another thread of the host may have held at the clone (a deadlock here).
void BecomeUnprivileged(const ChildPlan& p, int report) {
  if (p.drop_groups && ::syscall(SYS_setgroups, 0, nullptr) != 0) Fail(report, "setgroups", "", errno);
  if (::syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0) Fail(report, "setresgid", "", errno);
  if (::syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0) Fail(report, "setresuid", "", errno);
}

void DropCapabilities(int report) {
  for (int cap = 0; cap <= 63; ++cap) ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);  // EINVAL past last
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &hdr, data) != 0) Fail(report, "capset", "", errno);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail(report, "no_new_privs", "", errno);
}

void ResetSignals() {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // fails for KILL/STOP
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void SetLimit(int resource, int64_t value, int64_t hard_extra, int report) {
  if (value < 0) return;
  rlimit lim{static_cast<rlim_t>(value), static_cast<rlim_t>(value + hard_extra)};
  if (::setrlimit(resource, &lim) != 0) Fail(report, "setrlimit", "", errno);
}

// ---- the job ----

struct ParsedJob {
  const JobHeader* header;
  char** argv;
  char** envp;
  int fds[kMaxJobFds];  // as received; header->fd_to says where each goes
};

bool ValidFdTargets(const JobHeader& h) {
  for (uint32_t i = 0; i < h.fdc; ++i) {
    if (h.fd_to[i] < 3 || h.fd_to[i] > 1000) return false;
  }
  return true;
}

ParsedJob ReadJob(const ChildPlan& p, int control, int report) {
  char* buf = p.job_buffer;
  ParsedJob job{};
  size_t nfds = 0;
  if (!RecvWithFds(control, buf, sizeof(JobHeader), job.fds, &nfds, report)) ::_exit(0);  // the host let go of us
  const auto* h = reinterpret_cast<const JobHeader*>(buf);
  if (h->magic != kJobMagic || h->payload_bytes > kMaxJobBytes - sizeof(JobHeader) ||
      h->argc == 0 || size_t{h->argc} + h->envc + 2 > kMaxJobStrings)
    Fail(report, "job", "malformed", EINVAL);
  if (h->fdc != nfds || !ValidFdTargets(*h)) Fail(report, "job", "descriptors", EINVAL);
  char* payload = buf + sizeof(JobHeader);
  if (!ReadFull(control, payload, h->payload_bytes)) Fail(report, "job", "truncated", EIO);
  char** strs = p.job_strings;  // argv..., NULL, env..., NULL
  size_t at = 0;
  auto next = [&](size_t slot) {
    if (at >= h->payload_bytes) Fail(report, "job", "strings", EINVAL);
    strs[slot] = payload + at;
    size_t len = strnlen(payload + at, h->payload_bytes - at);
    if (at + len >= h->payload_bytes) Fail(report, "job", "unterminated string", EINVAL);
    at += len + 1;
  };
  for (size_t i = 0; i < h->argc; ++i) next(i);
  strs[h->argc] = nullptr;
  for (size_t i = 0; i < h->envc; ++i) next(h->argc + 1 + i);
  strs[h->argc + 1 + h->envc] = nullptr;
  job.header = h;
  job.argv = strs;
  job.envp = strs + h->argc + 1;
  return job;
}

}  // namespace

namespace {

// Puts the job's descriptors at their numbers: first every one (and the exec report) above
// all numbers involved, close-on-exec, then each to its place. Returns the exec report's new
// number (the copies above vanish at the exec).
int PlaceJobFds(const ParsedJob& job, int exec_report) {
  const JobHeader& h = *job.header;
  int top = exec_report;
  for (uint32_t i = 0; i < h.fdc; ++i) {
    top = job.fds[i] > top ? job.fds[i] : top;
    top = h.fd_to[i] > top ? h.fd_to[i] : top;
  }
  const int report = ::fcntl(exec_report, F_DUPFD_CLOEXEC, top + 1);
  if (report < 0) Fail(exec_report, "dup", "exec report", errno);
  ::close(exec_report);
  int moved[kMaxJobFds];
  for (uint32_t i = 0; i < h.fdc; ++i) {
    moved[i] = ::fcntl(job.fds[i], F_DUPFD_CLOEXEC, top + 1);
    if (moved[i] < 0) Fail(report, "dup", "job fd", errno);
    ::close(job.fds[i]);
  }
  for (uint32_t i = 0; i < h.fdc; ++i) {
    if (::dup2(moved[i], h.fd_to[i]) < 0) Fail(report, "dup", "job fd", errno);  // not close-on-exec
  }
  return report;
}

// The program: PID 2 of the namespace (PID 1 is the init below).
[[noreturn]] void ExecProgram(const ChildPlan& p, const ParsedJob& job, int exec_pipe) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // weak isolation has no PID namespace to end it with PID 1
  const int exec_report = PlaceJobFds(job, exec_pipe);
  const JobHeader& h = *job.header;
  SetLimit(RLIMIT_CPU, h.cpu_seconds, 1, exec_report);
  SetLimit(RLIMIT_AS, h.address_space_bytes, 0, exec_report);
  SetLimit(RLIMIT_FSIZE, h.file_size_bytes, 0, exec_report);
  SetLimit(RLIMIT_NOFILE, h.open_files, 0, exec_report);
  SetLimit(RLIMIT_NPROC, h.processes, 0, exec_report);
  SetLimit(RLIMIT_CORE, 0, 0, exec_report);
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p.filter) != 0) Fail(exec_report, "seccomp", "", errno);
  ::execve(job.argv[0], job.argv, job.envp);
  Fail(exec_report, "exec", job.argv[0], errno);
}

void WriteExit(int report, int status, const rusage& ru) {
  ExitReport e{};
  e.tag = 'S';
  e.status = status;
  e.user_us = static_cast<int64_t>(ru.ru_utime.tv_sec) * 1000000 + ru.ru_utime.tv_usec;
  e.system_us = static_cast<int64_t>(ru.ru_stime.tv_sec) * 1000000 + ru.ru_stime.tv_usec;
  ssize_t ignored = ::write(report, &e, sizeof e);  // < PIPE_BUF: one atomic write
  (void)ignored;
}

// PID 1: starts the program, reaps everything, reports the program's end, and exits, which
// makes the kernel kill whatever the program left behind.
[[noreturn]] void Init(const ChildPlan& p, const ParsedJob& job, int report) {
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) Fail(report, "pipe", "", errno);
  long program = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (program < 0) Fail(report, "fork", "", errno);
  if (program == 0) {
    ::close(exec_pipe[0]);
    ::close(report);
    ExecProgram(p, job, exec_pipe[1]);
  }
  ::close(exec_pipe[1]);
  for (uint32_t i = 0; i < job.header->fdc; ++i) ::close(job.fds[i]);  // the program has them
  char why[512];
  size_t n = 0;
  for (;;) {  // EOF at a successful exec; otherwise the program's message until it exits
    ssize_t r = ::read(exec_pipe[0], why + n, sizeof why - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  if (n > 0) {
    why[n] = '\0';
    WriteStr(report, why);
    ::_exit(127);
  }
  WriteStr(report, "X");
  for (;;) {
    int st = 0;
    rusage ru{};
    pid_t w = ::wait4(-1, &st, 0, &ru);
    if (w == program) {
      WriteExit(report, st, ru);
      ::_exit(0);
    }
    if (w < 0 && errno != EINTR) ::_exit(0);
  }
}

}  // namespace

void ChildMain(const ChildPlan& p) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  int control = -1, report = -1;
  ArrangeFds(p, &control, &report);
  ResetSignals();
  char go;
  if (!ReadFull(control, &go, 1) || go != 'M') ::_exit(0);  // id maps are written
  if (p.namespaces) {
    for (const MountStep& s : p.steps) RunStep(s, report);
    if (::sethostname(p.hostname.data(), p.hostname.size()) != 0) Fail(report, "sethostname", "", errno);
  }
  if (::setsid() < 0) Fail(report, "setsid", "", errno);  // leaves the host's group and terminal
  if (p.uid != ::getuid() || p.namespaces) BecomeUnprivileged(p, report);
  if (::chdir(p.workdir.c_str()) != 0) Fail(report, "chdir", p.workdir.c_str(), errno);
  DropCapabilities(report);
  ::prctl(PR_SET_DUMPABLE, 0);  // the program runs as our uid: keep it out of our /proc/1/mem
  WriteStr(report, "R");

  ParsedJob job = ReadJob(p, control, report);
  ::close(control);
  Init(p, job, report);
}

}  // namespace grpo::sandbox::internal
