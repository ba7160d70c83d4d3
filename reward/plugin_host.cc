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

#include <chrono>
#include <cmath>

#include "reward/plugin_wire.h"
#include "reward/plugin_worker.h"

namespace grpo::reward {

struct PluginRule::Worker {
  pid_t pid = -1;
  int to_fd = -1;
  int from_fd = -1;
};

namespace {

using Clock = std::chrono::steady_clock;

int MsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
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

Status WriteWithDeadline(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return Status::Unavailable("plugin worker pipe closed");
    pollfd p{fd, POLLOUT, 0};
    int left = MsLeft(deadline);
    if (left == 0) return Status::DeadlineExceeded("plugin did not read its input in time");
    ::poll(&p, 1, left);
  }
  return Status();
}

Status ReadWithDeadline(int fd, char* buf, size_t n, Clock::time_point deadline) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return Status::Unavailable("plugin worker closed its output");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Status::Unavailable("plugin worker pipe broken");
    pollfd p{fd, POLLIN, 0};
    int left = MsLeft(deadline);
    if (left == 0) return Status::DeadlineExceeded("deadline");
    ::poll(&p, 1, left);
  }
  return Status();
}

Result<wire::Reply> ReadReply(int fd, Clock::time_point deadline) {
  char hdr[4];
  GRPO_RETURN_IF_ERROR(ReadWithDeadline(fd, hdr, 4, deadline));
  uint32_t n = static_cast<unsigned char>(hdr[0]) | (static_cast<unsigned char>(hdr[1]) << 8) |
               (static_cast<unsigned char>(hdr[2]) << 16) |
               (static_cast<uint32_t>(static_cast<unsigned char>(hdr[3])) << 24);
  if (n > wire::kMaxFrameBytes) return Status::Corruption("plugin reply too large");
  std::string payload(n, '\0');
  GRPO_RETURN_IF_ERROR(ReadWithDeadline(fd, payload.data(), n, deadline));
  return wire::DecodeReply(payload);
}

// Starts a worker and reads its hello. On failure the worker is reaped.
Status Spawn(PluginRule::Worker* w, const PluginOptions& o, std::string* hello) {
  int req[2], rep[2];
  if (::pipe2(req, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  if (::pipe2(rep, O_CLOEXEC) != 0) {
    ::close(req[0]);
    ::close(req[1]);
    return Status::FromErrno("pipe", errno);
  }
  std::vector<std::string> args = o.worker_argv;
  args.insert(args.end(), {"--plugin", o.path, "--config", o.config_json});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  rlim_t mem = static_cast<rlim_t>(o.memory_mb) << 20;
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    for (int fd : {req[0], req[1], rep[0], rep[1]}) ::close(fd);
    return Status::FromErrno("fork", e);
  }
  if (pid == 0) {
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
  }
  ::close(req[0]);
  ::close(rep[1]);
  w->pid = pid;
  w->to_fd = req[1];
  w->from_fd = rep[0];
  ::fcntl(w->to_fd, F_SETFL, O_NONBLOCK);
  ::fcntl(w->from_fd, F_SETFL, O_NONBLOCK);
  Result<wire::Reply> r = ReadReply(w->from_fd, Clock::now() + std::chrono::milliseconds(o.startup_timeout_ms));
  if (!r.ok()) {
    bool timeout = r.status().code() == StatusCode::kDeadlineExceeded;
    std::string how = Reap(w, timeout);
    return Status::Unavailable("plugin " + o.path + ": worker '" + o.worker_argv.front() +
                               "' did not start: " + (timeout ? "no hello in time" : how));
  }
  if (r->kind != wire::ReplyKind::kOk) {
    Reap(w, false);
    return Status::InvalidArgument("plugin " + o.path + ": " + r->message);
  }
  *hello = r->message;
  return Status();
}

}  // namespace

std::vector<std::string> SelfWorkerArgv() { return {"/proc/self/exe", "reward", "plugin-worker"}; }

PluginRule::PluginRule(PluginOptions options) : options_(std::move(options)) {}

PluginRule::~PluginRule() {
  for (auto& w : workers_) Reap(w.get(), true);
}

Result<std::unique_ptr<PluginRule>> PluginRule::Create(PluginOptions options) {
  if (options.path.empty()) return Status::InvalidArgument("plugin: path is required");
  if (options.worker_argv.empty()) return Status::InvalidArgument("plugin: no worker command");
  if (options.timeout_ms <= 0 || options.workers <= 0 || options.memory_mb <= 0)
    return Status::InvalidArgument("plugin: timeout_ms, workers and memory_mb must be > 0");
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<PluginRule> rule(new PluginRule(std::move(options)));
  auto w = std::make_unique<Worker>();
  std::string hello;
  GRPO_RETURN_IF_ERROR(Spawn(w.get(), rule->options_, &hello));
  rule->started_ = 1;
  size_t tab = hello.find('\t');
  rule->plugin_name_ = hello.substr(0, tab);
  rule->description_ = tab == std::string::npos ? hello : hello.substr(tab + 1);
  rule->idle_.push_back(w.get());
  rule->workers_.push_back(std::move(w));
  return rule;
}

int PluginRule::workers_started() const {
  std::lock_guard<std::mutex> l(mu_);
  return started_;
}

Result<PluginRule::Worker*> PluginRule::Acquire() const {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !idle_.empty() || static_cast<int>(workers_.size()) < options_.workers; });
  Worker* w;
  if (!idle_.empty()) {
    w = idle_.back();
    idle_.pop_back();
  } else {
    workers_.push_back(std::make_unique<Worker>());
    w = workers_.back().get();
  }
  if (w->pid < 0) {
    ++started_;
    l.unlock();
    std::string hello;
    Status st = Spawn(w, options_, &hello);
    if (!st.ok()) {
      Release(w);
      return st;
    }
  }
  return w;
}

void PluginRule::Release(Worker* w) const {
  std::lock_guard<std::mutex> l(mu_);
  idle_.push_back(w);
  cv_.notify_one();
}

Result<RuleOutput> PluginRule::Score(const RewardItem& item) const {
  GRPO_ASSIGN_OR_RETURN(Worker * w, Acquire());
  auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  Status st = WriteWithDeadline(w->to_fd, wire::Frame(wire::EncodeRequest(item)), deadline);
  Result<wire::Reply> reply = st.ok() ? ReadReply(w->from_fd, deadline) : Result<wire::Reply>(st);
  if (!reply.ok()) {
    bool timeout = reply.status().code() == StatusCode::kDeadlineExceeded;
    std::string how = Reap(w, timeout);
    Release(w);
    if (timeout)
      return Status::DeadlineExceeded("plugin " + plugin_name_ + " took longer than " +
                                      std::to_string(options_.timeout_ms) + " ms; worker killed");
    return Status::Unavailable("plugin " + plugin_name_ + " crashed: " + how);
  }
  Release(w);
  if (reply->kind != wire::ReplyKind::kOk)
    return Status::InvalidArgument("plugin " + plugin_name_ + ": " + reply->message);
  if (!std::isfinite(reply->score))
    return Status::InvalidArgument("plugin " + plugin_name_ + " returned a non-finite score");
  RuleOutput out;
  out.score = reply->score;
  out.detail = reply->message;
  return out;
}

}  // namespace grpo::reward
