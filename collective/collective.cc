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

}  // namespace grpo
