// Receiving a versioned weight update (RolloutService.UpdateWeights, proto/rollout.proto):
// verify every chunk as it arrives, stage the tensors, and assemble f32 parameters for serving.
//
// Contract (docs/weights.md has the whole format):
//   * Every message carries the same version, which must be newer than
//     options.serving_version and at most options.max_version_step beyond it (checked at the
//     first message, before anything is staged; so version 0, the weights loaded from disk, is
//     never valid). The bound keeps one wild version (2^64-1) from making every later push stale.
//   * Tensors arrive one after another; each tensor's chunks start at byte 0 and are contiguous
//     (no gap, no overlap), each chunk's crc32c matches its data, and the tensor's last chunk has
//     is_last and ends exactly at the tensor's byte size. A tensor may be sent once.
//   * Names must be tensors of ExpectedParameters(config), or "<w>_scale_inv" for a 2-D
//     projection weight w (ParameterSpec::is_matrix). Shapes must match. Dtypes: F32, BF16 or F16
//     for any tensor; F8_E4M3 only for is_matrix weights, with fp8.block_shape [128, 128] and
//     fp8.scale_tensor_name "<w>_scale_inv"; scale tensors are F32 of shape
//     [ceil(rows/128), ceil(cols/128)].
//   * The final message carries the summary: its version, num_tensors, total_bytes and the crc32c
//     of all data bytes in stream order must match what arrived; nothing may follow it.
//   * Finish() requires every expected tensor (this assembler builds a complete parameter set:
//     partial pushes, which rollout.proto allows, are rejected naming the first missing tensor),
//     every FP8 weight's scale tensor, and no scale tensor without its FP8 weight.
//   * The staged bytes may not exceed options.max_total_bytes (ResourceExhausted).
//   * Every assembled f32 value is finite: Finish() rejects NaN or infinity (from any dtype, an
//     FP8 NaN code or a scale that overflows included), naming the tensor and the element.
//   * Sharded updates (rollout.proto shard_index / shard_count): one assembler takes the version's
//     shard streams one after another, EndStream() after each (or each stream goes to an
//     assembler of its own, concurrently, and Merge() joins them); each stream's summary covers its
//     own messages, the tensors of all shards together must be the whole set above, and a tensor
//     may come in one shard only. A stream of another version, of another shard_count, or of a
//     shard already received is refused at its first message without touching what the other
//     shards staged (the assembler stays usable). Finish() requires every shard.
// The first error poisons the assembler: it frees what it staged, and every later Add/Finish
// returns that error again, so a broken or partial update never yields weights. Errors name the
// version, the tensor and the offset involved.
#ifndef GRPO_ROLLOUT_WEIGHT_STREAM_H_
#define GRPO_ROLLOUT_WEIGHT_STREAM_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/model_config.h"
#include "model/parameters.h"
#include "proto/rollout.pb.h"

namespace grpo {

// One tensor as it travels in a weight update: an F8_E4M3 weight, its F32 "<name>_scale_inv",
// or a plain F32/BF16/F16 tensor.
struct WireTensor {
  std::string name;
  Tensor data;
};

// The f32 value the engine serves for a wire tensor: the values of DequantizeFp8Block(data,
// *scale_inv) for F8_E4M3 (scale_inv required, F32 [ceil(rows/128), ceil(cols/128)]), the exact
// widening for BF16/F16, and for F32 `data` itself (a writable copy if `data` is a read-only
// view). Results are ordinary writable f32 tensors. The learner's ServingWeights uses this same
// function, so embedded and remote modes serve identical bits. The vector form decodes many
// tensors at once, in parallel over pieces of ~1M elements on the shared thread pool (one big
// embedding does not serialize the work).
struct WireInput {
  const Tensor* data = nullptr;
  const Tensor* scale_inv = nullptr;  // for F8_E4M3 only
};
absl::StatusOr<std::vector<Tensor>> WireToServing(const std::vector<WireInput>& inputs);
absl::StatusOr<Tensor> WireToServing(const Tensor& data, const Tensor* scale_inv);

// The wire dtype for `d`, and back; DTYPE_UNSPECIFIED / unsupported types fail.
absl::StatusOr<grpo::v1::DType> ToProtoDType(DType d);
absl::StatusOr<DType> FromProtoDType(grpo::v1::DType d);

// A tensor of `dtype` and `shape` for weight-update data, with unspecified contents that the
// caller fills through the returned pointer before sharing the tensor (the tensor itself is a
// read-only view). Large ones are huge-page buffers recycled across updates (an engine receives
// the same sizes every step, and fresh memory costs a page fault per 4 KiB).
std::pair<Tensor, uint8_t*> NewWeightTensor(DType dtype, Shape shape);

struct WeightAssemblerOptions {
  // Most tensor bytes one update may stage (sum of the declared sizes of the tensors sent).
  uint64_t max_total_bytes = uint64_t{64} << 30;
  // The version serving now, and how far beyond it an update's version may go (see the top).
  uint64_t serving_version = 0;
  uint64_t max_version_step = uint64_t{1} << 32;
  // Keep the received tensors (FP8 weights with their scales, bf16, ...) in StagedWeights::wire,
  // for serving from FP8 tiles. Off by default: it keeps a second copy of the update.
  bool keep_wire_tensors = false;
};

struct StagedWeights {
  uint64_t version = 0;
  std::vector<Parameter> params;  // f32 (writable), ExpectedParameters(config) order
  uint64_t bytes = 0;             // tensor data bytes received
  std::vector<WireTensor> wire;   // stream order; only with keep_wire_tensors; F32 ones share
                                  // storage with params
};

// One assembler per stream; not thread-safe (a handler feeds it from its one reader loop).
class WeightAssembler {
 public:
  static absl::StatusOr<WeightAssembler> Create(const ModelConfig& config,
                                        WeightAssemblerOptions options = {});

