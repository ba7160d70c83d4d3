#include "reward/service.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <new>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/checked_math.h"
#include "core/grpc_server.h"
#include "core/in_flight_limit.h"
#include "core/memory_plan.h"
#include "core/thread_pool.h"
#include "core/utf8.h"

namespace grpo::reward {

RewardItem FromProto(const grpo::v1::RewardRequestItem& p) {
  RewardItem it;
  it.completion = p.completion();
  it.answer = p.answer();
  it.prompt = p.prompt();
  it.task = p.task();
  for (const auto& [k, v] : p.meta()) it.meta[k] = v;
  return it;
}

grpo::v1::RewardRequestItem ToProto(const RewardItem& item, const std::string& id) {
  grpo::v1::RewardRequestItem p;
  p.set_id(id);
  p.set_completion(item.completion);
  p.set_answer(item.answer);
  p.set_prompt(item.prompt);
  p.set_task(item.task);
  for (const auto& [k, v] : item.meta) (*p.mutable_meta())[k] = v;
  return p;
}

namespace {

// Requests from this size on are followed by ReturnFreedMemoryToSystem.
constexpr size_t kTrimAfterBytes = size_t{16} << 20;

size_t ItemBytes(const grpo::v1::RewardRequestItem& p) {
  size_t n = p.completion().size() + p.answer().size() + p.prompt().size() + p.task().size();
  for (const auto& [k, v] : p.meta()) n += k.size() + v.size();
  return n;
}


}  // namespace

void ToRewardResult(const std::string& id, const ItemResult& r, grpo::v1::RewardResult* out) {
  out->set_id(id);
  if (r.reward) out->set_reward(*r.reward);
  for (const auto& rr : r.rules) {
    auto* s = out->add_rules();
    s->set_rule(rr.rule);
    s->set_score(rr.score);
    s->set_weight(rr.weight);
    // Rules quote the completion, which may hold any bytes, cut anywhere: proto strings must
    // be UTF-8 or the trajectory holding them does not parse again.
    s->set_error(Utf8Lossy(rr.error));
    s->set_detail(Utf8Lossy(rr.detail));
  }
  out->set_error(Utf8Lossy(r.error));
}

absl::Status ScoreBatch(const RuleSet& rules, const grpo::v1::ScoreRequest& req, const ScoreLimits& limits,
                        const std::function<bool()>& expired_fn, ThreadPool* pool, grpo::v1::ScoreResponse* resp) {
  const int n = req.items_size();
  if (static_cast<size_t>(n) > limits.max_batch_items) {
    return absl::ResourceExhaustedError(
        absl::StrCat("batch of ", n, " items exceeds the limit of ", limits.max_batch_items));
  }
  std::vector<ItemResult> results(n);
  std::atomic<bool> expired{false};
  auto score_range = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (expired.load(std::memory_order_relaxed)) return;
      if (expired_fn()) {
        expired = true;
        return;
      }
      const auto& item = req.items(static_cast<int>(i));
      if (ItemBytes(item) > limits.max_item_bytes) {
        results[i].error = absl::StrCat("item of ", ItemBytes(item), " bytes exceeds the limit of ",
                                        limits.max_item_bytes);
        continue;
      }
      results[i] = rules.Score(FromProto(item));
    }
  };
  if (n >= 64 && pool != nullptr) {
    pool->ParallelFor(n, 16, score_range);
  } else {
    score_range(0, n);
  }
  resp->Clear();
  if (expired) return absl::DeadlineExceededError("deadline passed while scoring");
  for (int i = 0; i < n; ++i) ToRewardResult(req.items(i).id(), results[i], resp->add_results());
  return absl::OkStatus();
}

