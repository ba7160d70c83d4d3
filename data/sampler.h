// Deterministic epoch shuffling with a resumable cursor.
//
// Epoch e visits every index of [0, size) once, in the order of a Fisher-Yates shuffle driven by
// SplitMix64 seeded from (seed, e): the same seed and cursor give the same sequence on every
// machine and compiler (no std::shuffle, whose algorithm is implementation-defined). A Cursor
// (epoch, position) saved in a checkpoint resumes the exact sequence.
#ifndef GRPO_DATA_SAMPLER_H_
#define GRPO_DATA_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "core/status.h"

namespace grpo::data {

struct Cursor {
  int64_t epoch = 0;
  int64_t position = 0;  // indices already taken from this epoch
  bool operator==(const Cursor&) const = default;
};

class EpochSampler {
 public:
  // `size` must be > 0; `shuffle` false visits 0, 1, 2, ... every epoch.
  static absl::StatusOr<EpochSampler> Create(int64_t size, uint64_t seed, bool shuffle = true, Cursor start = {});

  // The next index; moves to the next epoch after the last position.
  int64_t Next();
  // The next `n` indices.
  std::vector<int64_t> NextBatch(int64_t n);
  // Where the next call to Next() reads from.
  Cursor cursor() const { return cursor_; }

  // The order of one epoch (exposed for tests).
  static std::vector<int64_t> EpochOrder(int64_t size, uint64_t seed, int64_t epoch, bool shuffle);

 private:
  EpochSampler(int64_t size, uint64_t seed, bool shuffle, Cursor start);
  int64_t size_;
  uint64_t seed_;
  bool shuffle_;
  Cursor cursor_;
  std::vector<int64_t> order_;
};

// SplitMix64: the project's portable 64-bit generator for data (also used by synthetic tasks).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) without modulo bias; n > 0.
  uint64_t Below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = Next(); while (x >= limit);
    return x % n;
  }
  // Uniform in [lo, hi]; lo <= hi.
  int64_t Range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1)); }

 private:
  uint64_t state_;
};

}  // namespace grpo::data

#endif  // GRPO_DATA_SAMPLER_H_
