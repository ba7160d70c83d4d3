#include "learner/remote_rollout.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/sample_proto.h"

namespace grpo {
namespace {

bool Retryable(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::DEADLINE_EXCEEDED ||
         c == grpc::StatusCode::CANCELLED || c == grpc::StatusCode::ABORTED ||
         c == grpc::StatusCode::INTERNAL;
}

absl::StatusCode FromGrpcCode(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::StatusCode::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND: return absl::StatusCode::kNotFound;
    case grpc::StatusCode::ALREADY_EXISTS: return absl::StatusCode::kAlreadyExists;
    case grpc::StatusCode::OUT_OF_RANGE: return absl::StatusCode::kOutOfRange;
    case grpc::StatusCode::FAILED_PRECONDITION: return absl::StatusCode::kFailedPrecondition;
    case grpc::StatusCode::UNIMPLEMENTED: return absl::StatusCode::kUnimplemented;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return absl::StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return absl::StatusCode::kResourceExhausted;
    case grpc::StatusCode::UNAVAILABLE: return absl::StatusCode::kUnavailable;
    case grpc::StatusCode::CANCELLED: return absl::StatusCode::kCancelled;
    default: return absl::StatusCode::kInternal;
  }
}

// A gRPC deadline `timeout` from now.
std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

class RemoteRollout final : public PolicyRollout {
 public:
  explicit RemoteRollout(RemoteRolloutOptions options)
      : options_(std::move(options)), stubs_(RolloutStubs(options_.endpoints, options_.max_message_mb)) {
    up_.assign(stubs_.size(), true);
  }

  absl::StatusOr<std::vector<GroupResult>> Generate(const std::vector<GroupRequest>& requests) override {
    GRPO_RETURN_IF_ERROR(ReviveDownServers());
    std::vector<GroupResult> results(requests.size());
    std::vector<absl::Status> errors(requests.size());
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
    for (const absl::Status& s : errors) GRPO_RETURN_IF_ERROR(s);
    return results;
  }

  absl::Status PushWeights(uint64_t version, const CausalLM& policy) override {
    if (options_.ranks != nullptr && options_.ranks->size() > 1) return PushShards(version, policy);
    // The wire needs host bytes: the masters are downloaded once, encoded once, sent to all.
    GRPO_ASSIGN_OR_RETURN(EncodedWeights w, EncodeWeights(policy.ReadParameters(), version, options_.push));
    auto encoded = std::make_shared<EncodedWeights>(std::move(w));
    // Only to the servers that are up: a down one is revived (and synced) before it gets work.
    std::vector<grpo::v1::RolloutService::StubInterface*> stubs;
    std::vector<bool> pushed;
    {
      absl::MutexLock lock(&mu_);
      current_ = encoded;
      last_params_.reset();
      pushing_ = version;
      pushed = up_;
    }
    for (size_t i = 0; i < stubs_.size(); ++i) {
      if (pushed[i]) stubs.push_back(stubs_[i].get());
    }
    auto acks = PushWeightsToAll(stubs, *encoded, options_.push.chunk_bytes, absl::Now() + options_.push_timeout,
                                 options_.push_token);
    std::vector<absl::Status> results(stubs_.size());
    for (size_t i = 0, j = 0; i < stubs_.size(); ++i) {
      if (pushed[i]) results[i] = acks[j++].status();
    }
    return CountPushed(version, pushed, results);
  }

  uint64_t weight_version() const override {
    absl::MutexLock lock(&mu_);
    return serving_;
  }

