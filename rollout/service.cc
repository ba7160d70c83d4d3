#include "rollout/service.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <new>
#include <optional>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/checked_math.h"
#include "core/grpc_server.h"
#include "core/in_flight_limit.h"
#include "core/memory_plan.h"
#include "model/model_memory.h"
#include "rollout/push_token.h"
#include "rollout/sample_proto.h"
#include "rollout/tool_settings.h"
#include "rollout/weight_stream.h"

namespace grpo {
namespace {

void TimingToProto(const GroupTiming& t, grpo::v1::GenerateTiming* out) {
  out->set_queue_seconds(t.queue_seconds);
  out->set_prefill_seconds(t.prefill_seconds);
  out->set_decode_seconds(t.decode_seconds);
  out->set_total_seconds(t.total_seconds);
  out->set_prompt_tokens(static_cast<uint32_t>(t.prompt_tokens));
  out->set_cached_prompt_tokens(0);
  out->set_completion_tokens(static_cast<uint64_t>(t.completion_tokens));
}

// Events of one call, filled on the engine thread and consumed by the handler.
struct CallState {
  absl::Mutex mu;
  std::deque<grpo::v1::GenerateStreamResponse> events ABSL_GUARDED_BY(mu);
  bool done ABSL_GUARDED_BY(mu) = false;
  GroupResult result ABSL_GUARDED_BY(mu);

  // The handler has something to do: an event to forward, or the group is done.
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done || !events.empty(); }
  void Push(grpo::v1::GenerateStreamResponse m) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock l(&mu);
    events.push_back(std::move(m));
  }
};

// The tool environments requests asked for, kept open between requests (the python tool's warm
// sandboxes, a plugin's worker): keyed by every setting that shapes the environment, the most
// recently opened kMaxOpen at most (an evicted one lives on in the requests that hold it).
class ToolEnvironments {
 public:
  explicit ToolEnvironments(std::vector<std::string> allowed_plugins) : allowed_plugins_(std::move(allowed_plugins)) {}

  absl::StatusOr<std::shared_ptr<Environment>> Get(const ToolSettings& s) ABSL_LOCKS_EXCLUDED(mu_) {
    if (s.environment == "plugin" &&
        std::find(allowed_plugins_.begin(), allowed_plugins_.end(), s.plugin) == allowed_plugins_.end()) {
      return absl::PermissionDeniedError("tools.plugin '" + s.plugin +
                                         "' is not one this server loads (grpo rollout serve --tools-plugin PATH)");
    }
    const std::string key = absl::StrJoin({s.environment, s.tags.call_start, s.tags.call_end, s.tags.result_start,
                                           s.tags.result_end, s.plugin, s.plugin_config, std::to_string(s.timeout_ms)},
                                          absl::string_view("\0", 1));
    absl::MutexLock l(&mu_);  // held while opening: one environment per key, opened once
    for (const auto& [k, env] : open_) {
      if (k == key) return env;
    }
    GRPO_ASSIGN_OR_RETURN(std::shared_ptr<Environment> env, OpenToolEnvironment(s));
    if (open_.size() >= kMaxOpen) open_.pop_front();
    open_.emplace_back(key, env);
    return env;
  }

 private:
  static constexpr size_t kMaxOpen = 8;
  const std::vector<std::string> allowed_plugins_;
  absl::Mutex mu_;
  std::deque<std::pair<std::string, std::shared_ptr<Environment>>> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int64_t MaxPromptBytes(const ModelConfig& config, const tokenizer::Tokenizer& tokenizer,
                       const RolloutServeOptions& o) {
  if (o.max_prompt_bytes > 0) return o.max_prompt_bytes;
  const int64_t max_prompt = o.max_prompt_tokens > 0 ? o.max_prompt_tokens : config.max_position_embeddings - 1;
  int64_t longest = 1;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (const std::string* b = tokenizer.IdToBytes(id)) longest = std::max(longest, static_cast<int64_t>(b->size()));
  }
  return (CheckedInt64(std::max<int64_t>(max_prompt, 1)) * longest).value();
}

