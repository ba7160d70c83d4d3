#include "collective/collective.h"

#include "absl/strings/str_cat.h"

namespace grpo {

absl::Status ValidateCollectiveOptions(const CollectiveOptions& o) {
  if (o.size < 1) return absl::InvalidArgumentError(absl::StrCat("collective: size ", o.size, " < 1"));
  if (o.rank < 0 || o.rank >= o.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("collective: rank ", o.rank, " outside 0..", o.size - 1));
  }
  if (o.rendezvous_dir.empty()) {
    return absl::InvalidArgumentError("collective: no rendezvous directory given");
  }
  if (o.group.empty() || o.group.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("collective: group name '", o.group, "' must be non-empty without '/'"));
  }
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("collective: timeout must be positive");
  }
  return absl::OkStatus();
}

std::vector<size_t> EvenShards(size_t total, int parts) {
  std::vector<size_t> counts(parts, total / parts);
  for (size_t r = 0; r < total % parts; ++r) ++counts[r];
  return counts;
}

size_t ShardOffset(absl::Span<const size_t> counts, int rank) {
  size_t offset = 0;
  for (int r = 0; r < rank; ++r) offset += counts[r];
  return offset;
}

uint64_t RingAllGatherBytes(absl::Span<const size_t> counts, int rank) {
  const int n = static_cast<int>(counts.size());
  if (n <= 1) return 0;
  uint64_t elements = 0;
  for (int r = 0; r < n; ++r) elements += r == (rank + 1) % n ? 0 : counts[r];
  return elements * sizeof(float);
}

uint64_t RingAllReduceBytes(size_t elements, size_t element_size, int ranks) {
  if (ranks <= 1) return 0;
  return 2 * static_cast<uint64_t>(ranks - 1) * elements * element_size / ranks;
}

uint64_t BinomialBroadcastBytes(uint64_t bytes, int rank, int root, int ranks) {
  const int v = (rank - root + ranks) % ranks;  // the root is 0; v's children are v + 2^k, 2^k > v
  uint64_t children = 0;
  for (int64_t step = 1; v + step < ranks; step *= 2) children += step > v ? 1 : 0;
  return children * bytes;
}

}  // namespace grpo
