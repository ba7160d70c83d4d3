#include "reward/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <thread>

namespace grpo::reward {
namespace {

bool Retryable(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::INTERNAL:
      return true;
    default:
      return false;
  }
}

StatusCode ToCode(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT: return StatusCode::kInvalidArgument;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return StatusCode::kResourceExhausted;
    case grpc::StatusCode::UNAVAILABLE: return StatusCode::kUnavailable;
    case grpc::StatusCode::CANCELLED: return StatusCode::kCancelled;
    case grpc::StatusCode::NOT_FOUND: return StatusCode::kNotFound;
    case grpc::StatusCode::UNIMPLEMENTED: return StatusCode::kUnimplemented;
    default: return StatusCode::kInternal;
  }
}

}  // namespace

Result<std::unique_ptr<RewardClient>> RewardClient::Create(ClientOptions options) {
  if (options.targets.empty()) return Status::InvalidArgument("reward client: no replicas given");
  if (options.max_attempts < 1 || options.timeout_ms < 1)
    return Status::InvalidArgument("reward client: max_attempts and timeout_ms must be >= 1");
  std::unique_ptr<RewardClient> c(new RewardClient(options));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  args.SetMaxSendMessageSize(options.max_message_mb << 20);
  for (const auto& t : options.targets) {
    auto ch = grpc::CreateCustomChannel(t, grpc::InsecureChannelCredentials(), args);
    c->stubs_.push_back(grpo::v1::RewardService::NewStub(ch));
  }
  c->failed_.assign(options.targets.size(), false);
  return c;
}

std::vector<size_t> RewardClient::Order() {
  std::lock_guard<std::mutex> l(mu_);
  size_t n = stubs_.size();
  size_t start = next_++ % n;
  std::vector<size_t> healthy, failed;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (start + k) % n;
    (failed_[i] ? failed : healthy).push_back(i);
  }
  healthy.insert(healthy.end(), failed.begin(), failed.end());
  return healthy;
}

void RewardClient::MarkFailed(size_t replica, bool failed) {
  std::lock_guard<std::mutex> l(mu_);
  failed_[replica] = failed;
}

Result<std::vector<grpo::v1::RewardResult>> RewardClient::Score(
    const std::vector<grpo::v1::RewardRequestItem>& items) {
  grpo::v1::ScoreRequest req;
  for (const auto& it : items) *req.add_items() = it;
  std::string last_error = "no attempt made";
  int backoff = options_.backoff_ms;
  int attempt = 0;
  while (attempt < options_.max_attempts) {
    for (size_t replica : Order()) {
      if (attempt >= options_.max_attempts) break;
      ++attempt;
      ++attempts_;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(options_.timeout_ms));
      grpo::v1::ScoreResponse resp;
      grpc::Status st = stubs_[replica]->Score(&ctx, req, &resp);
      if (st.ok()) {
        bool consistent = resp.results_size() == static_cast<int>(items.size());
        for (int i = 0; consistent && i < resp.results_size(); ++i)
          consistent = resp.results(i).id() == items[i].id();
        if (consistent) {
          MarkFailed(replica, false);
          return std::vector<grpo::v1::RewardResult>(resp.results().begin(), resp.results().end());
        }
        last_error = options_.targets[replica] + ": reply does not match the request";
        MarkFailed(replica, true);
        continue;
      }
      last_error = options_.targets[replica] + ": " + st.error_message();
      if (!Retryable(st.error_code()))
        return Status(ToCode(st.error_code()), "reward service " + last_error);
      MarkFailed(replica, true);
    }
    if (attempt < options_.max_attempts) {
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
      backoff = std::min(backoff * 2, 2000);
    }
  }
  return Status::Unavailable("reward service: all " + std::to_string(attempt) +
                             " attempts failed; last: " + last_error);
}

Result<grpo::v1::ListRulesResponse> RewardClient::ListRules() {
  std::string last;
  for (size_t replica : Order()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options_.timeout_ms));
    grpo::v1::ListRulesResponse resp;
    grpc::Status st = stubs_[replica]->ListRules(&ctx, grpo::v1::ListRulesRequest(), &resp);
    if (st.ok()) return resp;
    last = options_.targets[replica] + ": " + st.error_message();
  }
  return Status::Unavailable("reward service: no replica answered ListRules; last: " + last);
}

bool RewardClient::AnyServing() {
  for (size_t replica : Order()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1000));
    grpo::v1::RewardHealthResponse resp;
    if (stubs_[replica]->Health(&ctx, grpo::v1::RewardHealthRequest(), &resp).ok() &&
        resp.status() == grpo::v1::RewardHealthResponse::SERVING)
      return true;
  }
  return false;
}

}  // namespace grpo::reward
