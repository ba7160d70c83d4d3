#include "learner/remote_rollout.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "proto/rollout.grpc.pb.h"

namespace grpo {
namespace {

bool Retryable(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::DEADLINE_EXCEEDED ||
         c == grpc::StatusCode::CANCELLED || c == grpc::StatusCode::ABORTED ||
         c == grpc::StatusCode::INTERNAL;
}

StatusCode FromGrpcCode(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT: return StatusCode::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND: return StatusCode::kNotFound;
    case grpc::StatusCode::ALREADY_EXISTS: return StatusCode::kAlreadyExists;
    case grpc::StatusCode::OUT_OF_RANGE: return StatusCode::kOutOfRange;
    case grpc::StatusCode::FAILED_PRECONDITION: return StatusCode::kFailedPrecondition;
    case grpc::StatusCode::UNIMPLEMENTED: return StatusCode::kUnimplemented;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return StatusCode::kResourceExhausted;
    case grpc::StatusCode::UNAVAILABLE: return StatusCode::kUnavailable;
    case grpc::StatusCode::CANCELLED: return StatusCode::kCancelled;
    default: return StatusCode::kInternal;
  }
}

std::chrono::system_clock::time_point Deadline(int64_t ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

class RemoteRollout final : public PolicyRollout {
 public:
  explicit RemoteRollout(RemoteRolloutOptions options) : options_(std::move(options)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(options_.max_message_mb << 20);
    args.SetMaxSendMessageSize(options_.max_message_mb << 20);
    for (const auto& e : options_.endpoints) {
      stubs_.push_back(grpo::v1::RolloutService::NewStub(
          grpc::CreateCustomChannel(e, grpc::InsecureChannelCredentials(), args)));
      up_.push_back(true);
    }
  }

  Result<std::vector<GroupResult>> Generate(const std::vector<GroupRequest>& requests) override {
    GRPO_RETURN_IF_ERROR(ReviveDownServers());
    std::vector<GroupResult> results(requests.size());
    std::vector<Status> errors(requests.size());
    std::atomic<size_t> next{0};
    std::atomic<size_t> rr{0};
    const int threads = static_cast<int>(std::min<size_t>(requests.size(), static_cast<size_t>(options_.max_in_flight)));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (size_t i = next++; i < requests.size(); i = next++) {
          errors[i] = GenerateOne(requests[i], rr.fetch_add(1), &results[i]);
        }
      });
    }
    for (auto& t : pool) t.join();
    for (const Status& s : errors) GRPO_RETURN_IF_ERROR(s);
    return results;
  }

  Status PushWeights(uint64_t version, const std::vector<Parameter>& masters) override {
    GRPO_ASSIGN_OR_RETURN(EncodedWeights w, EncodeWeights(masters, version, options_.push));
    current_ = std::make_shared<EncodedWeights>(std::move(w));
    version_ = version;
    // Only to the servers that are up: a down one is revived (and synced) before it gets work.
    std::vector<grpo::v1::RolloutService::StubInterface*> stubs;
    std::vector<size_t> index;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < stubs_.size(); ++i) {
        if (up_[i]) {
          stubs.push_back(stubs_[i].get());
          index.push_back(i);
        }
      }
    }
    auto acks = PushWeightsToAll(stubs, *current_, options_.push.chunk_bytes, Deadline(options_.push_timeout_ms));
    int ok = 0;
    std::string why;
    for (size_t j = 0; j < acks.size(); ++j) {
      const size_t i = index[j];
      std::lock_guard<std::mutex> lock(mu_);
      if (acks[j].ok()) {
        ++ok;
      } else {
        up_[i] = false;
        why += " " + options_.endpoints[i] + ": " + acks[j].status().ToString() + ";";
      }
    }
    if (ok == 0) return Status::Unavailable("weight push of version " + std::to_string(version) + " reached no rollout server:" + why);
    if (!why.empty()) std::fprintf(stderr, "grpo train: rollout servers marked down after the push:%s\n", why.c_str());
    return Status::Ok();
  }

  uint64_t weight_version() const override { return version_; }

 private:
  // Health-checks every down server; one that answers gets the current weights.
  Status ReviveDownServers() {
    for (size_t i = 0; i < stubs_.size(); ++i) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (up_[i]) continue;
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(2000));
      grpo::v1::RolloutHealthRequest req;
      grpo::v1::RolloutHealthResponse resp;
      if (!stubs_[i]->Health(&ctx, req, &resp).ok()) continue;
      if (current_ != nullptr && resp.weight_version() != version_) {
        auto ack = grpo::PushWeights(*stubs_[i], *current_, options_.push.chunk_bytes, Deadline(options_.push_timeout_ms));
        if (!ack.ok()) continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      up_[i] = true;
      std::fprintf(stderr, "grpo train: rollout server %s is back\n", options_.endpoints[i].c_str());
    }
    return Status::Ok();
  }

  Status GenerateOne(const GroupRequest& request, size_t start, GroupResult* out) {
    const grpo::v1::GenerateRequest proto = GroupRequestToProto(request);
    std::string last_error;
    for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
      int server = -1;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (size_t k = 0; k < stubs_.size(); ++k) {
          const size_t i = (start + attempt + k) % stubs_.size();
          if (up_[i]) {
            server = static_cast<int>(i);
            break;
          }
        }
      }
      if (server < 0) break;
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(options_.group_timeout_ms));
      grpo::v1::GenerateResponse resp;
      grpc::Status st = stubs_[server]->Generate(&ctx, proto, &resp);
      if (st.ok()) {
        GroupResult result = GroupResultFromProto(resp.group());
        const std::string bad = CheckResult(request, result);
        if (bad.empty()) {
          *out = std::move(result);
          return Status::Ok();
        }
        // E.g. a server restarted with its original weights: route around it until revived.
        last_error = options_.endpoints[server] + ": " + bad;
        std::lock_guard<std::mutex> lock(mu_);
        std::fprintf(stderr, "grpo train: rollout server %s marked down (%s)\n", options_.endpoints[server].c_str(),
                     bad.c_str());
        up_[server] = false;
        continue;
      }
      last_error = options_.endpoints[server] + ": " + st.error_message();
      if (!Retryable(st.error_code())) {
        return Status(FromGrpcCode(st.error_code()), "rollout server " + last_error);
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (up_[server]) std::fprintf(stderr, "grpo train: rollout server %s marked down (%s)\n",
                                    options_.endpoints[server].c_str(), st.error_message().c_str());
      up_[server] = false;
    }
    std::string all;
    for (const auto& e : options_.endpoints) all += (all.empty() ? "" : ", ") + e;
    return Status::Unavailable("no rollout server could generate a group (servers: " + all +
                               "; last error: " + last_error + ")");
  }

  // "" when `result` answers `request` with the current weights; else what is wrong.
  std::string CheckResult(const GroupRequest& request, const GroupResult& result) const {
    if (static_cast<int64_t>(result.samples.size()) != request.n) return "wrong number of samples";
    for (const SampleResult& s : result.samples) {
      if (s.tokens.empty() || s.logprobs.size() != s.tokens.size() ||
          (request.return_raw_logprobs && s.raw_logprobs.size() != s.tokens.size())) {
        return "a sample's tokens and logprobs disagree";
      }
      if (current_ != nullptr) {
        for (const VersionSpan& v : s.versions) {
          if (v.version != version_) {
            return "a sample was generated with weight version " + std::to_string(v.version) + ", not " +
                   std::to_string(version_);
          }
        }
      }
    }
    return "";
  }

  RemoteRolloutOptions options_;
  std::vector<std::unique_ptr<grpo::v1::RolloutService::Stub>> stubs_;
  std::mutex mu_;
  std::vector<bool> up_;
  std::shared_ptr<EncodedWeights> current_;
  uint64_t version_ = 0;
};

}  // namespace

