// RolloutService over gRPC (proto/rollout.proto), serving one RolloutEngine.
//
// Contract:
//  - Listens on RolloutServeOptions::listen (loopback by default): HOST:PORT with PORT in
//    0..65535, 0 picking a free port (see port()). The address is its own: a port another
//    server listens on is an error, not shared (core/grpc_server.h). Start fails with
//    InvalidArgument for a bad address and Unavailable naming why it cannot listen.
//  - Bytes in flight are bounded: a request larger than max_request_mb is refused by gRPC
//    (RESOURCE_EXHAUSTED); at most max_concurrent_requests Generate / GenerateStream calls run
//    at once and the rest are refused with RESOURCE_EXHAUSTED at once (gRPC's thread quota is
//    that plus a few, for Health, Drain and UpdateWeights). Start refuses options whose
//    requests in flight (max_request_mb x (max_concurrent_requests + 1)) do not fit in memory
//    (core/memory_plan.h). A handler whose allocation fails answers RESOURCE_EXHAUSTED.
//  - Generate / GenerateStream: the request is checked first (exactly one of prompt ids and
//    text; a prompt_text longer than max_prompt_bytes is refused before it is tokenized;
//    group_size in [1, max_group_size]; prompt at most max_prompt_tokens; max_new_tokens
//    > 0 and prompt + max_new_tokens within the model's max_position_embeddings; sampling
//    ranges; stop strings need a tokenizer) and refused with INVALID_ARGUMENT naming the field,
//    or RESOURCE_EXHAUSTED when one sample could not fit in the whole KV pool. While draining:
//    UNAVAILABLE. A cancelled call or one whose deadline passes cancels its group in the engine
//    (its blocks are freed before the handler returns) and ends CANCELLED / DEADLINE_EXCEEDED.
//    GenerateStream sends the prompt (after its prefill), each sample as it finishes, then the
//    timing. For greedy requests (temperature 0) Sample.logprobs are 0 as the proto says.
//    Sample.seed is the base seed of the group (SamplingParams.seed, or the one the server drew):
//    sample i's stream is seeded by (seed, i).
//  - Tools (GenerateRequest.tools, multi-turn tool use): the server opens the environment the
//    settings name (rollout/tool_settings.h; the python tool and plugins in its sandbox, as in the
//    embedded engine) and keeps it open for later requests with the same settings (at most 8
//    kept). Bad settings or a server without a tokenizer: INVALID_ARGUMENT naming tools.*; a
//    plugin not in tool_plugins: PERMISSION_DENIED; an environment that cannot be set up (no
//    user namespaces for the sandbox): its error. Samples carry environment_spans.
//  - UpdateWeights: first the caller is checked, before any chunk is read: with a push_token,
//    the call must carry it as metadata kPushTokenMetadataKey (rollout/push_token.h; compared in
//    constant time), else UNAUTHENTICATED; without one, PERMISSION_DENIED unless
//    allow_unauthenticated_push. Then chunks go to a WeightAssembler (rollout/weight_stream.h),
//    which verifies them (a version newer than the serving one and within max_version_step of
//    it, shapes, checksums, finite values); on success the weights are staged in the engine and
//    the ack is sent once they serve. Calls run concurrently: each stream is staged by an
//    assembler of its own, and the shards of a sharded version (one per learner rank) join the
//    version under assembly one at a time, the last one assembling and serving it atomically
//    (docs/weights.md, "Sharded pushes"). Any error after the caller check is an ack with
//    accepted=false and the reason; the old version keeps serving.
//  - Logprobs: with RolloutServeOptions::logprobs_model (`grpo rollout serve --serve-logprobs`),
//    the per-token log-probabilities of the request's sequences under that model (a separate
//    copy of the weights loaded from disk, version 0; a teacher in on-policy distillation), one
//    Forward per call, calls one at a time. Checked first, INVALID_ARGUMENT naming the limit: at
//    least one sequence, each of 1..max_position_embeddings tokens with ids in the vocabulary,
//    at most max_logprobs_tokens tokens in all (Start checks that one Forward over that many
//    fits in memory). FAILED_PRECONDITION without a logprobs model, or once an update has been
//    accepted (the copy would not be the serving weights); UNAVAILABLE while draining;
//    DEADLINE_EXCEEDED when the call's deadline passed before the scores were ready.
//  - Health: SERVING, DRAINING during Drain, NOT_SERVING after; engine load and version, the
//    model's vocab_size, whether Logprobs is served.
//  - Drain(grace): the caller is checked as for UpdateWeights; then it refuses new work, lets in-flight groups finish within the grace (absent: no
//    limit), aborts the rest (their samples end FINISH_REASON_ABORTED), returns the counts.
//  - ServeRolloutUntilSignal: on SIGTERM/SIGINT drains with the configured grace, stops the
//    server and returns OK.
#ifndef GRPO_ROLLOUT_SERVICE_H_
#define GRPO_ROLLOUT_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/engine.h"
#include "tokenizer/tokenizer.h"