absl::StatusOr<GroupRequest> GroupRequestFromProto(const grpo::v1::GenerateRequest& p, const ModelConfig& config,
                                           const tokenizer::Tokenizer* tokenizer,
                                           const RolloutServeOptions& o, uint64_t drawn_seed) {
  GroupRequest r;
  const bool has_ids = p.prompt_token_ids_size() > 0, has_text = !p.prompt_text().empty();
  if (has_ids == has_text) {
    return absl::InvalidArgumentError("exactly one of prompt_token_ids and prompt_text must be set");
  }
  const int64_t max_prompt = o.max_prompt_tokens > 0 ? o.max_prompt_tokens : config.max_position_embeddings - 1;
  if (has_text) {
    if (tokenizer == nullptr) return absl::InvalidArgumentError("prompt_text needs a tokenizer and the server has none");
    // Refused before tokenizing: encoding costs memory many times the text's size.
    const int64_t max_bytes = MaxPromptBytes(config, *tokenizer, o);
    if (static_cast<int64_t>(p.prompt_text().size()) > max_bytes) {
      return absl::InvalidArgumentError("prompt_text has " + std::to_string(p.prompt_text().size()) +
                                        " bytes, the limit is " + std::to_string(max_bytes) +
                                        " (max_prompt_bytes: more than the " + std::to_string(max_prompt) +
                                        " prompt tokens allowed can cover)");
    }
    GRPO_ASSIGN_OR_RETURN(r.prompt, tokenizer->Encode(p.prompt_text()));
    if (r.prompt.empty()) return absl::InvalidArgumentError("prompt_text encodes to no tokens");
  } else {
    r.prompt.assign(p.prompt_token_ids().begin(), p.prompt_token_ids().end());
  }
  if (static_cast<int64_t>(r.prompt.size()) > max_prompt) {
    return absl::InvalidArgumentError("prompt has " + std::to_string(r.prompt.size()) + " tokens, the limit is " +
                                   std::to_string(max_prompt));
  }
  if (p.group_size() < 1) return absl::InvalidArgumentError("group_size must be >= 1, got 0");
  if (p.group_size() > o.max_group_size) {
    return absl::InvalidArgumentError("group_size " + std::to_string(p.group_size()) + " exceeds the limit of " +
                                   std::to_string(o.max_group_size));
  }
  r.n = p.group_size();
  const grpo::v1::SamplingParams& s = p.sampling();
  if (s.max_new_tokens() == 0) return absl::InvalidArgumentError("sampling.max_new_tokens must be > 0");
  r.max_new_tokens = s.max_new_tokens();
  r.sampling.temperature = s.has_temperature() ? s.temperature() : 1.0;
  if (s.top_p() < 0 || s.top_p() > 1) {
    return absl::InvalidArgumentError("sampling.top_p must be in (0, 1], got " + std::to_string(s.top_p()));
  }
  r.sampling.top_p = s.top_p() == 0 ? 1.0 : s.top_p();
  r.sampling.top_k = s.top_k();
  r.sampling.min_p = s.min_p();
  r.stop_tokens.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  r.stop_strings.assign(s.stop_strings().begin(), s.stop_strings().end());
  r.seed = s.has_seed() ? s.seed() : drawn_seed;
  r.return_routing = s.return_routing();
  r.return_raw_logprobs = s.return_raw_logprobs();
  if (absl::Status v = ValidateSampling(r.sampling); !v.ok()) return grpo::WithContext(v, "sampling: ");
  return r;
}

namespace {

// A sample in its proto form, with its text when the server has a tokenizer.
void SampleToProto(const SampleResult& s, const GroupRequest& req, const GroupResult& group,
                   const tokenizer::Tokenizer* tokenizer, grpo::v1::Sample* out) {
  SampleResultToProto(s, req, group, out);
  if (tokenizer != nullptr) {
    auto text = tokenizer->Decode(s.tokens);
    if (text.ok()) out->set_text(*text);
  }
}

}  // namespace

class RolloutServer::Impl final : public grpo::v1::RolloutService::Service {
 public:
  Impl(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer, RolloutServeOptions o)
      : engine_(engine), tokenizer_(tokenizer), o_(std::move(o)), in_flight_(o_.max_concurrent_requests),
        environments_(o_.tool_plugins), seeder_(std::random_device{}()) {}

  enum class State { kServing, kDraining, kStopped };

  grpc::Status Generate(grpc::ServerContext* ctx, const grpo::v1::GenerateRequest* req,
                        grpo::v1::GenerateResponse* resp) override {
    return Admit(ctx, *req, nullptr, resp);
  }

