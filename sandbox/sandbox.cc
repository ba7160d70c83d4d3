#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "sandbox/child.h"
#include "sandbox/fork_thread.h"
#include "sandbox/seccomp_policy.h"

namespace grpo::sandbox {
namespace {

using internal::MountStep;

constexpr int kNamespaceFlags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
                                CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
constexpr uid_t kNobody = 65534;
constexpr absl::Duration kSetupTimeout = absl::Seconds(10);

int MsLeft(absl::Time deadline) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()), 0, 1 << 30));
}

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

const std::vector<sock_filter>* Filter(bool weak) {
  static const auto* filters = [] {
    auto* f = new std::vector<absl::StatusOr<std::vector<sock_filter>>>;
    f->push_back(BuildSeccompFilter(false));
    f->push_back(BuildSeccompFilter(true));
    return f;
  }();
  const auto& r = (*filters)[weak ? 1 : 0];
  return r.ok() ? &*r : nullptr;
}

// ---- the read-only view ----

bool ValidInsidePath(const std::string& p) {
  return !p.empty() && p[0] == '/' && p.find("/../") == std::string::npos &&
         !absl::EndsWith(p, "/..") && p != "/";
}

void AddParents(const std::string& inside, std::vector<MountStep>* steps) {
  for (size_t i = inside.find('/', 1); i != std::string::npos; i = inside.find('/', i + 1))
    steps->push_back({MountStep::kMkdir, "/new" + inside.substr(0, i), ""});
}

// Binds `host` (resolved) at `inside`; a symlink at the top is recreated as a symlink.
absl::Status AddBind(const std::string& host, const std::string& inside, bool keep_symlink,
                     std::vector<MountStep>* steps) {
  struct stat st;
  if (::lstat(host.c_str(), &st) != 0) return ErrnoError("sandbox bind " + host, errno);
  AddParents(inside, steps);
  if (keep_symlink && S_ISLNK(st.st_mode)) {
    char target[PATH_MAX];
    ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
    if (n < 0) return ErrnoError("readlink " + host, errno);
    steps->push_back({MountStep::kSymlink, std::string(target, static_cast<size_t>(n)), "/new" + inside});
    return absl::OkStatus();
  }
  char real[PATH_MAX];
  if (!::realpath(host.c_str(), real)) return ErrnoError("sandbox bind " + host, errno);
  if (::stat(real, &st) != 0) return ErrnoError("sandbox bind " + host, errno);
  steps->push_back({S_ISDIR(st.st_mode) ? MountStep::kMkdir : MountStep::kTouch, "/new" + inside, ""});
  steps->push_back({MountStep::kBindReadOnly, std::string("/old") + real, "/new" + inside});
  return absl::OkStatus();
}

absl::StatusOr<std::vector<MountStep>> MountPlan(const Config& c) {
  std::vector<MountStep> s = {
      {MountStep::kPrivateRoot, "", ""},
      {MountStep::kTmpfs, "/tmp", "size=1m,mode=0755"},
      {MountStep::kMkdir, "/tmp/old", ""},
      {MountStep::kMkdir, "/tmp/new", ""},
      {MountStep::kPivotRoot, "/tmp", "/tmp/old"},
      {MountStep::kTmpfs, "/new", "size=1m,mode=0755"},
  };
  struct stat st;
  for (const std::string& d : c.system_dirs) {
    if (::lstat(d.c_str(), &st) != 0) continue;  // not on this host
    GRPO_RETURN_IF_ERROR(AddBind(d, d, /*keep_symlink=*/true, &s));
  }
  s.push_back({MountStep::kMkdir, "/new/etc", ""});
  for (const std::string& f : c.etc_files) {
    if (::lstat(f.c_str(), &st) != 0) continue;
    GRPO_RETURN_IF_ERROR(AddBind(f, f, /*keep_symlink=*/true, &s));
  }
  for (const Bind& b : c.binds) {
    if (!ValidInsidePath(b.inside))
      return absl::InvalidArgumentError("sandbox bind: inside path '" + b.inside + "' must be absolute");
    GRPO_RETURN_IF_ERROR(AddBind(b.host, b.inside, /*keep_symlink=*/false, &s));
  }
  s.push_back({MountStep::kMkdir, "/new/dev", ""});
  s.push_back({MountStep::kTmpfs, "/new/dev", "size=64k,mode=0755"});
  for (const char* dev : {"null", "zero", "full", "random", "urandom"}) {
    s.push_back({MountStep::kTouch, absl::StrCat("/new/dev/", dev), ""});
    s.push_back({MountStep::kBindDevice, absl::StrCat("/old/dev/", dev), absl::StrCat("/new/dev/", dev)});
  }
  s.push_back({MountStep::kSymlink, "/proc/self/fd", "/new/dev/fd"});
  s.push_back({MountStep::kSymlink, "/proc/self/fd/0", "/new/dev/stdin"});
  s.push_back({MountStep::kSymlink, "/proc/self/fd/1", "/new/dev/stdout"});
  s.push_back({MountStep::kSymlink, "/proc/self/fd/2", "/new/dev/stderr"});
  s.push_back({MountStep::kRemountReadOnly, "/new/dev", ""});
  s.push_back({MountStep::kMkdir, "/new/proc", ""});
  s.push_back({MountStep::kProc, "/new/proc", ""});
  s.push_back({MountStep::kMkdir, "/new/tmp", ""});
  s.push_back({MountStep::kTmpfs, "/new/tmp",
               absl::StrCat("size=", c.scratch_bytes, ",mode=0700,uid=", kInsideId, ",gid=", kInsideId)});
  s.push_back({MountStep::kRemountReadOnly, "/new", ""});
  s.push_back({MountStep::kEnterRoot, "/new", ""});
  return s;
}

