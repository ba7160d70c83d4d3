// Key encoding of the trajectory store (internal to store/; the layout is in docs/store.md).
//
// Every key is a fixed-width run of big-endian unsigned integers, so RocksDB's default bytewise
// order is numeric order: (run, step, prompt, sample). A step or a group is one contiguous range,
// found by seeking to its prefix.
#ifndef GRPO_STORE_KEYS_H_
#define GRPO_STORE_KEYS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace grpo::store {

// Sizes of the fixed-width keys, per column family.
inline constexpr size_t kRunKeySize = 4;                      // runs:    run_id
inline constexpr size_t kStepKeySize = 4 + 8;                 // steps:   run_id step
inline constexpr size_t kPromptKeySize = 4 + 8 + 4;           // prompts: run_id step prompt
inline constexpr size_t kSampleKeySize = 4 + 8 + 4 + 4;       // samples: run_id step prompt sample

struct SampleKey {
  uint32_t run_id = 0;
  uint64_t step = 0;
  uint32_t prompt_index = 0;
  uint32_t sample_index = 0;
  bool operator==(const SampleKey&) const = default;
};

void AppendU32(std::string* out, uint32_t v);
void AppendU64(std::string* out, uint64_t v);
uint32_t ReadU32(const char* p);
uint64_t ReadU64(const char* p);

std::string RunKey(uint32_t run_id);
std::string StepKey(uint32_t run_id, uint64_t step);
std::string PromptKey(uint32_t run_id, uint64_t step, uint32_t prompt_index);
std::string SampleKeyString(const SampleKey& key);

// Decoders: nullopt when the key does not have its column family's exact size.
std::optional<uint32_t> DecodeRunKey(std::string_view key);
std::optional<std::pair<uint32_t, uint64_t>> DecodeStepKey(std::string_view key);
std::optional<SampleKey> DecodeSampleKey(std::string_view key);

// The smallest key greater than every key starting with `prefix` (prefix with its last
// non-0xff byte incremented); empty when there is none (all bytes 0xff).
std::string PrefixSuccessor(std::string_view prefix);

}  // namespace grpo::store

#endif  // GRPO_STORE_KEYS_H_