namespace grpo {

struct RolloutServeOptions {
  std::string listen = "127.0.0.1:50061";
  int64_t max_prompt_tokens = 0;   // 0: the model's max_position_embeddings - 1
  int64_t max_group_size = 1024;
  // prompt_text bytes; 0: max_prompt_tokens x the longest token of the tokenizer in bytes (a
  // longer text encodes to more tokens than the limit, unless NFC shortens it or added tokens
  // with lstrip/rstrip swallow whitespace).
  int64_t max_prompt_bytes = 0;
  int max_request_mb = 16;           // largest request received (gRPC max receive message size)
  int max_concurrent_requests = 64;  // Generate / GenerateStream calls at once
  int max_message_mb = 512;          // largest response sent
  absl::Duration shutdown_grace = absl::Seconds(30);  // Drain grace on SIGTERM/SIGINT
  // The job's push token (rollout/push_token.h), required on UpdateWeights and Drain; empty: no
  // token, and those calls are refused unless allow_unauthenticated_push (for local tests; both
  // set is an error).
  std::string push_token;
  bool allow_unauthenticated_push = false;
  // Tool plugins (shared libraries) that requests may name in GenerateRequest.tools.plugin; any
  // other path is refused (PERMISSION_DENIED). The calculator and the python tool need no listing.
  std::vector<std::string> tool_plugins;
  std::string version = "grpo 0.1.0";
  // The model Logprobs scores with (the same directory as the engine's, loaded on its own;
  // must outlive the server and share the engine's vocabulary); null: Logprobs is refused.
  CausalLM* logprobs_model = nullptr;
  int64_t max_logprobs_tokens = 16384;  // tokens of one Logprobs request, all sequences together
};

// The longest prompt_text accepted: options.max_prompt_bytes, or when 0 its default (see there).
int64_t MaxPromptBytes(const ModelConfig& config, const tokenizer::Tokenizer& tokenizer,
                       const RolloutServeOptions& options);

// A GroupRequest from its proto form; InvalidArgument naming the field on a bad request.
// `drawn_seed` is used when the request has no seed.
absl::StatusOr<GroupRequest> GroupRequestFromProto(const grpo::v1::GenerateRequest& request, const ModelConfig& config,
                                           const tokenizer::Tokenizer* tokenizer,
                                           const RolloutServeOptions& options, uint64_t drawn_seed);

class RolloutServer {
 public:
  // `engine` and `tokenizer` (may be null) must outlive the server.
  static absl::StatusOr<std::unique_ptr<RolloutServer>> Start(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer,
                                                      RolloutServeOptions options);
  ~RolloutServer();
  int port() const { return port_; }
  // Drains (grace absl::InfiniteDuration(): no limit) and stops the gRPC server. Idempotent.
  void Shutdown(absl::Duration grace);
  void Wait();

  class Impl;

 private:
  RolloutServer() = default;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
};

// Starts a server and blocks until SIGTERM or SIGINT, then drains and stops it. Prints
// "grpo rollout serve: listening on HOST:PORT" to stderr when ready.
absl::Status ServeRolloutUntilSignal(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer,
                               RolloutServeOptions options);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_SERVICE_H_