// ---- identities ----

struct OutsideIds {
  uid_t uid;
  gid_t gid;
};

OutsideIds Outside(const Config& c) {
  if (c.outside_uid >= 0)
    return {static_cast<uid_t>(c.outside_uid), static_cast<gid_t>(c.outside_uid)};
  if (::geteuid() == 0) return {kNobody, kNobody};
  return {::geteuid(), ::getegid()};
}

absl::Status WriteProcFile(pid_t pid, const char* name, const std::string& text) {
  std::string path = absl::StrCat("/proc/", pid, "/", name);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path, errno);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return ErrnoError("write " + path, err);
  return absl::OkStatus();
}

// Root maps inside 0 to itself only so that the setup code can build the view (create mount
// points on its tmpfs, reach bind sources under private directories); the program runs as
// kInsideId with no capabilities, nosuid mounts and no_new_privs, so it cannot become 0.
absl::Status WriteIdMaps(pid_t pid, OutsideIds o) {
  const bool root = ::geteuid() == 0;
  if (root) {
    GRPO_RETURN_IF_ERROR(WriteProcFile(pid, "uid_map", absl::StrCat("0 0 1\n", kInsideId, " ", o.uid, " 1\n")));
    return WriteProcFile(pid, "gid_map", absl::StrCat("0 0 1\n", kInsideId, " ", o.gid, " 1\n"));
  }
  GRPO_RETURN_IF_ERROR(WriteProcFile(pid, "uid_map", absl::StrCat(kInsideId, " ", o.uid, " 1\n")));
  GRPO_RETURN_IF_ERROR(WriteProcFile(pid, "setgroups", "deny"));
  return WriteProcFile(pid, "gid_map", absl::StrCat(kInsideId, " ", o.gid, " 1\n"));
}

absl::Status NamespaceError(const char* what, int err) {
  return absl::FailedPreconditionError(absl::StrCat(
      "sandbox: user namespaces are unavailable on this host: ", what, " failed: ", strerror(err),
      " (typical causes: kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0, or a "
      "container's seccomp/AppArmor profile that forbids them); configure sandbox isolation "
      "'weak' to run without namespaces (docs/sandbox.md)"));
}

// ---- host side I/O ----

// Reads `n` bytes from the report pipe by the deadline; fewer at EOF.
absl::StatusOr<std::string> ReadReportBytes(int fd, size_t n, absl::Time deadline) {
  std::string got;
  char buf[512];
  while (got.size() < n) {
    pollfd p{fd, POLLIN, 0};
    int left = MsLeft(deadline);
    int ready = ::poll(&p, 1, left);
    if (ready < 0 && errno != EINTR) return ErrnoError("poll", errno);
    if (ready <= 0 || p.revents == 0) {
      if (left == 0) return absl::DeadlineExceededError("sandbox: no report in time");
      continue;
    }
    ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - got.size()));
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
  }
  return got;
}

// The next message from the sandbox's PID 1: its tag ("" at EOF); for 'E' the message after it.
absl::StatusOr<std::string> ReadReport(int fd, absl::Time deadline) {
  absl::StatusOr<std::string> tag = ReadReportBytes(fd, 1, deadline);
  if (!tag.ok() || *tag != "E") return tag;
  absl::StatusOr<std::string> rest = ReadReportBytes(fd, 4096, deadline);
  if (!rest.ok()) return rest;
  return "E" + *rest;
}

