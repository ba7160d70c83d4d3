// Pushing a new policy version from the learner's f32 masters to rollout engines.
//
// A push is one RolloutService.UpdateWeights client stream (proto/rollout.proto,
// docs/weights.md): every tensor of the model, in ExpectedParameters order, each split into
// chunks of at most chunk_bytes carrying name, dtype, shape, offset, crc32c and is_last, then one
// final message with the WeightUpdateSummary (version, tensor count, total bytes, crc32c of all
// data in stream order). Formats:
//   kF32       every tensor as F32 (exact).
//   kBf16      every tensor as BF16 (round to nearest even).
//   kFp8Block  2-D projection weights (ParameterSpec::is_matrix: not embeddings, lm_head, norms
//              or routers; the same selection as SaveModel's FP8 checkpoints) as F8_E4M3 with
//              128x128 block scales, each followed by its F32 "<name>_scale_inv"; the other
//              tensors as `fp8_other_dtype` (BF16 or F32).
// Quantization runs in parallel over tensors on the shared thread pool; the bytes emitted depend
// only on the parameters, the version and the options (never on timing).
//
// The embedded trainer serves ServingWeights(), which goes through the same encoder and the same
// decoder (rollout/weight_stream.h WireToServing) as a stream, so in-process and remote engines
// serve bit-identical weights.
#ifndef GRPO_LEARNER_WEIGHT_PUSH_H_
#define GRPO_LEARNER_WEIGHT_PUSH_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/status.h"
#include "model/model_config.h"
#include "model/parameters.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/weight_stream.h"

namespace grpo {

struct WeightPushOptions {
  // What goes on the wire (see the top of this file). Not model/parameters.h's WeightFormat,
  // which says how an engine holds its matrices, not how an update is sent.
  enum class Format { kF32, kBf16, kFp8Block };
  Format format = Format::kFp8Block;
  // With kFp8Block, the dtype of the tensors that are not FP8: kBF16 or kF32.
  DType fp8_other_dtype = DType::kBF16;
  // Most data bytes per message (gRPC's default message limit is 4 MiB); must be > 0.
  size_t chunk_bytes = size_t{1} << 20;
};

// A model's tensors in wire form, ready to be streamed (to several engines without
// re-quantizing). F32 wire tensors share storage with the masters they came from.
struct EncodedWeights {
  uint64_t version = 0;
  std::vector<WireTensor> tensors;  // stream order
  uint64_t total_bytes = 0;
};

// Converts/quantizes `params` (f32 masters) to wire form. Version must be > 0.
Result<EncodedWeights> EncodeWeights(const std::vector<Parameter>& params, uint64_t version,
                                     const WeightPushOptions& options);

// Calls `emit` with each message of the stream, the summary last; stops at emit's first error.
Status EmitWeightUpdate(const EncodedWeights& weights, size_t chunk_bytes,
                        const std::function<Status(const grpo::v1::WeightUpdateChunk&)>& emit);

// EncodeWeights + EmitWeightUpdate.
Status EncodeWeightUpdate(const std::vector<Parameter>& params, uint64_t version,
                          const WeightPushOptions& options,
                          const std::function<Status(const grpo::v1::WeightUpdateChunk&)>& emit);

// Streams the update to one engine and returns its ack. Errors: the RPC failed (Unavailable,
// DeadlineExceeded, ... with gRPC's message), or the engine rejected the update
// (FailedPrecondition naming the engine's reason).
Result<grpo::v1::WeightUpdateAck> PushWeights(grpo::v1::RolloutService::StubInterface& stub,
                                              const EncodedWeights& weights, size_t chunk_bytes,
                                              std::chrono::system_clock::time_point deadline);
Result<grpo::v1::WeightUpdateAck> PushWeights(grpo::v1::RolloutService::StubInterface& stub,
                                              const std::vector<Parameter>& params,
                                              uint64_t version, const WeightPushOptions& options,
                                              std::chrono::system_clock::time_point deadline);

// Pushes the same update to every engine concurrently (one thread each, encoded once); result i
// is engine i's. A failing or unreachable engine does not hold up or fail the others.
std::vector<Result<grpo::v1::WeightUpdateAck>> PushWeightsToAll(
    const std::vector<grpo::v1::RolloutService::StubInterface*>& stubs,
    const EncodedWeights& weights, size_t chunk_bytes,
    std::chrono::system_clock::time_point deadline);

// The f32 parameters an engine assembles from a push of `masters` in this format, computed
// in-process for the embedded trainer (FP8: quantize + dequantize). `masters` must be the
// tensors of ExpectedParameters(config) (names and shapes); the result never aliases them.
Result<std::vector<Parameter>> ServingWeights(const ModelConfig& config,
                                              const std::vector<Parameter>& masters,
                                              const WeightPushOptions& options);
Result<std::vector<Parameter>> ServingWeights(const ModelConfig& config,
                                              const std::vector<Parameter>& masters,
                                              WeightPushOptions::Format format);

}  // namespace grpo

#endif  // GRPO_LEARNER_WEIGHT_PUSH_H_