  grpc::Status GenerateStream(grpc::ServerContext* ctx, const grpo::v1::GenerateRequest* req,
                              grpc::ServerWriter<grpo::v1::GenerateStreamResponse>* writer) override {
    return Admit(ctx, *req, writer, nullptr);
  }

  grpc::Status UpdateWeights(grpc::ServerContext* ctx, grpc::ServerReader<grpo::v1::WeightUpdateChunk>* reader,
                             grpo::v1::WeightUpdateAck* ack) override {
    try {
      return UpdateWeightsCaught(ctx, reader, ack);
    } catch (const std::bad_alloc&) {  // staging a copy of the weights: refused, still serving
      ack->set_accepted(false);
      ack->set_reason("the rollout server ran out of memory staging the update; it serves version " +
                      std::to_string(engine_.weight_version()));
      ack->set_serving_version(engine_.weight_version());
      return grpc::Status::OK;
    }
  }

  grpc::Status UpdateWeightsCaught(grpc::ServerContext* ctx, grpc::ServerReader<grpo::v1::WeightUpdateChunk>* reader,
                                   grpo::v1::WeightUpdateAck* ack) {
    if (grpc::Status caller = CheckControlCaller(*ctx, "weight push", "weight pushes"); !caller.ok()) {
      return caller;  // before reading anything
    }
    auto reject = [&](absl::string_view reason) {
      ack->set_accepted(false);
      ack->set_reason(std::string(reason));
      ack->set_serving_version(engine_.weight_version());
      return grpc::Status::OK;
    };
    grpo::v1::WeightUpdateChunk chunk;
    const bool any = reader->Read(&chunk);
    grpo::v1::WeightUpdateChunk shard;  // which shard of which version the stream says it is
    shard.set_version(chunk.version());
    shard.set_shard_index(chunk.shard_index());
    shard.set_shard_count(chunk.shard_count());
    // Refused before anything is staged: a stale, mismatched or repeated shard of the version
    // being assembled (which stays intact).
    if (absl::Status early = CheckNextShard(shard); any && !early.ok()) {
      while (reader->Read(&chunk)) {}  // let the client's writes complete
      return reject(early.message());
    }
    // The stream is verified and staged by an assembler of its own, outside update_mu_: shards of
    // one version from different ranks are received concurrently.
    WeightAssemblerOptions wo;
    wo.serving_version = engine_.weight_version();
    absl::StatusOr<WeightAssembler> created = WeightAssembler::Create(engine_.config(), wo);
    if (!created.ok()) {
      while (reader->Read(&chunk)) {}
      return reject(created.status().message());
    }
    WeightAssembler& stream = *created;
    absl::Status error = any ? stream.Add(chunk) : absl::OkStatus();
    while (reader->Read(&chunk)) {  // read to the end even after an error, so the client's writes complete
      if (error.ok()) error = stream.Add(chunk);
    }
    ack->set_bytes_received(stream.bytes_received());
    if (error.ok()) error = stream.EndStream();
    absl::MutexLock one_at_a_time(&update_mu_);  // assembling and serving a version stay atomic
    if (state() != State::kServing) {
      pending_.reset();
      return reject("the rollout server is draining");
    }
    if (!error.ok()) {
      // A shard that failed after its first message poisons its version: it is never served.
      if (stream.failed() && stream.version() != 0 && pending_ && pending_->version() == stream.version()) {
        pending_.reset();
      }
      return reject(error.message());
    }
    auto assembler = AssemblerFor(stream.version(), shard);
    if (!assembler.ok()) return reject(assembler.status().message());
    if (error = (*assembler)->Merge(std::move(stream)); !error.ok()) {
      // A refused shard leaves the others intact; a failed merge poisons the version.
      if ((*assembler)->failed()) pending_.reset();
      return reject(error.message());
    }
    if ((*assembler)->shards_missing() > 0) {  // a shard of a version still being assembled
      ack->set_accepted(true);
      ack->set_shards_missing((*assembler)->shards_missing());
      ack->set_serving_version(engine_.weight_version());
      return grpc::Status::OK;
    }
    auto staged = (*assembler)->Finish();
    pending_.reset();
    if (!staged.ok()) return reject(staged.status().message());
    const uint64_t version = staged->version;
    if (absl::Status s = engine_.StageWeights(version, std::move(staged->params)); !s.ok()) return reject(s.message());
    engine_.WaitForStagedWeights();
    ack->set_accepted(true);
    ack->set_serving_version(engine_.weight_version());
    return grpc::Status::OK;
  }