// The program's end as PID 1 reported it, waiting until the deadline; false when none came.
bool ReadExit(int fd, absl::Time deadline, internal::ExitReport* out) {
  absl::StatusOr<std::string> got = ReadReportBytes(fd, sizeof *out, deadline);
  if (!got.ok() || got->size() != sizeof *out || (*got)[0] != 'S') return false;
  memcpy(out, got->data(), sizeof *out);
  return true;
}

// Writes `data` to the control socket (no SIGPIPE when the sandbox is gone).
absl::Status SendAll(int fd, std::string_view data) {
  size_t at = 0;
  while (at < data.size()) {
    ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("sandbox: sending the job", errno);
    at += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Sends `header` with the job's descriptors attached (SCM_RIGHTS), then the rest of it.
absl::Status SendWithFds(int fd, std::string_view header, const std::vector<PassedFd>& fds) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxJobFds)] = {};
  iovec iov{const_cast<char*>(header.data()), header.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    for (size_t i = 0; i < fds.size(); ++i) memcpy(CMSG_DATA(c) + i * sizeof(int), &fds[i].host, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return ErrnoError("sandbox: sending the job", errno);
  return SendAll(fd, header.substr(static_cast<size_t>(n)));
}

// A job's descriptors: few, open, at distinct numbers >= 3 that the Config's fds do not use.
absl::Status CheckJobFds(const std::vector<PassedFd>& fds, const std::vector<int>& config_fds) {
  if (fds.size() > kMaxJobFds)
    return absl::InvalidArgumentError(absl::StrCat("sandbox job: ", fds.size(), " fds; at most ", kMaxJobFds));
  for (size_t i = 0; i < fds.size(); ++i) {
    const PassedFd& f = fds[i];
    bool reused = std::find(config_fds.begin(), config_fds.end(), f.inside) != config_fds.end();
    for (size_t j = 0; j < i; ++j) reused = reused || fds[j].inside == f.inside;
    if (f.inside < 3 || f.inside > 1000 || reused)
      return absl::InvalidArgumentError(absl::StrCat("sandbox job: fd ", f.inside,
                                                     " inside must be in [3, 1000] and used once"));
    if (f.host < 0 || ::fcntl(f.host, F_GETFD) < 0)
      return absl::InvalidArgumentError(absl::StrCat("sandbox job: host fd ", f.host, " is not open"));
  }
  return absl::OkStatus();
}

std::string DescribeStatus(int st) {
  if (WIFSIGNALED(st)) return absl::StrCat("killed by signal ", WTERMSIG(st), " (", strsignal(WTERMSIG(st)), ")");
  if (WIFEXITED(st)) return absl::StrCat("exited with code ", WEXITSTATUS(st));
  return "ended";
}

// Reaps killed sandboxes off the caller's path: tearing down a sandbox's namespaces (its mount
// namespace waits for an RCU grace period) takes milliseconds after its program has ended.
class Reaper {
 public:
  static Reaper& Get() {
    static Reaper* r = new Reaper;  // never destroyed
    return *r;
  }
  void Add(pid_t pid) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    pids_.push_back(pid);
  }

 private:
  Reaper() { std::thread([this] { Loop(); }).detach(); }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !pids_.empty(); }
  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    for (;;) {
      pid_t pid;
      {
        absl::MutexLock l(&mu_, absl::Condition(this, &Reaper::HasWork));
        pid = pids_.front();
        pids_.pop_front();
      }
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  absl::Mutex mu_;
  std::deque<pid_t> pids_ ABSL_GUARDED_BY(mu_);
};

struct Pipe {
  int r = -1, w = -1;
};

absl::Status MakePipe(Pipe* p) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe", errno);
  p->r = fds[0];
  p->w = fds[1];
  return absl::OkStatus();
}

// A connected socket pair (r: the sandbox's end, w: the host's), which can carry descriptors.
absl::Status MakeSocketPair(Pipe* p) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return ErrnoError("socketpair", errno);
  p->r = fds[0];
  p->w = fds[1];
  return absl::OkStatus();
}

// write() to the program's stdin, whose reader may be gone (a program that exits without
// reading it): EPIPE, never a SIGPIPE that would end the host. SIGPIPE of a pipe write goes to
// the writing thread, so blocking it here and taking back the one the write raised suffices,
// without changing the process's disposition.
ssize_t WriteWithoutSigpipe(int fd, const char* data, size_t n) {
  sigset_t pipe_only, old, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE);
  ssize_t w = ::write(fd, data, n);
  const int err = errno;
  if (w < 0 && err == EPIPE && !was_pending) {
    const timespec now{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &now) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return w;
}

