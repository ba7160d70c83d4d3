// Safetensors: read and write HuggingFace's tensor file format, and HF model directories.
//
// Format: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON, then the data buffer:
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}            (offsets are relative to the buffer)
//
// Reading (SafetensorsFile::Open / FromBytes) validates the whole header up front, so a file that
// opens is safe to use: every tensor lies inside the buffer and has exactly numel * dtype-size
// bytes. The rules are those of the reference implementation (huggingface/safetensors), plus a
// few of our own: duplicate JSON keys are rejected (its serde parser silently keeps one),
// __metadata__ values must be strings, and JSON nested deeper than 64 levels is refused before
// parsing (a valid header nests 3 deep). Like the reference, the tensors must cover the buffer
// exactly: no overlaps, no holes, no trailing bytes. Format errors are Status::Corruption (IoError
// for the OS, NotFound for a missing file or tensor, InvalidArgument for a non-regular file), each
// with a message that starts with the file's name and says what is wrong.
//
// Get() returns a zero-copy read-only Tensor::View into the mapping; the view keeps the mapping
// alive, so tensors may outlive the SafetensorsFile. The data pointer is only as aligned as the
// file makes it (files we write are aligned, see below); read with memcpy / ToF32() / CastTo().
// A SafetensorsFile / SafetensorsDir is immutable once opened: its const methods may be called
// from any number of threads. The mapping is MAP_PRIVATE read-only: if another process truncates
// the file while it is mapped, touching the lost pages raises SIGBUS (as with any mmap reader).
//
// Writing produces the bytes the reference `safetensors.torch.save_file` produces for the same
// tensors: tensors laid out in the reference's dtype order descending (U64, I64, F64, F32, U32,
// I32, BF16, F16, U16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL), then by name, so every tensor's data
// is aligned to its element size; compact JSON with "__metadata__" first (only when non-empty;
// keys sorted, where the reference uses hash order); header padded with spaces to a multiple of 8
// bytes. Files are written to "<path>.tmp", fsync'd and renamed, so a crash never leaves a
// half-written file under `path`.
#ifndef GRPO_CORE_SAFETENSORS_H_
#define GRPO_CORE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"

namespace grpo {

// The reference implementation refuses headers larger than this.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
inline constexpr const char kSafetensorsSingleFile[] = "model.safetensors";
inline constexpr const char kSafetensorsIndexFile[] = "model.safetensors.index.json";

// One header entry. Offsets are relative to the start of the data buffer.
struct SafetensorsTensorInfo {
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps `path` read-only and validates it. Errors name `path`.
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);
  // The same validation on bytes held in memory (owned by the result). Errors name
  // `display_name`.
  static absl::StatusOr<SafetensorsFile> FromBytes(std::string bytes, std::string display_name);

  // The path given to Open or the display name given to FromBytes.
  const std::string& display_name() const { return display_name_; }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  size_t num_tensors() const { return entries_.size(); }
  bool Contains(std::string_view name) const;
  // A zero-copy read-only view that keeps the file's memory alive. NotFound for unknown names.
  absl::StatusOr<Tensor> Get(std::string_view name) const;
  // Dtype, shape and offsets without making a tensor. NotFound for unknown names.
  absl::StatusOr<SafetensorsTensorInfo> Info(std::string_view name) const;
  // "__metadata__", empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The whole file (length prefix, header, buffer).
  std::span<const uint8_t> file_bytes() const { return {base_, size_}; }
  // Offset of the data buffer in the file (8 + header length).
  uint64_t buffer_offset() const { return buffer_offset_; }

 private:
  SafetensorsFile() = default;
  static absl::StatusOr<SafetensorsFile> Validate(std::shared_ptr<const void> owner, const uint8_t* base,
                                          size_t size, std::string display_name);

  std::string display_name_;
  std::shared_ptr<const void> owner_;  // the mapping or the owned bytes
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint64_t buffer_offset_ = 0;
  std::map<std::string, SafetensorsTensorInfo, std::less<>> entries_;
  std::map<std::string, std::string> metadata_;
};

// A HuggingFace model directory's weights: `model.safetensors.index.json` (its "weight_map" maps
// tensor name -> shard file) when present, otherwise `model.safetensors`.
// Open checks that every mapped tensor exists in the shard the index names, that shard names are
// plain file names inside the directory, and that no tensor name appears in two shards. Tensors
// present in a shard but missing from the weight_map are still served (transformers and vLLM load
// whole shards too). Each shard is opened (mapped) once. When both files exist the index wins (as
// in vLLM; transformers would pick model.safetensors); WriteShardedSafetensors never leaves both.
class SafetensorsDir {
 public:
  static absl::StatusOr<SafetensorsDir> Open(const std::string& dir);

  // Sorted tensor names across all shards.
  std::vector<std::string> names() const;
  size_t num_tensors() const { return where_.size(); }
  bool Contains(std::string_view name) const;
  absl::StatusOr<Tensor> Get(std::string_view name) const;
  absl::StatusOr<SafetensorsTensorInfo> Info(std::string_view name) const;
  // True when read through an index file.
  bool sharded() const { return sharded_; }
  // The opened files, in the order of their names.
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // The shard holding `name` (nullptr if none).
  const SafetensorsFile* ShardOf(std::string_view name) const;

 private:
  SafetensorsDir() = default;

  std::string dir_;
  bool sharded_ = false;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, size_t, std::less<>> where_;  // name -> index into shards_
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The complete file in memory. InvalidArgument for duplicate or reserved ("__metadata__") names,
// undefined tensors, or names / metadata that are not valid UTF-8.
absl::StatusOr<std::string> SerializeSafetensors(const NamedTensors& tensors,
                                         const std::map<std::string, std::string>& metadata = {});

// Writes `path` atomically (via "<path>.tmp", fsync, rename, fsync of the directory). Tensor data
// is streamed from the tensors' memory, not copied.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// Writes a model directory (created if missing) the way transformers' save_pretrained does:
// tensors are assigned to shards in the given order, starting a new shard when the next tensor
// would push the current one past `max_shard_bytes` (a tensor larger than that gets a shard of its
// own). One shard: `model.safetensors` (a stale index file is removed). Several:
// `model-00001-of-0000N.safetensors`... and then, last, `model.safetensors.index.json` with
// {"metadata": {"total_size": <sum of tensor bytes>}, "weight_map": {name: shard}} (a stale
// `model.safetensors` is removed). Every shard carries `metadata` as its __metadata__.
// Old shards with other names are left alone: write into a fresh directory.
absl::Status WriteShardedSafetensors(const std::string& dir, const NamedTensors& tensors,
                               uint64_t max_shard_bytes,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace grpo

#endif  // GRPO_CORE_SAFETENSORS_H_