  // With tools on: every server that answers Health must report serves_tools (one that predates
  // GenerateRequest.tools would ignore it and answer single-turn samples). A server that does not
  // answer now is marked down, and checked when it is revived (ReviveDownServers).
  absl::Status CheckServesTools() {
    if (!options_.tools.enabled()) return absl::OkStatus();
    for (size_t i = 0; i < stubs_.size(); ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(absl::Seconds(5)));
      grpo::v1::RolloutHealthResponse resp;
      if (!stubs_[i]->Health(&ctx, grpo::v1::RolloutHealthRequest(), &resp).ok()) {
        absl::MutexLock lock(&mu_);
        up_[i] = false;
        continue;
      }
      if (!resp.serves_tools()) {
        return absl::FailedPreconditionError(
            "rollout server " + options_.endpoints[i] + " does not serve tool use (its Health reports no "
            "serves_tools: it predates GenerateRequest.tools and would answer single-turn samples, or it has no "
            "tokenizer), and the recipe sets tools.environment: " + options_.tools.environment +
            "; upgrade the server or start it with --tokenizer");
      }
    }
    return absl::OkStatus();
  }

 private:
  // Data-parallel ranks: every rank pushes its shard of the version to the servers that are up
  // (learner/weight_push.h PushWeightShards); the others are told to by options_.announce.
  absl::Status PushShards(uint64_t version, const CausalLM& policy) {
    auto params = std::make_shared<std::vector<Parameter>>(policy.ReadParameters());
    std::vector<bool> up;
    std::vector<grpo::v1::RolloutService::StubInterface*> stubs;
    {
      absl::MutexLock lock(&mu_);
      last_params_ = params;
      current_.reset();  // encoded whole only if a revived server needs it
      pushing_ = version;
      up = up_;
    }
    for (size_t i = 0; i < stubs_.size(); ++i) stubs.push_back(up[i] ? stubs_[i].get() : nullptr);
    GRPO_RETURN_IF_ERROR(options_.announce(version, up));
    const std::vector<absl::Status> results =
        PushWeightShards(*options_.ranks, stubs, *params, version, options_.push,
                         absl::Now() + options_.push_timeout, options_.push_token);
    return CountPushed(version, up, results);
  }

  // Marks the servers whose push failed down and `version` as served; fails when no server took
  // the version.
  absl::Status CountPushed(uint64_t version, const std::vector<bool>& pushed, const std::vector<absl::Status>& results) {
    int ok = 0;
    std::string why;
    absl::MutexLock lock(&mu_);
    serving_ = version;
    for (size_t i = 0; i < results.size(); ++i) {
      if (!pushed[i]) continue;
      if (results[i].ok()) {
        ++ok;
      } else {
        up_[i] = false;
        why += " " + options_.endpoints[i] + ": " + results[i].ToString() + ";";
      }
    }
    if (ok == 0) return absl::UnavailableError("weight push of version " + std::to_string(version) + " reached no rollout server:" + why);
    if (!why.empty()) std::fprintf(stderr, "grpo train: rollout servers marked down after the push:%s\n", why.c_str());
    return absl::OkStatus();
  }

  // The newest pushed version whole, for a server that missed it (sharded pushes keep the
  // parameters and encode them only here).
  absl::StatusOr<std::shared_ptr<EncodedWeights>> WholeCurrentVersion() {
    std::shared_ptr<std::vector<Parameter>> params;
    uint64_t version = 0;
    {
      absl::MutexLock lock(&mu_);
      if (current_ != nullptr || last_params_ == nullptr) return current_;
      params = last_params_;
      version = pushing_;
    }
    GRPO_ASSIGN_OR_RETURN(EncodedWeights w, EncodeWeights(*params, version, options_.push));
    auto encoded = std::make_shared<EncodedWeights>(std::move(w));
    absl::MutexLock lock(&mu_);
    if (pushing_ == version) current_ = encoded;
    return encoded;
  }