// Reads what is there into `out` up to `cap`, dropping the rest; false at EOF.
bool Drain(int fd, std::string* out, size_t cap, bool* truncated) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EAGAIN;
    if (n == 0) return false;
    size_t room = cap > out->size() ? cap - out->size() : 0;
    size_t keep = std::min(room, static_cast<size_t>(n));
    out->append(buf, keep);
    if (keep < static_cast<size_t>(n)) *truncated = true;
  }
}

}  // namespace

absl::StatusOr<Isolation> ParseIsolation(std::string_view name) {
  if (name == "namespaces") return Isolation::kNamespaces;
  if (name == "weak") return Isolation::kWeak;
  return absl::InvalidArgumentError("sandbox isolation '" + std::string(name) + "': expected namespaces or weak");
}

absl::StatusOr<std::unique_ptr<Sandbox>> Sandbox::Create(const Config& config) {
  const bool ns = config.isolation == Isolation::kNamespaces;
  const std::vector<sock_filter>* filter = Filter(!ns);
  if (!filter) return absl::InternalError("sandbox: building the seccomp filter failed");
  std::unique_ptr<Sandbox> sb(new Sandbox);
  sb->isolation_ = config.isolation;
  const OutsideIds outside = Outside(config);

  internal::ChildPlan plan;
  plan.namespaces = ns;
  plan.drop_groups = ::geteuid() == 0;
  plan.filter = sock_fprog{static_cast<unsigned short>(filter->size()), const_cast<sock_filter*>(filter->data())};
  if (ns) {
    GRPO_ASSIGN_OR_RETURN(plan.steps, MountPlan(config));
    plan.uid = plan.gid = kInsideId;
  } else {
    char dir[] = "/tmp/grpo-sandbox-XXXXXX";
    if (!::mkdtemp(dir)) return ErrnoError("sandbox: mkdtemp", errno);
    sb->scratch_dir_ = dir;
    plan.workdir = dir;
    plan.uid = ::geteuid() == 0 ? outside.uid : ::geteuid();
    plan.gid = ::geteuid() == 0 ? outside.gid : ::getegid();
    if (::geteuid() == 0 && ::chown(dir, plan.uid, plan.gid) != 0) return ErrnoError("chown scratch", errno);
  }
  for (const PassedFd& f : config.fds) {
    if (f.inside < 3 || f.inside > 1000 || f.host < 0)
      return absl::InvalidArgumentError(absl::StrCat("sandbox: passed fd ", f.host, " -> ", f.inside, " is not valid"));
  }
  if (config.fds.size() > 32) return absl::InvalidArgumentError("sandbox: at most 32 passed fds");
  for (const PassedFd& f : config.fds) sb->config_fds_.push_back(f.inside);

  Pipe control, report, in, out, err;
  int devnull = -1;
  auto close_all = [&] {
    for (Pipe* p : {&control, &report, &in, &out, &err}) {
      CloseFd(&p->r);
      CloseFd(&p->w);
    }
    CloseFd(&devnull);
  };
  absl::Status st = MakeSocketPair(&control);
  if (st.ok()) st = MakePipe(&report);
  if (st.ok() && config.capture_output) st = MakePipe(&in);
  if (st.ok() && config.capture_output) st = MakePipe(&out);
  if (st.ok() && config.capture_output) st = MakePipe(&err);
  if (st.ok() && !config.capture_output) {
    devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) st = ErrnoError("open /dev/null", errno);
  }
  if (!st.ok()) {
    close_all();
    return st;
  }
  plan.fd_from = config.capture_output ? std::vector<int>{in.r, out.w, err.w}
                                       : std::vector<int>{devnull, devnull, devnull};
  plan.fd_to = {0, 1, 2};
  for (const PassedFd& f : config.fds) {
    plan.fd_from.push_back(f.host);
    plan.fd_to.push_back(f.inside);
  }
  plan.control_fd = control.r;
  plan.report_fd = report.w;
  std::vector<char> job_buffer(internal::kMaxJobBytes);
  std::vector<char*> job_strings(internal::kMaxJobStrings);
  plan.job_buffer = job_buffer.data();
  plan.job_strings = job_strings.data();

  pid_t pid = -1;
  int clone_errno = 0;
  const unsigned long flags = (ns ? kNamespaceFlags : 0) | SIGCHLD;
  internal::RunOnForkThread([&] {
    pid = static_cast<pid_t>(::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr));
    clone_errno = errno;
    if (pid == 0) internal::ChildMain(plan);
  });
  if (pid < 0) {
    close_all();
    if (ns && (clone_errno == EPERM || clone_errno == EINVAL || clone_errno == ENOSPC || clone_errno == EUSERS))
      return NamespaceError("clone(CLONE_NEWUSER|CLONE_NEWPID|...)", clone_errno);
    return ErrnoError("sandbox: clone", clone_errno);
  }
  sb->pid_ = pid;
  sb->control_fd_ = control.w;
  sb->report_fd_ = report.r;
  control.w = report.r = -1;
  sb->stdin_fd_ = in.w;
  sb->stdout_fd_ = out.r;
  sb->stderr_fd_ = err.r;
  in.w = out.r = err.r = -1;
  close_all();

  if (ns) {
    if (absl::Status m = WriteIdMaps(pid, outside); !m.ok()) return NamespaceError(std::string(m.message()).c_str(), EPERM);
  }
  GRPO_RETURN_IF_ERROR(SendAll(sb->control_fd_, "M"));
  GRPO_ASSIGN_OR_RETURN(std::string ready, ReadReport(sb->report_fd_, absl::Now() + kSetupTimeout));
  if (ready != "R") {
    std::string how = sb->KillAndReap();
    if (ready.size() > 1 && ready[0] == 'E') return absl::InternalError("sandbox setup: " + ready.substr(1));
    return absl::InternalError("sandbox setup: the sandbox " + how);
  }
  return sb;
}

