// Checksum manifests: a file `checksums.json` in a directory that records the size and CRC-32C
// (core/crc32c.h) of every other regular file in it, so that a reader can tell a damaged file
// (flipped bits, truncation, a file swapped for another) from a good one before trusting it.
// The learner's checkpoints carry one (learner/checkpoint.h); CausalLM::Load verifies the model
// files of any directory that has one. Other tools ignore the extra file: a checkpoint stays an
// unchanged HuggingFace model directory.
//
//   {"format": "grpo.checksums.v1",
//    "files": [{"name": "config.json", "size": 812, "crc32c": "1a2b3c4d"}, ...]}
//
// Entries are sorted by name; `crc32c` is 8 lowercase hex digits. The manifest is written last
// (after every file it lists is complete) and atomically (core/file.h), so it never describes
// files that are still being written.
#ifndef GRPO_CORE_CHECKSUM_MANIFEST_H_
#define GRPO_CORE_CHECKSUM_MANIFEST_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grpo {

inline constexpr char kChecksumManifestName[] = "checksums.json";

// Size and CRC-32C of the file at `path`, read in chunks (memory does not grow with the file).
struct FileChecksum {
  uint64_t size = 0;
  uint32_t crc32c = 0;
};
absl::StatusOr<FileChecksum> ChecksumFile(const std::string& path);

// Writes `dir`/checksums.json listing every regular file directly in `dir` (other than the
// manifest itself and "*.tmp" leftovers); subdirectories are not listed.
absl::Status WriteChecksumManifest(const std::string& dir);

// Verifies the files `dir`/checksums.json lists, or only those for which `select(name)` is true
// when `select` is given. Returns false when `dir` has no manifest (nothing verified), true when
// every selected file matched. Failures are kDataLoss naming the file and the mismatch:
//   "<dir>/model.safetensors is damaged: CRC-32C 0x... but <dir>/checksums.json records 0x..."
//   "<dir>/model.safetensors is damaged: N bytes but <dir>/checksums.json records M"
//   "<dir>/optimizer.safetensors is missing (listed in <dir>/checksums.json)"
// and a manifest that does not parse (or names a path outside `dir`) is kDataLoss naming it.
absl::StatusOr<bool> VerifyChecksumManifest(
    const std::string& dir, const std::function<bool(std::string_view name)>& select = nullptr);

}  // namespace grpo

#endif  // GRPO_CORE_CHECKSUM_MANIFEST_H_
