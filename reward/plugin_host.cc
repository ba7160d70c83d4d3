#include "reward/plugin_host.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "reward/plugin_wire.h"
#include "reward/plugin_worker.h"

namespace grpo::reward {

struct PluginRule::Worker {
  pid_t pid = -1;
  int to_fd = -1;
  int from_fd = -1;
};

namespace {

int MsLeft(absl::Time deadline) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()), 0, 1 << 30));
}

// Reaps a worker that is dead or must die, and says how it ended.
std::string Reap(PluginRule::Worker* w, bool kill_first) {
  std::string how = "worker ended";
  if (w->pid > 0) {
    if (kill_first) ::kill(w->pid, SIGKILL);
    int st = 0;
    pid_t r;
    // A worker whose pipe closed is exiting; give it a moment before forcing it.
    for (int i = 0; i < 50; ++i) {
      r = ::waitpid(w->pid, &st, WNOHANG);
      if (r != 0) break;
      ::usleep(2000);
    }
    if (r == 0) {
      ::kill(w->pid, SIGKILL);
      r = ::waitpid(w->pid, &st, 0);
    }
    if (r == w->pid) {
      if (WIFSIGNALED(st)) {
        how = std::string("worker killed by signal ") + std::to_string(WTERMSIG(st)) + " (" +
              strsignal(WTERMSIG(st)) + ")";
      } else if (WIFEXITED(st)) {
        how = "worker exited with code " + std::to_string(WEXITSTATUS(st));
      }
    }
  }
  if (w->to_fd >= 0) ::close(w->to_fd);
  if (w->from_fd >= 0) ::close(w->from_fd);
  w->pid = -1;
  w->to_fd = w->from_fd = -1;
  return how;
}

absl::Status WriteWithDeadline(int fd, std::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return absl::UnavailableError("plugin worker pipe closed");
    pollfd p{fd, POLLOUT, 0};
    int left = MsLeft(deadline);
    if (left == 0) return absl::DeadlineExceededError("plugin did not read its input in time");
    ::poll(&p, 1, left);
  }
  return absl::Status();
}

absl::Status ReadWithDeadline(int fd, char* buf, size_t n, absl::Time deadline) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return absl::UnavailableError("plugin worker closed its output");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return absl::UnavailableError("plugin worker pipe broken");
    pollfd p{fd, POLLIN, 0};
    int left = MsLeft(deadline);
    if (left == 0) return absl::DeadlineExceededError("deadline");
    ::poll(&p, 1, left);
  }
  return absl::Status();
}

absl::StatusOr<wire::Reply> ReadReply(int fd, absl::Time deadline) {
  char hdr[4];
  GRPO_RETURN_IF_ERROR(ReadWithDeadline(fd, hdr, 4, deadline));
  uint32_t n = static_cast<unsigned char>(hdr[0]) | (static_cast<unsigned char>(hdr[1]) << 8) |
               (static_cast<unsigned char>(hdr[2]) << 16) |
               (static_cast<uint32_t>(static_cast<unsigned char>(hdr[3])) << 24);
  if (n > wire::kMaxFrameBytes) return absl::DataLossError("plugin reply too large");
  std::string payload(n, '\0');
  GRPO_RETURN_IF_ERROR(ReadWithDeadline(fd, payload.data(), n, deadline));
  return wire::DecodeReply(payload);
}

// The one thread that forks workers. PR_SET_PDEATHSIG fires when the *thread* that forked the
// child exits, not only the process: a worker forked by a short-lived caller thread (a gRPC
// handler thread, a test's thread) would be SIGKILLed while other threads still use it. This
// thread lives as long as the process and blocks every signal (the server waits for
// SIGTERM/SIGINT with sigwait in another thread).
class ForkThread {
 public:
  static ForkThread& Get() {
    static ForkThread* t = new ForkThread;  // never destroyed: workers must outlive every caller
    return *t;
  }
  // Runs `fn` on the fork thread; returns when it has returned.
  void Run(const std::function<void()>& fn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_, absl::Condition(this, &ForkThread::Free));
    job_ = &fn;
    done_ = false;
    mu_.Await(absl::Condition(&done_));
    job_ = nullptr;
  }

 private:
  ForkThread() { std::thread([this] { Loop(); }).detach(); }
  bool Free() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return job_ == nullptr; }
  bool Pending() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return job_ != nullptr && !done_; }
  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    for (;;) {
      const std::function<void()>* fn;
      {
        absl::MutexLock l(&mu_, absl::Condition(this, &ForkThread::Pending));
        fn = job_;
      }
      (*fn)();  // the caller waits in Run, so *fn stays valid
      absl::MutexLock l(&mu_);
      done_ = true;
    }
  }

  absl::Mutex mu_;
  const std::function<void()>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// Starts a worker and reads its hello. On failure the worker is reaped.