Sandbox::~Sandbox() {
  if (pid_ > 0) KillAndReap();
  for (int* fd : {&control_fd_, &report_fd_, &stdin_fd_, &stdout_fd_, &stderr_fd_}) CloseFd(fd);
  if (!scratch_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch_dir_, ec);
  }
}

absl::Status Sandbox::SendJob(const Job& job) {
  if (used_) return absl::FailedPreconditionError("sandbox: already used (one job per sandbox)");
  used_ = true;
  if (job.argv.empty() || job.argv[0].empty() || job.argv[0][0] != '/')
    return absl::InvalidArgumentError("sandbox job: argv[0] must be an absolute path inside the sandbox");
  GRPO_RETURN_IF_ERROR(CheckJobFds(job.fds, config_fds_));
  internal::JobHeader h{};
  h.magic = internal::kJobMagic;
  h.argc = static_cast<uint32_t>(job.argv.size());
  h.envc = static_cast<uint32_t>(job.env.size());
  h.fdc = static_cast<uint32_t>(job.fds.size());
  for (size_t i = 0; i < job.fds.size(); ++i) h.fd_to[i] = job.fds[i].inside;
  h.cpu_seconds = job.limits.cpu_seconds;
  h.address_space_bytes = static_cast<int64_t>(job.limits.address_space_bytes);
  h.file_size_bytes = static_cast<int64_t>(job.limits.file_size_bytes);
  h.open_files = job.limits.open_files;
  h.processes = job.limits.processes;
  std::string payload;
  for (const auto* list : {&job.argv, &job.env}) {
    for (const std::string& s : *list) {
      if (s.find('\0') != std::string::npos)
        return absl::InvalidArgumentError("sandbox job: an argument or variable contains a NUL byte");
      payload.append(s).push_back('\0');
    }
  }
  if (payload.size() + sizeof h > internal::kMaxJobBytes ||
      job.argv.size() + job.env.size() + 2 > internal::kMaxJobStrings)
    return absl::InvalidArgumentError(absl::StrCat("sandbox job: arguments and environment exceed ",
                                                   internal::kMaxJobBytes, " bytes"));
  h.payload_bytes = static_cast<uint32_t>(payload.size());
  GRPO_RETURN_IF_ERROR(SendWithFds(control_fd_, std::string_view(reinterpret_cast<const char*>(&h), sizeof h), job.fds));
  return SendAll(control_fd_, payload);
}

absl::Status Sandbox::WaitExec() {
  GRPO_ASSIGN_OR_RETURN(std::string report, ReadReport(report_fd_, absl::Now() + kSetupTimeout));
  CloseFd(&control_fd_);
  if (report == "X") return absl::OkStatus();  // the program runs
  std::string how = KillAndReap();
  if (!report.empty() && report[0] == 'E') return absl::InvalidArgumentError("sandbox: " + report.substr(1));
  return absl::InternalError("sandbox: the sandbox " + how + " before its program started");
}

