#include "rollout/service.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>

#include "rollout/weight_stream.h"

namespace grpo {
namespace {

grpc::Status ToGrpc(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kInvalidArgument: return {grpc::StatusCode::INVALID_ARGUMENT, s.message()};
    case StatusCode::kResourceExhausted: return {grpc::StatusCode::RESOURCE_EXHAUSTED, s.message()};
    case StatusCode::kUnavailable: return {grpc::StatusCode::UNAVAILABLE, s.message()};
    default: return {grpc::StatusCode::INTERNAL, s.message()};
  }
}

grpo::v1::FinishReason ReasonToProto(const std::string& r) {
  if (r == "stop") return grpo::v1::FINISH_REASON_STOP;
  if (r == "length") return grpo::v1::FINISH_REASON_LENGTH;
  if (r == "abort") return grpo::v1::FINISH_REASON_ABORTED;
  return grpo::v1::FINISH_REASON_UNSPECIFIED;
}

void RoutingToProto(const std::vector<int32_t>& experts, int64_t L, int64_t K, grpo::v1::TokenRouting* out) {
  out->set_num_moe_layers(static_cast<uint32_t>(L));
  out->set_top_k(static_cast<uint32_t>(K));
  for (int32_t e : experts) out->add_experts(static_cast<uint32_t>(e));
}

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
  std::mutex mu;
  std::condition_variable cv;
  std::deque<grpo::v1::GenerateStreamResponse> events;
  bool done = false;
  GroupResult result;
};

}  // namespace

Result<GroupRequest> GroupRequestFromProto(const grpo::v1::GenerateRequest& p, const ModelConfig& config,
                                           const tokenizer::Tokenizer* tokenizer,
                                           const RolloutServeOptions& o, uint64_t drawn_seed) {
  GroupRequest r;
  const bool has_ids = p.prompt_token_ids_size() > 0, has_text = !p.prompt_text().empty();
  if (has_ids == has_text) {
    return Status::InvalidArgument("exactly one of prompt_token_ids and prompt_text must be set");
  }
  if (has_text) {
    if (tokenizer == nullptr) return Status::InvalidArgument("prompt_text needs a tokenizer and the server has none");
    GRPO_ASSIGN_OR_RETURN(r.prompt, tokenizer->Encode(p.prompt_text()));
    if (r.prompt.empty()) return Status::InvalidArgument("prompt_text encodes to no tokens");
  } else {
    r.prompt.assign(p.prompt_token_ids().begin(), p.prompt_token_ids().end());
  }
  const int64_t max_prompt = o.max_prompt_tokens > 0 ? o.max_prompt_tokens : config.max_position_embeddings - 1;
  if (static_cast<int64_t>(r.prompt.size()) > max_prompt) {
    return Status::InvalidArgument("prompt has " + std::to_string(r.prompt.size()) + " tokens, the limit is " +
                                   std::to_string(max_prompt));
  }
  if (p.group_size() < 1) return Status::InvalidArgument("group_size must be >= 1, got 0");
  if (p.group_size() > o.max_group_size) {
    return Status::InvalidArgument("group_size " + std::to_string(p.group_size()) + " exceeds the limit of " +
                                   std::to_string(o.max_group_size));
  }
  r.n = p.group_size();
  const grpo::v1::SamplingParams& s = p.sampling();
  if (s.max_new_tokens() == 0) return Status::InvalidArgument("sampling.max_new_tokens must be > 0");
  r.max_new_tokens = s.max_new_tokens();
  r.sampling.temperature = s.has_temperature() ? s.temperature() : 1.0;
  if (s.top_p() < 0 || s.top_p() > 1) {
    return Status::InvalidArgument("sampling.top_p must be in (0, 1], got " + std::to_string(s.top_p()));
  }
  r.sampling.top_p = s.top_p() == 0 ? 1.0 : s.top_p();
  r.sampling.top_k = s.top_k();
  r.sampling.min_p = s.min_p();
  r.stop_tokens.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  r.stop_strings.assign(s.stop_strings().begin(), s.stop_strings().end());
  r.seed = s.has_seed() ? s.seed() : drawn_seed;
  r.return_routing = s.return_routing();
  r.return_raw_logprobs = s.return_raw_logprobs();
  if (Status v = ValidateSampling(r.sampling); !v.ok()) return v.WithContext("sampling: ");
  return r;
}

void SampleToProto(const SampleResult& s, const GroupRequest& req, const GroupResult* group,
                   const tokenizer::Tokenizer* tokenizer, grpo::v1::Sample* out) {
  out->set_sample_index(static_cast<uint32_t>(s.index));
  out->mutable_token_ids()->Add(s.tokens.begin(), s.tokens.end());
  const bool greedy = req.sampling.temperature == 0.0;
  for (float lp : s.logprobs) out->add_logprobs(greedy ? 0.0f : lp);
  if (req.return_raw_logprobs) out->mutable_raw_logprobs()->Add(s.raw_logprobs.begin(), s.raw_logprobs.end());
  out->set_finish_reason(ReasonToProto(s.finish_reason));
  for (const VersionSpan& v : s.versions) {
    auto* span = out->add_weight_versions();
    span->set_version(v.version);
    span->set_first_token(static_cast<uint32_t>(v.first_token));
  }
  if (group != nullptr && group->num_moe_layers > 0 && req.return_routing) {
    RoutingToProto(s.routing, group->num_moe_layers, group->top_k, out->mutable_routing());
  }
  if (tokenizer != nullptr) {
    auto text = tokenizer->Decode(s.tokens);
    if (text.ok()) out->set_text(*text);
  }
  out->set_seed(req.seed);
}

