#include "reward/plugin_host.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "reward/plugin_wire.h"
#include "reward/plugin_worker.h"

namespace grpo::reward {

struct PluginRule::Worker {
  std::unique_ptr<sandbox::Sandbox> box;  // the sandboxed worker process; null when none runs
  int to_fd = -1;
  int from_fd = -1;
};

namespace {

int MsLeft(absl::Time deadline) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()), 0, 1 << 30));
}

// Reaps a worker that is dead or must die (with everything it started), and says how it ended.
std::string Reap(PluginRule::Worker* w, bool kill_first) {
  std::string how = "worker ended";
  if (w->box) {
    // A worker whose pipe closed is exiting; give it a moment before forcing it.
    how = "worker " + (kill_first ? w->box->KillAndReap() : w->box->Reap(absl::Milliseconds(100)));
    w->box.reset();
  }
  if (w->to_fd >= 0) ::close(w->to_fd);
  if (w->from_fd >= 0) ::close(w->from_fd);
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

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char real[PATH_MAX];
  if (!::realpath(path.c_str(), real)) return grpo::ErrnoError(path, errno);
  return std::string(real);
}

// The worker's sandbox: the worker binary and the plugin library bound read-only, the request
// and reply pipes as its only descriptors besides /dev/null on 0, 1 and 2.
absl::StatusOr<std::unique_ptr<sandbox::Sandbox>> SandboxWorker(const PluginOptions& o, int request_fd,
                                                                 int reply_fd) {
  GRPO_ASSIGN_OR_RETURN(std::string worker, RealPath(o.worker_argv.front()));
  GRPO_ASSIGN_OR_RETURN(std::string library, RealPath(o.path));
  sandbox::Config c = o.sandbox;
  c.capture_output = false;
  c.fds = {{request_fd, kRequestFd}, {reply_fd, kReplyFd}};
  // With namespaces both files are bound into the sandbox's view; weak isolation has no view of
  // its own and uses the host paths.
  const bool own_view = c.isolation == sandbox::Isolation::kNamespaces;
  if (own_view) {
    c.binds.push_back({worker, kWorkerInside});
    c.binds.push_back({library, kLibraryInside});
  }
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<sandbox::Sandbox> box, sandbox::Sandbox::Create(c));
  sandbox::Job job;
  job.argv = {own_view ? std::string(kWorkerInside) : worker};
  job.argv.insert(job.argv.end(), o.worker_argv.begin() + 1, o.worker_argv.end());
  job.argv.insert(job.argv.end(), {"--plugin", own_view ? std::string(kLibraryInside) : library, "--config", o.config_json});
  job.limits.cpu_seconds = -1;  // long-lived: the host's per-item deadline bounds each call
  job.limits.address_space_bytes = static_cast<uint64_t>(o.memory_mb) << 20;
  job.limits.processes = 32;
  GRPO_RETURN_IF_ERROR(box->Start(job));
  return box;
}

// Starts a worker and reads its hello. On failure the worker is reaped.
absl::Status Spawn(PluginRule::Worker* w, const PluginOptions& o, std::string* hello) {
  int req[2], rep[2];
  if (::pipe2(req, O_CLOEXEC) != 0) return grpo::ErrnoError("pipe", errno);
  if (::pipe2(rep, O_CLOEXEC) != 0) {
    ::close(req[0]);
    ::close(req[1]);
    return grpo::ErrnoError("pipe", errno);
  }
  absl::StatusOr<std::unique_ptr<sandbox::Sandbox>> box = SandboxWorker(o, req[0], rep[1]);
  ::close(req[0]);
  ::close(rep[1]);
  if (!box.ok()) {
    ::close(req[1]);
    ::close(rep[0]);
    return grpo::WithContext(box.status(), "plugin " + o.path + ": worker '" + o.worker_argv.front() +
                                               "' did not start");
  }
  w->box = std::move(*box);
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

std::vector<std::string> SelfWorkerArgv() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::string exe = n > 0 ? std::string(self, static_cast<size_t>(n)) : "/proc/self/exe";
  return {exe, "reward", "plugin-worker"};
}

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
    if (w->box) return w;
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