  // Health-checks every down server; one that answers gets the newest pushed version. It is
  // marked up only if no newer push started meanwhile (that push skipped it; the next Generate
  // revives it again).
  absl::Status ReviveDownServers() {
    for (size_t i = 0; i < stubs_.size(); ++i) {
      uint64_t newest = 0;
      {
        absl::MutexLock lock(&mu_);
        if (up_[i]) continue;
        newest = pushing_;
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(absl::Seconds(2)));
      grpo::v1::RolloutHealthRequest req;
      grpo::v1::RolloutHealthResponse resp;
      if (!stubs_[i]->Health(&ctx, req, &resp).ok()) continue;
      if (options_.tools.enabled() && !resp.serves_tools()) {
        std::fprintf(stderr, "grpo train: rollout server %s answers but does not serve tool use; it stays down\n",
                     options_.endpoints[i].c_str());
        continue;
      }
      if (newest != 0 && resp.weight_version() != newest) {
        GRPO_ASSIGN_OR_RETURN(std::shared_ptr<EncodedWeights> current, WholeCurrentVersion());
        newest = current->version;
        auto ack = grpo::PushWeights(*stubs_[i], *current, options_.push.chunk_bytes,
                                     absl::Now() + options_.push_timeout, options_.push_token);
        if (!ack.ok()) continue;
      }
      absl::MutexLock lock(&mu_);
      if (newest != pushing_) continue;
      up_[i] = true;
      std::fprintf(stderr, "grpo train: rollout server %s is back\n", options_.endpoints[i].c_str());
    }
    return absl::OkStatus();
  }

  absl::Status GenerateOne(const GroupRequest& request, size_t start, GroupResult* out) {
    const grpo::v1::GenerateRequest proto = GroupRequestToProto(request, options_.tools);
    std::string last_error;
    for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
      int server = -1;
      uint64_t oldest = 0;  // the version every server up serves as the group is sent
      {
        absl::MutexLock lock(&mu_);
        oldest = serving_;
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
      ctx.set_deadline(Deadline(options_.group_timeout));
      grpo::v1::GenerateResponse resp;
      grpc::Status st = stubs_[server]->Generate(&ctx, proto, &resp);
      if (st.ok()) {
        absl::StatusOr<GroupResult> result = GroupResultFromProto(resp.group());
        const std::string bad =
            result.ok() ? CheckResult(request, *result, oldest) : std::string(result.status().message());
        if (bad.empty()) {
          *out = *std::move(result);
          return absl::OkStatus();
        }
        // E.g. a server restarted with its original weights: route around it until revived.
        last_error = options_.endpoints[server] + ": " + bad;
        absl::MutexLock lock(&mu_);
        std::fprintf(stderr, "grpo train: rollout server %s marked down (%s)\n", options_.endpoints[server].c_str(),
                     bad.c_str());
        up_[server] = false;
        continue;
      }
      last_error = options_.endpoints[server] + ": " + st.error_message();
      if (!Retryable(st.error_code())) {
        return absl::Status(FromGrpcCode(st.error_code()), "rollout server " + last_error);
      }
      absl::MutexLock lock(&mu_);
      if (up_[server]) std::fprintf(stderr, "grpo train: rollout server %s marked down (%s)\n",
                                    options_.endpoints[server].c_str(), st.error_message().c_str());
      up_[server] = false;
    }
    std::string all;
    for (const auto& e : options_.endpoints) all += (all.empty() ? "" : ", ") + e;
    return absl::UnavailableError("no rollout server could generate a group (servers: " + all +
                               "; last error: " + last_error + ")");
  }

  // "" when `result` answers `request` with weights no older than `oldest` (the version served
  // when the group was sent) and no newer than the newest pushed; else what is wrong.
  std::string CheckResult(const GroupRequest& request, const GroupResult& result, uint64_t oldest) const {
    if (static_cast<int64_t>(result.samples.size()) != request.n) return "wrong number of samples";
    uint64_t newest = 0;
    {
      absl::MutexLock lock(&mu_);
      newest = pushing_;
    }
    for (const SampleResult& s : result.samples) {
      if (s.tokens.empty() || s.logprobs.size() != s.tokens.size() ||
          (request.return_raw_logprobs && s.raw_logprobs.size() != s.tokens.size())) {
        return "a sample's tokens and logprobs disagree";
      }
      if (newest == 0) continue;  // nothing pushed yet: the servers' own weights
      for (const VersionSpan& v : s.versions) {
        if (v.version < oldest || v.version > newest) {
          return "a sample was generated with weight version " + std::to_string(v.version) + ", not " +
                 (oldest == newest ? std::to_string(newest)
                                   : std::to_string(oldest) + ".." + std::to_string(newest));
        }
      }
    }
    return "";
  }