class RolloutServer::Impl final : public grpo::v1::RolloutService::Service {
 public:
  Impl(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer, RolloutServeOptions o)
      : engine_(engine), tokenizer_(tokenizer), o_(std::move(o)), seeder_(std::random_device{}()) {}

  enum class State { kServing, kDraining, kStopped };

  grpc::Status Generate(grpc::ServerContext* ctx, const grpo::v1::GenerateRequest* req,
                        grpo::v1::GenerateResponse* resp) override {
    return Run(ctx, *req, nullptr, resp);
  }

  grpc::Status GenerateStream(grpc::ServerContext* ctx, const grpo::v1::GenerateRequest* req,
                              grpc::ServerWriter<grpo::v1::GenerateStreamResponse>* writer) override {
    return Run(ctx, *req, writer, nullptr);
  }

  grpc::Status UpdateWeights(grpc::ServerContext*, grpc::ServerReader<grpo::v1::WeightUpdateChunk>* reader,
                             grpo::v1::WeightUpdateAck* ack) override {
    std::lock_guard<std::mutex> one_at_a_time(update_mu_);
    auto reject = [&](const std::string& reason) {
      ack->set_accepted(false);
      ack->set_reason(reason);
      ack->set_serving_version(engine_.weight_version());
      return grpc::Status::OK;
    };
    auto assembler = WeightAssembler::Create(engine_.config());
    if (!assembler.ok()) return reject(assembler.status().message());
    grpo::v1::WeightUpdateChunk chunk;
    Status error;
    while (reader->Read(&chunk)) {  // read to the end even after an error, so the client's writes complete
      if (error.ok()) error = assembler->Add(chunk);
    }
    ack->set_bytes_received(assembler->bytes_received());
    if (state() != State::kServing) return reject("the rollout server is draining");
    if (!error.ok()) return reject(error.message());
    auto staged = assembler->Finish();
    if (!staged.ok()) return reject(staged.status().message());
    const uint64_t version = staged->version;
    if (Status s = engine_.StageWeights(version, std::move(staged->params)); !s.ok()) return reject(s.message());
    engine_.WaitForStagedWeights();
    ack->set_accepted(true);
    ack->set_serving_version(engine_.weight_version());
    return grpc::Status::OK;
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
    return grpc::Status::OK;
  }

  grpc::Status Drain(grpc::ServerContext*, const grpo::v1::DrainRequest* req, grpo::v1::DrainResponse* resp) override {
    const double grace = req->has_grace_seconds() ? req->grace_seconds() : -1.0;
    auto [completed, aborted] = DrainEngine(grace);
    resp->set_completed_requests(static_cast<uint32_t>(completed));
    resp->set_aborted_requests(static_cast<uint32_t>(aborted));
    return grpc::Status::OK;
  }

