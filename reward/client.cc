#include "reward/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

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

absl::StatusCode ToCode(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::StatusCode::kInvalidArgument;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return absl::StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return absl::StatusCode::kResourceExhausted;
    case grpc::StatusCode::UNAVAILABLE: return absl::StatusCode::kUnavailable;
    case grpc::StatusCode::CANCELLED: return absl::StatusCode::kCancelled;
    case grpc::StatusCode::NOT_FOUND: return absl::StatusCode::kNotFound;
    case grpc::StatusCode::UNIMPLEMENTED: return absl::StatusCode::kUnimplemented;
    default: return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RewardClient>> RewardClient::Create(ClientOptions options) {
  if (options.targets.empty()) return absl::InvalidArgumentError("reward client: no replicas given");
  if (options.max_attempts < 1 || options.timeout < absl::Milliseconds(1))
    return absl::InvalidArgumentError("reward client: max_attempts must be >= 1 and timeout >= 1 ms");
  std::unique_ptr<RewardClient> c(new RewardClient(options));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  args.SetMaxSendMessageSize(options.max_message_mb << 20);
  for (const auto& t : options.targets) {
    auto ch = grpc::CreateCustomChannel(t, grpc::InsecureChannelCredentials(), args);
    c->stubs_.push_back(grpo::v1::RewardService::NewStub(ch));
  }
  absl::MutexLock l(&c->mu_);
  c->failed_.assign(options.targets.size(), false);
  return c;
}

std::vector<size_t> RewardClient::Order() {
  absl::MutexLock l(&mu_);
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
  absl::MutexLock l(&mu_);
  failed_[replica] = failed;
}

absl::StatusOr<std::vector<grpo::v1::RewardResult>> RewardClient::Score(
    const std::vector<grpo::v1::RewardRequestItem>& items) {
  grpo::v1::ScoreRequest req;
  for (const auto& it : items) *req.add_items() = it;
  std::string last_error = "no attempt made";
  absl::Duration backoff = options_.backoff;
  int attempt = 0;
  while (attempt < options_.max_attempts) {
    for (size_t replica : Order()) {
      if (attempt >= options_.max_attempts) break;
      ++attempt;
      ++attempts_;
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
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
        return absl::Status(ToCode(st.error_code()), "reward service " + last_error);
      MarkFailed(replica, true);
    }
    if (attempt < options_.max_attempts) {
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(2));
    }
  }
  return absl::UnavailableError(
      absl::StrCat("reward service: all ", attempt, " attempts failed; last: ", last_error));
}

absl::StatusOr<grpo::v1::ListRulesResponse> RewardClient::ListRules() {
  std::string last;
  for (size_t replica : Order()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
    grpo::v1::ListRulesResponse resp;
    grpc::Status st = stubs_[replica]->ListRules(&ctx, grpo::v1::ListRulesRequest(), &resp);
    if (st.ok()) return resp;
    last = options_.targets[replica] + ": " + st.error_message();
  }
  return absl::UnavailableError("reward service: no replica answered ListRules; last: " + last);
}

bool RewardClient::AnyServing() {
  for (size_t replica : Order()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    grpo::v1::RewardHealthResponse resp;
    if (stubs_[replica]->Health(&ctx, grpo::v1::RewardHealthRequest(), &resp).ok() &&
        resp.status() == grpo::v1::RewardHealthResponse::SERVING)
      return true;
  }
  return false;
}

}  // namespace grpo::reward