  const RemoteRolloutOptions options_;
  const std::vector<std::unique_ptr<grpo::v1::RolloutService::Stub>> stubs_;
  // Generate's threads and a PushWeights running beside them (rollout.max_staleness >= 2) share
  // what follows.
  mutable absl::Mutex mu_;
  std::vector<bool> up_ ABSL_GUARDED_BY(mu_);
  // The newest version a push has started for, and the newest one the servers up serve (its push
  // finished); equal between pushes. A token's version lies between the served one when its
  // group was sent and the pushing one (CheckResult).
  uint64_t pushing_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t serving_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<EncodedWeights> current_ ABSL_GUARDED_BY(mu_);  // pushing_ encoded whole, or null
  std::shared_ptr<std::vector<Parameter>> last_params_ ABSL_GUARDED_BY(mu_);  // sharded pushes: the masters
};

}  // namespace

std::vector<std::unique_ptr<grpo::v1::RolloutService::Stub>> RolloutStubs(const std::vector<std::string>& endpoints,
                                                                          int max_message_mb) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_mb << 20);
  args.SetMaxSendMessageSize(max_message_mb << 20);
  std::vector<std::unique_ptr<grpo::v1::RolloutService::Stub>> stubs;
  for (const auto& e : endpoints) {
    stubs.push_back(
        grpo::v1::RolloutService::NewStub(grpc::CreateCustomChannel(e, grpc::InsecureChannelCredentials(), args)));
  }
  return stubs;
}

absl::StatusOr<std::unique_ptr<PolicyRollout>> MakeRemoteRollout(const RemoteRolloutOptions& options) {
  if (options.ranks != nullptr && options.ranks->size() > 1 && !options.announce) {
    return absl::InvalidArgumentError("remote rollout: data-parallel ranks need an announce function");
  }
  if (options.endpoints.empty()) return absl::InvalidArgumentError("remote rollout: no endpoints");
  if (options.max_attempts <= 0 || options.max_in_flight <= 0) {
    return absl::InvalidArgumentError("remote rollout: max_attempts and max_in_flight must be > 0");
  }
  auto rollout = std::make_unique<RemoteRollout>(options);
  GRPO_RETURN_IF_ERROR(rollout->CheckServesTools());
  return std::unique_ptr<PolicyRollout>(std::move(rollout));
}

grpo::v1::GenerateRequest GroupRequestToProto(const GroupRequest& r, const ToolSettings& tools) {
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
  if (tools.enabled()) {
    ToolSettingsToProto(tools, p.mutable_tools());
    p.mutable_tools()->set_max_calls(static_cast<uint32_t>(r.max_tool_calls));
    p.mutable_tools()->set_max_output_tokens(static_cast<uint32_t>(r.max_tool_output_tokens));
  }
  return p;
}

absl::StatusOr<GroupResult> GroupResultFromProto(const grpo::v1::Group& g) {
  GroupResult r;
  for (uint32_t e : g.prompt_routing().experts()) r.prompt_routing.push_back(static_cast<int32_t>(e));
  r.num_moe_layers = g.prompt_routing().num_moe_layers();
  r.top_k = g.prompt_routing().top_k();
  for (const auto& s : g.samples()) {
    GRPO_ASSIGN_OR_RETURN(SampleResult out, SampleResultFromProto(s));
    if (s.has_routing() && r.num_moe_layers == 0) {
      r.num_moe_layers = s.routing().num_moe_layers();
      r.top_k = s.routing().top_k();
    }
    r.samples.push_back(std::move(out));
  }
  return r;
}

}  // namespace grpo