  std::pair<int64_t, int64_t> DrainEngine(double grace_seconds) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (state_ == State::kServing) state_ = State::kDraining;
    }
    const auto grace = grace_seconds < 0 ? std::chrono::milliseconds(-1)
                                         : std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000));
    auto counts = engine_.Drain(grace);
    std::lock_guard<std::mutex> l(mu_);
    state_ = State::kStopped;
    return counts;
  }

 private:
  State state() {
    std::lock_guard<std::mutex> l(mu_);
    return state_;
  }

  grpc::Status Run(grpc::ServerContext* ctx, const grpo::v1::GenerateRequest& p,
                   grpc::ServerWriter<grpo::v1::GenerateStreamResponse>* writer, grpo::v1::GenerateResponse* resp) {
    if (state() != State::kServing) return {grpc::StatusCode::UNAVAILABLE, "the rollout server is draining"};
    uint64_t drawn;
    {
      std::lock_guard<std::mutex> l(mu_);
      drawn = seeder_();
    }
    auto req = GroupRequestFromProto(p, engine_.config(), tokenizer_, o_, drawn);
    if (!req.ok()) return ToGrpc(req.status());
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
        std::lock_guard<std::mutex> l(call->mu);
        call->events.push_back(std::move(m));
        call->cv.notify_all();
      };
      cb.on_sample = [call, request, tok, id = p.request_id(), L = engine_.config().NumMoeLayers(),
                      K = engine_.config().num_experts_per_tok](const SampleResult& s) {
        grpo::v1::GenerateStreamResponse m;
        m.set_request_id(id);
        GroupResult dims;
        dims.num_moe_layers = L;
        dims.top_k = K;
        SampleToProto(s, request, &dims, tok, m.mutable_sample());
        std::lock_guard<std::mutex> l(call->mu);
        call->events.push_back(std::move(m));
        call->cv.notify_all();
      };
    }
    cb.on_done = [call](GroupResult r) {
      std::lock_guard<std::mutex> l(call->mu);
      call->result = std::move(r);
      call->done = true;
      call->cv.notify_all();
    };
    auto id = engine_.Submit(*req, std::move(cb));
    if (!id.ok()) return ToGrpc(id.status());
    grpc::Status ended = grpc::Status::OK;
    bool cancelled = false, prompt_sent = false;
    std::unique_lock<std::mutex> l(call->mu);
    for (;;) {
      call->cv.wait_for(l, std::chrono::milliseconds(20), [&] { return call->done || !call->events.empty(); });
      while (!call->events.empty()) {
        grpo::v1::GenerateStreamResponse m = std::move(call->events.front());
        call->events.pop_front();
        if (cancelled) continue;
        l.unlock();
        bool ok = true;
        if (!prompt_sent && !m.has_prompt()) {  // aborted before its prefill: the prompt still comes first
          grpo::v1::GenerateStreamResponse first;
          first.set_request_id(p.request_id());
          *first.mutable_prompt() = header;
          ok = writer->Write(first);
        }
        prompt_sent = true;
        ok = ok && writer->Write(m);
        l.lock();
        if (!ok && !cancelled) {  // the client went away
          cancelled = true;
          ended = {grpc::StatusCode::CANCELLED, "the client stopped reading"};
          engine_.Cancel(*id);
        }
      }
      if (call->done) break;
      if (!cancelled && (ctx->IsCancelled() || std::chrono::system_clock::now() > ctx->deadline())) {
        cancelled = true;
        const bool expired = std::chrono::system_clock::now() > ctx->deadline();
        ended = expired ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed while generating")
                        : grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled");
        engine_.Cancel(*id);  // its samples abort and its blocks are freed before done
      }
    }
    if (cancelled) return ended;
    const GroupResult& g = call->result;
    if (writer != nullptr) {
      grpo::v1::GenerateStreamResponse m;
      m.set_request_id(p.request_id());
      TimingToProto(g.timing, m.mutable_timing());
      l.unlock();
      writer->Write(m);
      return grpc::Status::OK;
    }
    resp->set_request_id(p.request_id());
    *resp->mutable_group() = header;
    if (request.return_routing && g.num_moe_layers > 0) {
      RoutingToProto(g.prompt_routing, g.num_moe_layers, g.top_k, resp->mutable_group()->mutable_prompt_routing());
    }
    for (const SampleResult& s : g.samples) SampleToProto(s, request, &g, tok, resp->mutable_group()->add_samples());
    TimingToProto(g.timing, resp->mutable_timing());
    return grpc::Status::OK;
  }

  RolloutEngine& engine_;
  const tokenizer::Tokenizer* tokenizer_;
  RolloutServeOptions o_;
  std::mutex mu_, update_mu_;
  State state_ = State::kServing;
  std::mt19937_64 seeder_;
};

Result<std::unique_ptr<RolloutServer>> RolloutServer::Start(RolloutEngine& engine,
                                                            const tokenizer::Tokenizer* tokenizer,
                                                            RolloutServeOptions options) {
  if (options.listen.find(':') == std::string::npos) {
    return Status::InvalidArgument("--listen must be HOST:PORT, got '" + options.listen + "'");
  }
  std::unique_ptr<RolloutServer> s(new RolloutServer());
  s->impl_ = std::make_unique<Impl>(engine, tokenizer, options);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(s->impl_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  builder.SetMaxSendMessageSize(options.max_message_mb << 20);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) return Status::Unavailable("cannot listen on " + options.listen);
  return s;
}

RolloutServer::~RolloutServer() { Shutdown(std::chrono::milliseconds(0)); }

void RolloutServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_.exchange(true)) return;
  impl_->DrainEngine(grace.count() < 0 ? -1.0 : grace.count() / 1000.0);
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
}

void RolloutServer::Wait() { server_->Wait(); }

Status ServeRolloutUntilSignal(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer,
                               RolloutServeOptions options) {
  // Block the signals in every thread (gRPC's and the engine's included) and wait for them here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const std::string listen = options.listen;
  const double grace = options.shutdown_grace_seconds;
  GRPO_ASSIGN_OR_RETURN(auto server, RolloutServer::Start(engine, tokenizer, std::move(options)));
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::fprintf(stderr, "grpo rollout serve: listening on %s:%d\n", host.c_str(), server->port());
  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "grpo rollout serve: %s, draining (grace %.1f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               grace);
  server->Shutdown(std::chrono::milliseconds(static_cast<int64_t>(grace * 1000)));
  std::fprintf(stderr, "grpo rollout serve: stopped\n");
  return Status::Ok();
}

}  // namespace grpo