  // Verifies and stages one message of the stream.
  absl::Status Add(const grpo::v1::WeightUpdateChunk& chunk);
  // The current stream has ended: it must have ended with its summary. The next Add starts the
  // stream of another shard of the same version.
  absl::Status EndStream();
  // Concurrent shard streams: each stream is received by its own assembler (Add ... EndStream,
  // one shard), and the version's assembler then takes its staged tensors here, without copying
  // them. The same refusals as a later stream's first message (another version, another
  // shard_count, a shard already taken; the assembler stays usable), and for the first shard the
  // version checks against options.serving_version of *this* assembler (which poison it, as
  // BeginStream's do); a tensor already taken from another shard, or the size limit, poisons
  // it. `shard` must hold exactly one ended stream and not have failed (else its error is
  // returned and nothing changes); it is spent afterwards.
  absl::Status Merge(WeightAssembler&& shard);
  // Whether a stream starting with (version, shard_index, shard_count) would be refused as
  // stale, mismatched or repeated by this assembler (OK before its first message).
  absl::Status CheckNextShard(uint64_t version, uint32_t shard_index, uint32_t shard_count) const;
  // After the summary message (of the last shard): the final checks, then the assembled
  // weights. Ends an open stream first. The assembler is spent afterwards (a second Finish is
  // an error).
  absl::StatusOr<StagedWeights> Finish();

  uint64_t bytes_received() const { return bytes_received_; }
  bool failed() const { return !error_.ok(); }
  uint64_t version() const { return version_; }  // 0 before the first message
  // Shards of the version whose streams have not ended yet (1 before the first message).
  uint32_t shards_missing() const;

 private:
  struct Expected {
    ParameterSpec spec;
    bool is_scale = false;     // "<w>_scale_inv" of an is_matrix weight
    std::string scale_of;      // for a scale: the weight's name
  };
  struct Staged {
    Tensor data;            // F32 weights: an owning tensor; others: a view of a pooled buffer
    uint8_t* dst = nullptr;
    uint64_t received = 0;  // bytes so far
    bool complete = false;
    size_t order = 0;       // position in the stream
  };

  WeightAssembler() = default;
  absl::Status Fail(absl::Status s);
  absl::Status BeginStream(const grpo::v1::WeightUpdateChunk& chunk);
  absl::Status AddData(const grpo::v1::WeightUpdateChunk& chunk);
  absl::Status CheckSummary(const grpo::v1::WeightUpdateSummary& s) const;

  std::vector<ParameterSpec> specs_;
  std::map<std::string, Expected> expected_;
  WeightAssemblerOptions options_;

  absl::Status error_;
  bool finished_ = false;
  bool have_version_ = false;
  uint64_t version_ = 0;
  bool have_summary_ = false;
  grpo::v1::WeightUpdateSummary summary_;
  std::map<std::string, Staged> staged_;
  std::string current_;  // the tensor being received ("" between tensors)
  uint64_t staged_bytes_ = 0;
  uint64_t bytes_received_ = 0;
  uint32_t shard_count_ = 1;
  std::set<uint32_t> shards_done_;  // shards whose stream ended with a valid summary
  bool stream_open_ = false;        // a message of the current stream has arrived
  uint32_t stream_shard_ = 0;
  uint32_t stream_tensors_ = 0;     // per stream, checked against its summary
  uint64_t stream_bytes_ = 0;
  uint32_t stream_crc_ = 0;
};

}  // namespace grpo

#endif  // GRPO_ROLLOUT_WEIGHT_STREAM_H_
