// RolloutService over gRPC (proto/rollout.proto), serving one RolloutEngine.
//
// Contract:
//  - Listens on RolloutServeOptions::listen (loopback by default; port 0 picks a free port,
//    see port()).
//  - Generate / GenerateStream: the request is checked first (exactly one of prompt ids and
//    text; group_size in [1, max_group_size]; prompt at most max_prompt_tokens; max_new_tokens
//    > 0 and prompt + max_new_tokens within the model's max_position_embeddings; sampling
//    ranges; stop strings need a tokenizer) and refused with INVALID_ARGUMENT naming the field,
//    or RESOURCE_EXHAUSTED when one sample could not fit in the whole KV pool. While draining:
//    UNAVAILABLE. A cancelled call or one whose deadline passes cancels its group in the engine
//    (its blocks are freed before the handler returns) and ends CANCELLED / DEADLINE_EXCEEDED.
//    GenerateStream sends the prompt (after its prefill), each sample as it finishes, then the
//    timing. For greedy requests (temperature 0) Sample.logprobs are 0 as the proto says.
//    Sample.seed is the base seed of the group (SamplingParams.seed, or the one the server drew):
//    sample i's stream is seeded by (seed, i).
//  - UpdateWeights: chunks go to a WeightAssembler (rollout/weight_stream.h), which verifies
//    them; on success the weights are staged in the engine and the ack is sent once they serve.
//    Any error is an ack with accepted=false and the reason; the old version keeps serving.
//  - Health: SERVING, DRAINING during Drain, NOT_SERVING after; engine load and version.
//  - Drain(grace): refuses new work, lets in-flight groups finish within the grace (absent: no
//    limit), aborts the rest (their samples end FINISH_REASON_ABORTED), returns the counts.
//  - ServeRolloutUntilSignal: on SIGTERM/SIGINT drains with the configured grace, stops the
//    server and returns OK.
#ifndef GRPO_ROLLOUT_SERVICE_H_
#define GRPO_ROLLOUT_SERVICE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "core/status.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/engine.h"
#include "tokenizer/tokenizer.h"

namespace grpo {

struct RolloutServeOptions {
  std::string listen = "127.0.0.1:50061";
  int64_t max_prompt_tokens = 0;   // 0: the model's max_position_embeddings - 1
  int64_t max_group_size = 1024;
  int max_message_mb = 512;
  double shutdown_grace_seconds = 30;  // Drain grace on SIGTERM/SIGINT
  std::string version = "grpo 0.1.0";
};

// A GroupRequest from its proto form; InvalidArgument naming the field on a bad request.
// `drawn_seed` is used when the request has no seed.
Result<GroupRequest> GroupRequestFromProto(const grpo::v1::GenerateRequest& request, const ModelConfig& config,
                                           const tokenizer::Tokenizer* tokenizer,
                                           const RolloutServeOptions& options, uint64_t drawn_seed);
// One sample in its proto form (text decoded when a tokenizer is given).
void SampleToProto(const SampleResult& sample, const GroupRequest& request, const GroupResult* group,
                   const tokenizer::Tokenizer* tokenizer, grpo::v1::Sample* out);

class RolloutServer {
 public:
  // `engine` and `tokenizer` (may be null) must outlive the server.
  static Result<std::unique_ptr<RolloutServer>> Start(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer,
                                                      RolloutServeOptions options);
  ~RolloutServer();
  int port() const { return port_; }
  // Drains (grace < 0: no limit) and stops the gRPC server. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);
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
Status ServeRolloutUntilSignal(RolloutEngine& engine, const tokenizer::Tokenizer* tokenizer,
                               RolloutServeOptions options);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_SERVICE_H_