Result<std::unique_ptr<PolicyRollout>> MakeRemoteRollout(const RemoteRolloutOptions& options) {
  if (options.endpoints.empty()) return Status::InvalidArgument("remote rollout: no endpoints");
  if (options.max_attempts <= 0 || options.max_in_flight <= 0) {
    return Status::InvalidArgument("remote rollout: max_attempts and max_in_flight must be > 0");
  }
  return std::unique_ptr<PolicyRollout>(std::make_unique<RemoteRollout>(options));
}

grpo::v1::GenerateRequest GroupRequestToProto(const GroupRequest& r) {
  grpo::v1::GenerateRequest p;
  for (int32_t t : r.prompt) p.add_prompt_token_ids(t);
  p.set_group_size(static_cast<uint32_t>(r.n));
  auto* s = p.mutable_sampling();
  s->set_temperature(static_cast<float>(r.sampling.temperature));
  s->set_top_p(static_cast<float>(r.sampling.top_p));
  s->set_top_k(static_cast<uint32_t>(r.sampling.top_k));
  s->set_min_p(static_cast<float>(r.sampling.min_p));
  s->set_max_new_tokens(static_cast<uint32_t>(r.max_new_tokens));
  for (int32_t t : r.stop_tokens) s->add_stop_token_ids(t);
  for (const auto& str : r.stop_strings) s->add_stop_strings(str);
  s->set_seed(r.seed);
  s->set_return_routing(r.return_routing);
  s->set_return_raw_logprobs(r.return_raw_logprobs);
  return p;
}

GroupResult GroupResultFromProto(const grpo::v1::Group& g) {
  GroupResult r;
  for (uint32_t e : g.prompt_routing().experts()) r.prompt_routing.push_back(static_cast<int32_t>(e));
  r.num_moe_layers = g.prompt_routing().num_moe_layers();
  r.top_k = g.prompt_routing().top_k();
  for (const auto& s : g.samples()) {
    SampleResult out;
    out.index = s.sample_index();
    out.tokens.assign(s.token_ids().begin(), s.token_ids().end());
    out.logprobs.assign(s.logprobs().begin(), s.logprobs().end());
    out.raw_logprobs.assign(s.raw_logprobs().begin(), s.raw_logprobs().end());
    out.finish_reason = s.finish_reason() == grpo::v1::FINISH_REASON_STOP     ? "stop"
                        : s.finish_reason() == grpo::v1::FINISH_REASON_LENGTH ? "length"
                                                                               : "abort";
    for (const auto& v : s.weight_versions()) out.versions.push_back({v.version(), v.first_token()});
    for (uint32_t e : s.routing().experts()) out.routing.push_back(static_cast<int32_t>(e));
    if (s.has_routing() && r.num_moe_layers == 0) {
      r.num_moe_layers = s.routing().num_moe_layers();
      r.top_k = s.routing().top_k();
    }
    r.samples.push_back(std::move(out));
  }
  return r;
}

}  // namespace grpo