class RewardServer::Impl final : public grpo::v1::RewardService::Service {
 public:
  Impl(std::shared_ptr<const RuleSet> rules, ServeOptions options)
      : rules_(std::move(rules)), options_(std::move(options)), in_flight_(options_.max_concurrent_requests),
        pool_(options_.threads > 0 ? options_.threads
                                   : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {}

  void Drain() { draining_ = true; }

  grpc::Status Score(grpc::ServerContext* ctx, const grpo::v1::ScoreRequest* req,
                     grpo::v1::ScoreResponse* resp) override {
    if (draining_) return {grpc::StatusCode::UNAVAILABLE, "reward server is shutting down"};
    InFlightLimit::Ticket ticket = in_flight_.TryAcquire();
    if (!ticket) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              absl::StrCat("the reward server has ", in_flight_.max(),
                           " requests in flight, its limit (max_concurrent_requests); retry later")};
    }
    try {
      return ScoreAdmitted(ctx, req, resp);
    } catch (const std::bad_alloc&) {
      resp->Clear();
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, "the reward server ran out of memory for this request"};
    }
  }

  grpc::Status ScoreAdmitted(grpc::ServerContext* ctx, const grpo::v1::ScoreRequest* req,
                             grpo::v1::ScoreResponse* resp) {
    const absl::Time deadline = absl::FromChrono(ctx->deadline());
    const absl::Status scored =
        ScoreBatch(*rules_, *req, limits(), [&] { return absl::Now() > deadline || ctx->IsCancelled(); },
                   &pool_, resp);
    // A large batch leaves hundreds of MB of freed small strings in the allocator.
    if (req->ByteSizeLong() >= kTrimAfterBytes) ReturnFreedMemoryToSystem();
    if (!scored.ok()) return ToGrpcStatus(scored);
    return grpc::Status::OK;
  }

  ScoreLimits limits() const { return {options_.max_batch_items, options_.max_item_bytes}; }

  grpc::Status ListRules(grpc::ServerContext*, const grpo::v1::ListRulesRequest*,
                         grpo::v1::ListRulesResponse* resp) override {
    for (const auto& r : rules_->rules()) {
      auto* info = resp->add_rules();
      info->set_name(r.name);
      info->set_description(r.rule->Describe());
      for (const auto& t : r.tasks) info->add_tasks(t);
      info->set_weight(r.weight);
    }
    return grpc::Status::OK;
  }

  grpc::Status Health(grpc::ServerContext*, const grpo::v1::RewardHealthRequest*,
                      grpo::v1::RewardHealthResponse* resp) override {
    resp->set_status(draining_ ? grpo::v1::RewardHealthResponse::NOT_SERVING
                               : grpo::v1::RewardHealthResponse::SERVING);
    resp->set_version(options_.version);
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<const RuleSet> rules_;
  ServeOptions options_;
  InFlightLimit in_flight_;  // Score calls
  ThreadPool pool_;
  std::atomic<bool> draining_{false};
};

absl::StatusOr<std::unique_ptr<RewardServer>> RewardServer::Start(std::shared_ptr<const RuleSet> rules,
                                                          ServeOptions options) {
  GRPO_RETURN_IF_ERROR(ParseListenAddress(options.listen).status());
  if (options.max_request_mb <= 0 || options.max_request_mb > 2047 || options.max_concurrent_requests <= 0 ||
      options.max_message_mb <= 0 || options.max_message_mb > 2047) {
    return absl::InvalidArgumentError("max_request_mb and max_message_mb must be in [1, 2047] and "
                                      "max_concurrent_requests positive");
  }
  {
    MemoryPlan plan;
    plan.Add(absl::StrCat("requests in flight (max_request_mb ", options.max_request_mb,
                          " x (max_concurrent_requests ", options.max_concurrent_requests, " + ",
                          kExtraServerThreads, " server threads))"),
             CheckedInt64(options.max_request_mb) * (int64_t{1} << 20) *
                 (CheckedInt64(options.max_concurrent_requests) + kExtraServerThreads));
    GRPO_RETURN_IF_ERROR(plan.Check("the reward server"));
  }
  std::unique_ptr<RewardServer> s(new RewardServer());
  s->impl_ = std::make_unique<Impl>(std::move(rules), options);
  // Threads (each may hold a received request) beyond the admitted calls serve Health,
  // ListRules and gRPC's pollers; counted in the memory plan above.
  GRPO_ASSIGN_OR_RETURN(
      StartedServer started,
      StartLimitedGrpcServer(s->impl_.get(),
                             {options.max_concurrent_requests, options.max_request_mb, options.max_message_mb},
                             options.listen, "the reward server"));
  s->server_ = std::move(started.server);
  s->port_ = started.port;
  return s;
}

RewardServer::~RewardServer() { Shutdown(absl::ZeroDuration()); }

void RewardServer::Shutdown(absl::Duration grace) {
  if (server_ == nullptr) return;  // Start failed: nothing runs
  if (shut_down_.exchange(true)) return;
  impl_->Drain();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

void RewardServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

absl::Status ServeUntilSignal(std::shared_ptr<const RuleSet> rules, ServeOptions options) {
  // Block the signals in every thread (gRPC's included) and wait for them here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::string listen = options.listen;
  GRPO_ASSIGN_OR_RETURN(auto server, RewardServer::Start(std::move(rules), std::move(options)));
  std::string host = listen.substr(0, listen.rfind(':'));
  std::fprintf(stderr, "grpo reward serve: listening on %s:%d\n", host.c_str(), server->port());
  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "grpo reward serve: %s, draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  server->Shutdown(absl::Seconds(5));
  std::fprintf(stderr, "grpo reward serve: stopped\n");
  return absl::Status();
}

}  // namespace grpo::reward
