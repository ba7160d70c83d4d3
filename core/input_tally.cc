#include "core/input_tally.h"

namespace grpo {
namespace {

constexpr size_t kMaxDetailBytes = 300;

}  // namespace

void InputTally::Skip(std::string_view reason, std::string_view detail) {
  ++skipped_;
  for (Reason& r : reasons_) {
    if (r.name == reason) {
      ++r.count;
      return;
    }
  }
  Reason r;
  r.name = std::string(reason);
  r.count = 1;
  r.first = std::string(detail.substr(0, kMaxDetailBytes));
  if (detail.size() > kMaxDetailBytes) r.first += "...";
  reasons_.push_back(std::move(r));
}

int64_t InputTally::skipped(std::string_view reason) const {
  for (const Reason& r : reasons_) {
    if (r.name == reason) return r.count;
  }
  return 0;
}

std::string InputTally::Reasons() const {
  std::string out;
  for (const Reason& r : reasons_) {
    if (!out.empty()) out += "; ";
    out += std::to_string(r.count) + " " + r.name;
    if (!r.first.empty()) out += ", first " + r.first;
  }
  return out;
}

std::string InputTally::Summary(std::string_view unit, std::string_view used_as,
                                std::string_view skipped_as) const {
  std::string out = std::to_string(total()) + " " + std::string(unit) + ": " + std::to_string(used_) +
                    " " + std::string(used_as);
  if (skipped_ > 0) {
    out += ", " + std::to_string(skipped_) + " " + std::string(skipped_as) + " (" + Reasons() + ")";
  }
  return out;
}

absl::Status InputTally::RequireSome(std::string_view unit) const {
  if (total() == 0 || used_ > 0) return absl::OkStatus();
  return absl::InvalidArgumentError("nothing to output: none of the " + std::to_string(skipped_) + " " +
                                    std::string(unit) + " could be used (" + Reasons() + ")");
}

}  // namespace grpo