  grpc::Status Logprobs(grpc::ServerContext* ctx, const grpo::v1::LogprobsRequest* req,
                        grpo::v1::LogprobsResponse* resp) override {
    if (o_.logprobs_model == nullptr) {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "this rollout server does not serve Logprobs (start it with --serve-logprobs)"};
    }
    if (engine_.weight_version() != 0) {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "this rollout server took weight version " + std::to_string(engine_.weight_version()) +
                  "; Logprobs scores only the weights loaded from disk (a teacher takes no weight pushes)"};
    }
    if (state() != State::kServing) return {grpc::StatusCode::UNAVAILABLE, "the rollout server is draining"};
    if (absl::Status v = ValidateLogprobsRequest(*req); !v.ok()) return ToGrpcStatus(v);
    try {
      absl::MutexLock one_at_a_time(&logprobs_mu_);
      if (absl::Now() > absl::FromChrono(ctx->deadline())) {
        return {grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed before the sequences were scored"};
      }
      std::vector<std::vector<int32_t>> seqs;
      for (const grpo::v1::TokenSequence& q : req->sequences()) seqs.emplace_back(q.token_ids().begin(), q.token_ids().end());
      absl::StatusOr<ForwardOutput> out = o_.logprobs_model->Forward(TokenBatch::FromSequences(seqs), {});
      if (!out.ok()) return ToGrpcStatus(out.status());
      size_t at = 0;
      for (const auto& q : seqs) {
        auto* lp = resp->add_sequences()->mutable_logprobs();
        lp->Add(out->logprobs.begin() + at, out->logprobs.begin() + at + (q.size() - 1));
        at += q.size() - 1;
      }
    } catch (const std::bad_alloc&) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, "the rollout server ran out of memory scoring this request"};
    }
    if (absl::Now() > absl::FromChrono(ctx->deadline())) {
      return {grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed while scoring"};
    }
    resp->set_request_id(req->request_id());
    resp->set_weight_version(0);
    return grpc::Status::OK;
  }

  // The refusal of a stream whose first message is `first` before it is staged: a shard of a
  // version older than the one being assembled, or one the pending version refuses (another
  // shard_count, a shard already taken).
  absl::Status CheckNextShard(const grpo::v1::WeightUpdateChunk& first) {
    absl::MutexLock l(&update_mu_);
    if (!pending_ || pending_->version() == 0) return absl::OkStatus();
    if (first.version() < pending_->version()) return StaleShard(first);
    if (first.version() > pending_->version()) return absl::OkStatus();  // drops the pending one later
    return pending_->CheckNextShard(first.version(), first.shard_index(), first.shard_count());
  }

  absl::Status StaleShard(const grpo::v1::WeightUpdateChunk& shard) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(update_mu_) {
    return absl::FailedPreconditionError(
        "weight update v" + std::to_string(shard.version()) + ": shard " + std::to_string(shard.shard_index()) +
        " of " + std::to_string(std::max<uint32_t>(shard.shard_count(), 1)) + " is stale: version " +
        std::to_string(pending_->version()) + " is being assembled");
  }

  // The assembler a received shard stream of `version` joins (`last` is one of its messages:
  // they all name the shard): the pending one of that version, else a new one (kept pending for
  // a sharded version). A newer version discards a pending older one that never completed; a
  // shard older than the pending version is refused without touching it.
  absl::StatusOr<WeightAssembler*> AssemblerFor(uint64_t version, const grpo::v1::WeightUpdateChunk& last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(update_mu_) {
    if (pending_ && version == pending_->version()) return &*pending_;
    if (pending_ && version < pending_->version()) return StaleShard(last);
    if (pending_) {
      std::fprintf(stderr, "grpo rollout serve: version %llu is dropped with %u of its shards missing (version %llu arrived)\n",
                   static_cast<unsigned long long>(pending_->version()), pending_->shards_missing(),
                   static_cast<unsigned long long>(version));
      pending_.reset();
    }
    WeightAssemblerOptions wo;
    wo.serving_version = engine_.weight_version();  // staged under update_mu_: nothing else is
    GRPO_ASSIGN_OR_RETURN(WeightAssembler a, WeightAssembler::Create(engine_.config(), wo));
    pending_.emplace(std::move(a));
    return &*pending_;
  }

  grpc::Status Health(grpc::ServerContext*, const grpo::v1::RolloutHealthRequest*,
                      grpo::v1::RolloutHealthResponse* resp) override {
    const EngineStats s = engine_.stats();
    switch (state()) {
      case State::kServing: resp->set_status(grpo::v1::RolloutHealthResponse::SERVING); break;
      case State::kDraining: resp->set_status(grpo::v1::RolloutHealthResponse::DRAINING); break;
      case State::kStopped: resp->set_status(grpo::v1::RolloutHealthResponse::NOT_SERVING); break;
    }
    resp->set_weight_version(s.weight_version);
    resp->set_queue_depth(static_cast<uint32_t>(s.waiting_groups));
    resp->set_running_sequences(static_cast<uint32_t>(s.running_sequences));
    resp->set_free_kv_blocks(static_cast<uint64_t>(s.free_blocks));
    resp->set_total_kv_blocks(static_cast<uint64_t>(s.total_blocks));
    resp->set_version(o_.version);
    resp->set_vocab_size(static_cast<uint32_t>(engine_.config().vocab_size));
    resp->set_serves_logprobs(o_.logprobs_model != nullptr);
    resp->set_serves_tools(tokenizer_ != nullptr);
    return grpc::Status::OK;
  }

  grpc::Status Drain(grpc::ServerContext* ctx, const grpo::v1::DrainRequest* req, grpo::v1::DrainResponse* resp) override {
    if (grpc::Status caller = CheckControlCaller(*ctx, "Drain call", "Drain calls"); !caller.ok()) return caller;
    const absl::Duration grace = req->has_grace_seconds() ? absl::Seconds(req->grace_seconds()) : absl::InfiniteDuration();
    auto [completed, aborted] = DrainEngine(grace);
    resp->set_completed_requests(static_cast<uint32_t>(completed));
    resp->set_aborted_requests(static_cast<uint32_t>(aborted));
    return grpc::Status::OK;
  }

  // See RolloutEngine::Drain for `grace`.
  std::pair<int64_t, int64_t> DrainEngine(absl::Duration grace) {
    {
      absl::MutexLock l(&mu_);
      if (state_ == State::kServing) state_ = State::kDraining;
    }
    auto counts = engine_.Drain(grace);
    absl::MutexLock l(&mu_);
    state_ = State::kStopped;
    return counts;
  }

 private:
  State state() {
    absl::MutexLock l(&mu_);
    return state_;
  }

  // Whether this call may push weights or drain the server (see service.h); `what` and `whats`
  // name one call and several in the errors.
  grpc::Status CheckControlCaller(const grpc::ServerContext& ctx, const std::string& what,
                                  const std::string& whats) const {
    if (o_.push_token.empty()) {
      if (o_.allow_unauthenticated_push) return grpc::Status::OK;
      return {grpc::StatusCode::PERMISSION_DENIED,
              "this rollout server takes no " + whats + ": it was started without a push token "
              "(--push-token-file or $GRPO_PUSH_TOKEN_FILE; --allow-unauthenticated-push for local tests)"};
    }
    const auto& metadata = ctx.client_metadata();
    const auto it = metadata.find(kPushTokenMetadataKey);
    if (it == metadata.end()) {
      return {grpc::StatusCode::UNAUTHENTICATED,
              what + " without a push token (metadata " + kPushTokenMetadataKey +
                  "); give the caller the job's token file ($GRPO_PUSH_TOKEN_FILE)"};
    }
    if (!PushTokensEqual(absl::string_view(it->second.data(), it->second.size()), o_.push_token)) {
      return {grpc::StatusCode::UNAUTHENTICATED, what + " with a wrong push token (not this job's)"};
    }
    return grpc::Status::OK;
  }

  // The size limits of a Logprobs request (service.h), checked before anything is computed.
  absl::Status ValidateLogprobsRequest(const grpo::v1::LogprobsRequest& req) const {
    if (req.sequences_size() == 0) return absl::InvalidArgumentError("sequences: at least one is needed");
    const ModelConfig& config = o_.logprobs_model->config();
    int64_t total = 0;
    for (int i = 0; i < req.sequences_size(); ++i) {
      const auto& ids = req.sequences(i).token_ids();
      const std::string which = "sequences[" + std::to_string(i) + "]";
      if (ids.empty()) return absl::InvalidArgumentError(which + " has no tokens");
      if (ids.size() > config.max_position_embeddings) {
        return absl::InvalidArgumentError(which + " has " + std::to_string(ids.size()) +
                                          " tokens, more than the model's max_position_embeddings " +
                                          std::to_string(config.max_position_embeddings));
      }
      for (int32_t id : ids) {
        if (id < 0 || id >= config.vocab_size) {
          return absl::InvalidArgumentError(which + " has token id " + std::to_string(id) + ", outside the vocabulary [0, " +
                                            std::to_string(config.vocab_size) + ")");
        }
      }
      total += ids.size();
    }
    if (total > o_.max_logprobs_tokens) {
      return absl::InvalidArgumentError("the request has " + std::to_string(total) +
                                        " tokens, the limit is max_logprobs_tokens " +
                                        std::to_string(o_.max_logprobs_tokens));
    }
    return absl::OkStatus();
  }

  // Run within the limit of calls in flight; an allocation that fails is RESOURCE_EXHAUSTED.
  grpc::Status Admit(grpc::ServerContext* ctx, const grpo::v1::GenerateRequest& p,
                     grpc::ServerWriter<grpo::v1::GenerateStreamResponse>* writer, grpo::v1::GenerateResponse* resp) {
    InFlightLimit::Ticket ticket = in_flight_.TryAcquire();
    if (!ticket) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "the rollout server has " + std::to_string(in_flight_.max()) +
                  " requests in flight, its limit (max_concurrent_requests); retry later"};
    }
    grpc::Status status;
    try {
      status = Run(ctx, p, writer, resp);
    } catch (const std::bad_alloc&) {
      status = {grpc::StatusCode::RESOURCE_EXHAUSTED, "the rollout server ran out of memory for this request"};
    }
    // A large prompt_text leaves its tokenization's freed memory in the allocator.
    if (p.ByteSizeLong() >= (size_t{16} << 20)) ReturnFreedMemoryToSystem();
    return status;
  }

  grpc::Status Run(grpc::ServerContext* ctx, const grpo::v1::GenerateRequest& p,
                   grpc::ServerWriter<grpo::v1::GenerateStreamResponse>* writer, grpo::v1::GenerateResponse* resp) {
    if (state() != State::kServing) return {grpc::StatusCode::UNAVAILABLE, "the rollout server is draining"};
    uint64_t drawn;
    {
      absl::MutexLock l(&mu_);
      drawn = seeder_();
    }
    auto req = GroupRequestFromProto(p, engine_.config(), tokenizer_, o_, drawn);
    if (!req.ok()) return ToGrpcStatus(req.status());
    if (absl::Status tools = AttachEnvironment(p, &*req); !tools.ok()) return ToGrpcStatus(tools);
    auto call = std::make_shared<CallState>();
    grpo::v1::Group header;
    header.set_group_id(p.group_id());
    header.set_prompt_index(p.prompt_index());
    header.mutable_prompt_token_ids()->Add(req->prompt.begin(), req->prompt.end());
    header.set_prompt_text(p.prompt_text());
    const GroupRequest request = *req;
    const tokenizer::Tokenizer* tok = tokenizer_;
    GroupCallbacks cb;
    if (writer != nullptr) {
      cb.on_prefill = [call, header, request, id = p.request_id()](const GroupResult& g) {
        grpo::v1::GenerateStreamResponse m;
        m.set_request_id(id);
        *m.mutable_prompt() = header;
        if (request.return_routing && g.num_moe_layers > 0) {
          RoutingToProto(g.prompt_routing, g.num_moe_layers, g.top_k, m.mutable_prompt()->mutable_prompt_routing());
        }
        call->Push(std::move(m));
      };
      cb.on_sample = [call, request, tok, id = p.request_id(), L = engine_.config().NumMoeLayers(),
                      K = engine_.config().num_experts_per_tok](const SampleResult& s) {
        grpo::v1::GenerateStreamResponse m;
        m.set_request_id(id);
        GroupResult dims;
        dims.num_moe_layers = L;
        dims.top_k = K;
        SampleToProto(s, request, dims, tok, m.mutable_sample());
        call->Push(std::move(m));
      };
    }
    cb.on_done = [call](GroupResult r) {
      absl::MutexLock l(&call->mu);
      call->result = std::move(r);
      call->done = true;
    };
    auto id = engine_.Submit(*req, std::move(cb));
    if (!id.ok()) return ToGrpcStatus(id.status());
    grpc::Status ended = grpc::Status::OK;
    bool cancelled = false, prompt_sent = false;
    const absl::Time deadline = absl::FromChrono(ctx->deadline());
    absl::ReleasableMutexLock l(&call->mu);
    for (;;) {
      // Wakes for events, and every 20 ms to notice a cancelled call or a passed deadline.
      call->mu.AwaitWithTimeout(absl::Condition(call.get(), &CallState::Ready), absl::Milliseconds(20));
      while (!call->events.empty()) {
        grpo::v1::GenerateStreamResponse m = std::move(call->events.front());
        call->events.pop_front();
        if (cancelled) continue;
        call->mu.Unlock();
        bool ok = true;
        if (!prompt_sent && !m.has_prompt()) {  // aborted before its prefill: the prompt still comes first
          grpo::v1::GenerateStreamResponse first;
          first.set_request_id(p.request_id());
          *first.mutable_prompt() = header;
          ok = writer->Write(first);
        }
        prompt_sent = true;
        ok = ok && writer->Write(m);
        call->mu.Lock();
        if (!ok && !cancelled) {  // the client went away
          cancelled = true;
          ended = {grpc::StatusCode::CANCELLED, "the client stopped reading"};
          engine_.Cancel(*id);
        }
      }
      if (call->done) break;
      if (!cancelled && (ctx->IsCancelled() || absl::Now() > deadline)) {
        cancelled = true;
        const bool expired = absl::Now() > deadline;
        ended = expired ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed while generating")
                        : grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled");
        engine_.Cancel(*id);  // its samples abort and its blocks are freed before done
      }
    }
    if (cancelled) return ended;
    const GroupResult g = std::move(call->result);  // done: the engine no longer touches `call`
    l.Release();
    if (writer != nullptr) {
      grpo::v1::GenerateStreamResponse m;
      m.set_request_id(p.request_id());
      TimingToProto(g.timing, m.mutable_timing());
      writer->Write(m);
      return grpc::Status::OK;
    }
    resp->set_request_id(p.request_id());
    *resp->mutable_group() = header;
    if (request.return_routing && g.num_moe_layers > 0) {
      RoutingToProto(g.prompt_routing, g.num_moe_layers, g.top_k, resp->mutable_group()->mutable_prompt_routing());
    }
    for (const SampleResult& s : g.samples) SampleToProto(s, request, g, tok, resp->mutable_group()->add_samples());
    TimingToProto(g.timing, resp->mutable_timing());
    return grpc::Status::OK;
  }

  // The request's tool environment (GenerateRequest.tools), run here as the embedded engine runs it.
  absl::Status AttachEnvironment(const grpo::v1::GenerateRequest& p, GroupRequest* req) {
    if (!p.has_tools()) return absl::OkStatus();
    absl::StatusOr<ToolSettings> settings = ToolSettingsFromProto(p.tools());
    if (!settings.ok()) return grpo::WithContext(settings.status(), "tools: ");
    if (tokenizer_ == nullptr) return absl::InvalidArgumentError("tools: tool use needs a tokenizer and the server has none");
    GRPO_ASSIGN_OR_RETURN(req->environment, environments_.Get(*settings));
    req->max_tool_calls = settings->max_calls;
    req->max_tool_output_tokens = settings->max_output_tokens;
    return absl::OkStatus();  // Submit validates the rest
  }

  RolloutEngine& engine_;
  const tokenizer::Tokenizer* tokenizer_;
  RolloutServeOptions o_;
  InFlightLimit in_flight_;  // Generate / GenerateStream calls
  ToolEnvironments environments_;
  absl::Mutex update_mu_;  // guards pending_: merging a received shard, assembling and staging a version
  absl::Mutex logprobs_mu_;  // one Logprobs at a time
  // The update being assembled: between the calls of a sharded version's shards, and during a
  // call (a whole update is never left here after its call).
  std::optional<WeightAssembler> pending_ ABSL_GUARDED_BY(update_mu_);
  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kServing;
  std::mt19937_64 seeder_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<RolloutServer>> RolloutServer::Start(RolloutEngine& engine,
                                                            const tokenizer::Tokenizer* tokenizer,
                                                            RolloutServeOptions options) {
  GRPO_RETURN_IF_ERROR(ParseListenAddress(options.listen).status());
  if (!options.push_token.empty()) {
    GRPO_RETURN_IF_ERROR(ValidatePushToken(options.push_token));
    if (options.allow_unauthenticated_push) {
      return absl::InvalidArgumentError("a push token and allow_unauthenticated_push exclude each other");
    }
  }
  if (options.max_request_mb <= 0 || options.max_request_mb > 2047 || options.max_concurrent_requests <= 0 ||
      options.max_message_mb <= 0 || options.max_message_mb > 2047) {
    return absl::InvalidArgumentError("max_request_mb and max_message_mb must be in [1, 2047] and "
                                      "max_concurrent_requests positive");
  }
  {
    MemoryPlan plan;
    plan.Add("requests in flight (max_request_mb " + std::to_string(options.max_request_mb) +
                 " x (max_concurrent_requests " + std::to_string(options.max_concurrent_requests) + " + " +
                 std::to_string(kExtraServerThreads) + " server threads))",
             CheckedInt64(options.max_request_mb) * (int64_t{1} << 20) *
                 (CheckedInt64(options.max_concurrent_requests) + kExtraServerThreads));
    if (options.logprobs_model != nullptr) {
      if (options.max_logprobs_tokens <= 0) return absl::InvalidArgumentError("max_logprobs_tokens must be positive");
      if (options.logprobs_model->config().vocab_size != engine.config().vocab_size) {
        return absl::InvalidArgumentError("the logprobs model's vocab_size differs from the engine's");
      }
      plan.Add("a Logprobs forward pass (max_logprobs_tokens " + std::to_string(options.max_logprobs_tokens) + ")",
               ActivationBytes(options.logprobs_model->config(), options.max_logprobs_tokens, false));
    }
    GRPO_RETURN_IF_ERROR(plan.Check("the rollout server"));
  }
  if (tokenizer != nullptr) options.max_prompt_bytes = MaxPromptBytes(engine.config(), *tokenizer, options);
  std::unique_ptr<RolloutServer> s(new RolloutServer());
  s->impl_ = std::make_unique<Impl>(engine, tokenizer, options);
  // Threads (each may hold a received request) beyond the admitted calls serve Health, Drain,
  // UpdateWeights and gRPC's pollers; counted in the memory plan above.
  GRPO_ASSIGN_OR_RETURN(
      StartedServer started,
      StartLimitedGrpcServer(s->impl_.get(),
                             {options.max_concurrent_requests, options.max_request_mb, options.max_message_mb},
                             options.listen, "the rollout server"));
  s->server_ = std::move(started.server);
  s->port_ = started.port;
  return s;
}

RolloutServer::~RolloutServer() { Shutdown(absl::ZeroDuration()); }

void RolloutServer::Shutdown(absl::Duration grace) {
  if (server_ == nullptr) return;  // Start failed: nothing runs
  if (shut_down_.exchange(true)) return;
  impl_->DrainEngine(grace);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  server_->Wait();
}

void RolloutServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

absl::Status ServeRolloutUntilSignal(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer,
                               RolloutServeOptions options) {
  // Block the signals in every thread (gRPC's and the engine's included) and wait for them here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const std::string listen = options.listen;
  const absl::Duration grace = options.shutdown_grace;
  GRPO_ASSIGN_OR_RETURN(auto server, RolloutServer::Start(engine, tokenizer, std::move(options)));
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::fprintf(stderr, "grpo rollout serve: listening on %s:%d\n", host.c_str(), server->port());
  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "grpo rollout serve: %s, draining (grace %.1f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               absl::ToDoubleSeconds(grace));
  server->Shutdown(grace);
  std::fprintf(stderr, "grpo rollout serve: stopped\n");
  return absl::OkStatus();
}

}  // namespace grpo
