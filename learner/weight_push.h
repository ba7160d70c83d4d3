// Pushing a new policy version from the learner's f32 masters to rollout engines.
//
// A push is one RolloutService.UpdateWeights client stream (proto/rollout.proto,
// docs/weights.md): every tensor of the model, in ExpectedParameters order, each split into
// chunks of at most chunk_bytes carrying name, dtype, shape, offset, crc32c and is_last, then one
// final message with the WeightUpdateSummary (version, tensor count, total bytes, crc32c of all
// data in stream order). Formats (model/parameters.h WeightFormat; kStored is not one):
//   kF32       every tensor as F32 (exact).
//   kBF16      every tensor as BF16 (round to nearest even).
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

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "collective/collective.h"
#include "core/status.h"
#include "model/model_config.h"
#include "model/parameters.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/weight_stream.h"

namespace grpo {

// The formats an update can be sent in (recipes: rollout.serve_format f32 | bf16 | fp8).
inline constexpr WeightFormat kWireWeightFormats[] = {WeightFormat::kF32, WeightFormat::kBF16,
                                                      WeightFormat::kFp8Block};

struct WeightPushOptions {
  // What goes on the wire (see the top of this file): one of kWireWeightFormats. The engine
  // that receives it serves its matrices in the same format.
  WeightFormat format = WeightFormat::kFp8Block;
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
  // A shard of a sharded update (rollout.proto shard_index / shard_count); shard_count 0 or 1:
  // the whole update.
  uint32_t shard_index = 0;
  uint32_t shard_count = 0;
};

// The dtype a tensor travels in under `options` (see the top of this file): F32, BF16, or
// F8E4M3 (with its F32 scales as a second tensor).
DType WireDType(const ParameterSpec& spec, const WeightPushOptions& options);

// Converts/quantizes `params` (f32 masters) to wire form. Version must be > 0 and the format one
// of kWireWeightFormats (InvalidArgument otherwise).
absl::StatusOr<EncodedWeights> EncodeWeights(const std::vector<Parameter>& params, uint64_t version,
                                     const WeightPushOptions& options);

// Data-parallel ranks push a version as `num_shards` shards in parallel, one each: shard k holds
// the tensors (in `params` order) whose first element falls in rank k's even share of the
// parameters laid out flat (collective.h EvenShards; every rank holds all the parameters after
// a step, so any even split serves; empty tensors at the very end go to the last shard). Every
// tensor is in exactly one shard.
std::vector<Parameter> ParametersOfShard(const std::vector<Parameter>& params, int shard, int num_shards);

// EncodeWeights of ParametersOfShard, marked as shard `shard` of `num_shards` (every message of
// its stream carries both). InvalidArgument unless 0 <= shard < num_shards.
absl::StatusOr<EncodedWeights> EncodeWeightShard(const std::vector<Parameter>& params, uint64_t version,
                                                 const WeightPushOptions& options, int shard, int num_shards);

// Calls `emit` with each message of the stream, the summary last; stops at emit's first error.
absl::Status EmitWeightUpdate(const EncodedWeights& weights, size_t chunk_bytes,
                        const std::function<absl::Status(const grpo::v1::WeightUpdateChunk&)>& emit);

// EncodeWeights + EmitWeightUpdate.
absl::Status EncodeWeightUpdate(const std::vector<Parameter>& params, uint64_t version,
                          const WeightPushOptions& options,
                          const std::function<absl::Status(const grpo::v1::WeightUpdateChunk&)>& emit);

// Streams the update to one engine and returns its ack. `push_token`, when not empty, is sent
// as metadata kPushTokenMetadataKey (rollout/push_token.h): engines started with a token take
// pushes only with it. Errors: the RPC failed (Unavailable, DeadlineExceeded, Unauthenticated
// for a missing or wrong token, PermissionDenied from an engine that takes no pushes, ... with
// gRPC's message), or the engine rejected the update (FailedPrecondition naming the engine's
// reason).
absl::StatusOr<grpo::v1::WeightUpdateAck> PushWeights(grpo::v1::RolloutService::StubInterface& stub,
                                              const EncodedWeights& weights, size_t chunk_bytes,
                                              absl::Time deadline, const std::string& push_token = "");
absl::StatusOr<grpo::v1::WeightUpdateAck> PushWeights(grpo::v1::RolloutService::StubInterface& stub,
                                              const std::vector<Parameter>& params,
                                              uint64_t version, const WeightPushOptions& options,
                                              absl::Time deadline, const std::string& push_token = "");

// Pushes the same update to every engine concurrently (one thread each, encoded once); result i
// is engine i's. A failing or unreachable engine does not hold up or fail the others.
std::vector<absl::StatusOr<grpo::v1::WeightUpdateAck>> PushWeightsToAll(
    const std::vector<grpo::v1::RolloutService::StubInterface*>& stubs,
    const EncodedWeights& weights, size_t chunk_bytes,
    absl::Time deadline, const std::string& push_token = "");

// A version pushed by data-parallel learner ranks in parallel (no gather through rank 0). Every
// rank of `ranks` calls this together, with the same version, options and `stubs` layout
// (nullptr: an engine that is down, skipped by every rank) and its own copy of the whole
// parameters (equal on every rank after a ZeRO-1 step). Each rank streams its shard
// (EncodeWeightShard, shard = its rank) to every engine concurrently; then the ranks sum their
// failures (one all-reduce), so result i is the same verdict on every rank: OK when every shard
// reached engine i, which then serves the version (the engine applies it when its last shard
// arrives, before that shard's ack), else this rank's own error for it or Aborted naming how
// many other ranks' shards failed. A down engine's result is OK (nothing was sent).
std::vector<absl::Status> PushWeightShards(Collective& ranks,
                                           const std::vector<grpo::v1::RolloutService::StubInterface*>& stubs,
                                           const std::vector<Parameter>& params, uint64_t version,
                                           const WeightPushOptions& options, absl::Time deadline,
                                           const std::string& push_token = "");

// The f32 parameters an engine assembles from a push of `masters` in this format, computed
// in-process for the embedded trainer (FP8: quantize + dequantize). `masters` must be the
// tensors of ExpectedParameters(config) (names and shapes); the result never aliases them.
absl::StatusOr<std::vector<Parameter>> ServingWeights(const ModelConfig& config,
                                              const std::vector<Parameter>& masters,
                                              const WeightPushOptions& options);
absl::StatusOr<std::vector<Parameter>> ServingWeights(const ModelConfig& config,
                                              const std::vector<Parameter>& masters,
                                              WeightFormat format);

}  // namespace grpo

#endif  // GRPO_LEARNER_WEIGHT_PUSH_H_