absl::Status Sandbox::Start(const Job& job) {
  GRPO_RETURN_IF_ERROR(SendJob(job));
  return WaitExec();
}

absl::StatusOr<Result> Sandbox::Run(const Job& job) {
  if (stdout_fd_ < 0) return absl::FailedPreconditionError("sandbox: Run needs capture_output");
  Result r;
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + job.deadline;
  GRPO_RETURN_IF_ERROR(Start(job));
  for (int fd : {stdin_fd_, stdout_fd_, stderr_fd_}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  size_t stdin_at = 0;
  if (job.stdin_data.empty()) CloseFd(&stdin_fd_);
  bool ended = false;
  internal::ExitReport exit{};
  bool reported = false;
  while (stdout_fd_ >= 0 || stderr_fd_ >= 0 || !ended) {
    pollfd p[4] = {{stdout_fd_, POLLIN, 0}, {stderr_fd_, POLLIN, 0}, {stdin_fd_, POLLOUT, 0},
                   {ended ? -1 : report_fd_, POLLIN, 0}};
    int left = MsLeft(deadline);
    if (left == 0) {
      r.timed_out = true;
      break;
    }
    if (::poll(p, 4, left) < 0 && errno != EINTR) break;
    if (p[0].revents && !Drain(stdout_fd_, &r.stdout_data, job.stdout_cap, &r.stdout_truncated)) CloseFd(&stdout_fd_);
    if (p[1].revents && !Drain(stderr_fd_, &r.stderr_data, job.stderr_cap, &r.stderr_truncated)) CloseFd(&stderr_fd_);
    if (p[2].revents) {
      ssize_t n = WriteWithoutSigpipe(stdin_fd_, job.stdin_data.data() + stdin_at, job.stdin_data.size() - stdin_at);
      if (n > 0) stdin_at += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || stdin_at == job.stdin_data.size()) CloseFd(&stdin_fd_);
    }
    if (p[3].revents) {  // the program ended (or PID 1 died)
      ended = true;
      reported = ReadExit(report_fd_, absl::Now() + absl::Seconds(1), &exit);
      // Its leftovers hold the pipes: end them now (PID 1 is exiting anyway).
      ::kill(isolation_ == Isolation::kWeak ? -pid_ : pid_, SIGKILL);
    }
  }
  if (isolation_ == Isolation::kWeak) ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);  // ended or past its deadline: either way nothing of it may go on
  Reaper::Get().Add(pid_);
  pid_ = -1;
  r.wall_time = absl::Now() - start;
  if (reported) {
    if (WIFEXITED(exit.status)) r.exit_code = WEXITSTATUS(exit.status);
    if (WIFSIGNALED(exit.status)) r.signal = WTERMSIG(exit.status);
    r.cpu_time = absl::Microseconds(exit.user_us + exit.system_us);
  } else {
    r.signal = SIGKILL;  // killed at the deadline, or its PID 1 was
  }
  return r;
}

std::string Sandbox::KillAndReap() {
  if (pid_ <= 0) return "ended";
  if (isolation_ == Isolation::kWeak) ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  if (isolation_ == Isolation::kWeak) ::kill(-pid_, SIGKILL);
  pid_ = -1;
  internal::ExitReport exit{};  // the program's own end, when PID 1 saw it before dying
  if (report_fd_ >= 0 && ReadExit(report_fd_, absl::Now(), &exit)) return DescribeStatus(exit.status);
  return DescribeStatus(st);
}

std::string Sandbox::Reap(absl::Duration grace) {
  if (pid_ <= 0) return "ended";
  internal::ExitReport exit{};
  if (report_fd_ >= 0 && ReadExit(report_fd_, absl::Now() + grace, &exit)) {
    KillAndReap();
    return DescribeStatus(exit.status);
  }
  return KillAndReap();
}

absl::StatusOr<int> SealedMemfd(const std::string& bytes) {
  int fd = ::memfd_create("grpo-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoError("memfd_create", errno);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError("write memfd", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError("seal memfd", err);
  }
  return fd;
}

absl::StatusOr<Result> Run(const Config& config, const Job& job) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<Sandbox> sb, Sandbox::Create(config));
  return sb->Run(job);
}

absl::Status CheckNamespacesAvailable() {
  Config c;
  c.capture_output = true;
  return Sandbox::Create(c).status();
}

}  // namespace grpo::sandbox