absl::Status Spawn(PluginRule::Worker* w, const PluginOptions& o, std::string* hello) {
  int req[2], rep[2];
  if (::pipe2(req, O_CLOEXEC) != 0) return grpo::ErrnoError("pipe", errno);
  if (::pipe2(rep, O_CLOEXEC) != 0) {
    ::close(req[0]);
    ::close(req[1]);
    return grpo::ErrnoError("pipe", errno);
  }
  std::vector<std::string> args = o.worker_argv;
  args.insert(args.end(), {"--plugin", o.path, "--config", o.config_json});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  rlim_t mem = static_cast<rlim_t>(o.memory_mb) << 20;
  pid_t parent = ::getpid();

  pid_t pid = -1;
  int fork_errno = 0;
  ForkThread::Get().Run([&] {
    pid = ::fork();
    fork_errno = errno;
    if (pid != 0) return;
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;  // the server blocks SIGTERM/SIGINT in its threads; a worker must not
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = ::fcntl(req[0], F_DUPFD, 10), out = ::fcntl(rep[1], F_DUPFD, 10);
    if (in < 0 || out < 0 || ::dup2(in, kRequestFd) < 0 || ::dup2(out, kReplyFd) < 0) ::_exit(125);
    rlimit lim{mem, mem};
    ::setrlimit(RLIMIT_AS, &lim);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  });
  if (pid < 0) {
    for (int fd : {req[0], req[1], rep[0], rep[1]}) ::close(fd);
    return grpo::ErrnoError("fork", fork_errno);
  }
  ::close(req[0]);
  ::close(rep[1]);
  w->pid = pid;
  w->to_fd = req[1];
  w->from_fd = rep[0];
  ::fcntl(w->to_fd, F_SETFL, O_NONBLOCK);
  ::fcntl(w->from_fd, F_SETFL, O_NONBLOCK);
  absl::StatusOr<wire::Reply> r = ReadReply(w->from_fd, absl::Now() + o.startup_timeout);
  if (!r.ok()) {
    bool timeout = r.status().code() == absl::StatusCode::kDeadlineExceeded;
    std::string how = Reap(w, timeout);
    return absl::UnavailableError("plugin " + o.path + ": worker '" + o.worker_argv.front() +
                               "' did not start: " + (timeout ? "no hello in time" : how));
  }
  if (r->kind != wire::ReplyKind::kOk) {
    Reap(w, false);
    return absl::InvalidArgumentError("plugin " + o.path + ": " + r->message);
  }
  *hello = r->message;
  return absl::Status();
}

}  // namespace

std::vector<std::string> SelfWorkerArgv() { return {"/proc/self/exe", "reward", "plugin-worker"}; }

PluginRule::PluginRule(PluginOptions options) : options_(std::move(options)) {}

PluginRule::~PluginRule() {
  for (auto& w : workers_) Reap(w.get(), true);
}

absl::StatusOr<std::unique_ptr<PluginRule>> PluginRule::Create(PluginOptions options) {
  if (options.path.empty()) return absl::InvalidArgumentError("plugin: path is required");
  if (options.worker_argv.empty()) return absl::InvalidArgumentError("plugin: no worker command");
  if (options.timeout <= absl::ZeroDuration() || options.workers <= 0 || options.memory_mb <= 0)
    return absl::InvalidArgumentError("plugin: timeout, workers and memory_mb must be > 0");
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<PluginRule> rule(new PluginRule(std::move(options)));
  auto w = std::make_unique<Worker>();
  std::string hello;
  GRPO_RETURN_IF_ERROR(Spawn(w.get(), rule->options_, &hello));
  size_t tab = hello.find('\t');
  rule->plugin_name_ = hello.substr(0, tab);
  rule->description_ = tab == std::string::npos ? hello : hello.substr(tab + 1);
  {
    absl::MutexLock l(&rule->mu_);
    rule->started_ = 1;
    rule->idle_.push_back(w.get());
    rule->workers_.push_back(std::move(w));
  }
  return rule;
}

int PluginRule::workers_started() const {
  absl::MutexLock l(&mu_);
  return started_;
}

bool PluginRule::CanAcquire() const {
  return !idle_.empty() || static_cast<int>(workers_.size()) < options_.workers;
}

absl::StatusOr<PluginRule::Worker*> PluginRule::Acquire() const {
  Worker* w;
  {
    absl::MutexLock l(&mu_, absl::Condition(this, &PluginRule::CanAcquire));
    if (!idle_.empty()) {
      w = idle_.back();
      idle_.pop_back();
    } else {
      workers_.push_back(std::make_unique<Worker>());
      w = workers_.back().get();
    }
    if (w->pid >= 0) return w;
    ++started_;
  }
  std::string hello;  // a fresh worker, started outside the lock
  if (absl::Status st = Spawn(w, options_, &hello); !st.ok()) {
    Release(w);
    return st;
  }
  return w;
}

void PluginRule::Release(Worker* w) const {
  absl::MutexLock l(&mu_);  // a caller waiting in Acquire wakes on release (CanAcquire)
  idle_.push_back(w);
}

absl::StatusOr<RuleOutput> PluginRule::Score(const RewardItem& item) const {
  GRPO_ASSIGN_OR_RETURN(Worker * w, Acquire());
  const absl::Time deadline = absl::Now() + options_.timeout;
  absl::Status st = WriteWithDeadline(w->to_fd, wire::Frame(wire::EncodeRequest(item)), deadline);
  absl::StatusOr<wire::Reply> reply = st.ok() ? ReadReply(w->from_fd, deadline) : absl::StatusOr<wire::Reply>(st);
  if (!reply.ok()) {
    bool timeout = reply.status().code() == absl::StatusCode::kDeadlineExceeded;
    std::string how = Reap(w, timeout);
    Release(w);
    if (timeout)
      return absl::DeadlineExceededError(absl::StrCat("plugin ", plugin_name_, " took longer than ",
                                                      absl::FormatDuration(options_.timeout), "; worker killed"));
    return absl::UnavailableError("plugin " + plugin_name_ + " crashed: " + how);
  }
  Release(w);
  if (reply->kind != wire::ReplyKind::kOk)
    return absl::InvalidArgumentError("plugin " + plugin_name_ + ": " + reply->message);
  if (!std::isfinite(reply->score))
    return absl::InvalidArgumentError("plugin " + plugin_name_ + " returned a non-finite score");
  RuleOutput out;
  out.score = reply->score;
  out.detail = reply->message;
  return out;
}

}  // namespace grpo::reward
