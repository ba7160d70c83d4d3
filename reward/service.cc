#include "reward/service.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "core/thread_pool.h"

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
    s->set_error(rr.error);
    s->set_detail(rr.detail);
  }
  out->set_error(r.error);
}

class RewardServer::Impl final : public grpo::v1::RewardService::Service {
 public:
  Impl(std::shared_ptr<const RuleSet> rules, ServeOptions options)
      : rules_(std::move(rules)), options_(std::move(options)),
        pool_(options_.threads > 0 ? options_.threads
                                   : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {}

  void Drain() { draining_ = true; }

  grpc::Status Score(grpc::ServerContext* ctx, const grpo::v1::ScoreRequest* req,
                     grpo::v1::ScoreResponse* resp) override {
    if (draining_) return {grpc::StatusCode::UNAVAILABLE, "reward server is shutting down"};
    const int n = req->items_size();
    if (static_cast<size_t>(n) > options_.max_batch_items)
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "batch of " + std::to_string(n) + " items exceeds the limit of " +
                  std::to_string(options_.max_batch_items)};
    std::vector<ItemResult> results(n);
    std::atomic<bool> expired{false};
    auto deadline = ctx->deadline();
    auto score_range = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if (expired.load(std::memory_order_relaxed)) return;
        if (std::chrono::system_clock::now() > deadline || ctx->IsCancelled()) {
          expired = true;
          return;
        }
        const auto& item = req->items(static_cast<int>(i));
        if (ItemBytes(item) > options_.max_item_bytes) {
          results[i].error = "item of " + std::to_string(ItemBytes(item)) +
                             " bytes exceeds the limit of " + std::to_string(options_.max_item_bytes);
          continue;
        }
        results[i] = rules_->Score(FromProto(item));
      }
    };
    if (n >= 64) {
      pool_.ParallelFor(n, 16, score_range);
    } else {
      score_range(0, n);
    }
    if (expired) return {grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed while scoring"};
    for (int i = 0; i < n; ++i) ToRewardResult(req->items(i).id(), results[i], resp->add_results());
    return grpc::Status::OK;
  }

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
  ThreadPool pool_;
  std::atomic<bool> draining_{false};
};

Result<std::unique_ptr<RewardServer>> RewardServer::Start(std::shared_ptr<const RuleSet> rules,
                                                          ServeOptions options) {
  if (options.listen.find(':') == std::string::npos)
    return Status::InvalidArgument("--listen must be HOST:PORT, got '" + options.listen + "'");
  std::unique_ptr<RewardServer> s(new RewardServer());
  s->impl_ = std::make_unique<Impl>(std::move(rules), options);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(s->impl_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  builder.SetMaxSendMessageSize(options.max_message_mb << 20);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0)
    return Status::Unavailable("cannot listen on " + options.listen);
  return s;
}

RewardServer::~RewardServer() { Shutdown(std::chrono::milliseconds(0)); }

void RewardServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_.exchange(true)) return;
  impl_->Drain();
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
}

void RewardServer::Wait() { server_->Wait(); }

Status ServeUntilSignal(std::shared_ptr<const RuleSet> rules, ServeOptions options) {
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
  server->Shutdown(std::chrono::milliseconds(5000));
  std::fprintf(stderr, "grpo reward serve: stopped\n");
  return Status();
}

}  // namespace grpo::reward
