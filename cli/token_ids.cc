#include "cli/token_ids.h"

namespace grpo::cli {

absl::StatusOr<std::vector<int32_t>> TokenIdsOf(const JsonlRecord& record, const std::string& path,
                                        const std::string& key, int64_t vocab) {
  const std::string where = path + ":" + std::to_string(record.line) + ": ";
  auto it = record.value.find(key);
  if (it == record.value.end() || !it->is_array()) {
    return absl::InvalidArgumentError(where + "\"" + key + "\" must be an array of token ids");
  }
  std::vector<int32_t> ids;
  ids.reserve(it->size());
  for (const auto& v : *it) {
    if (!v.is_number_integer()) return absl::InvalidArgumentError(where + "\"" + key + "\" must hold integers");
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(where + "token id " + std::to_string(id) +
                                     " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

}  // namespace grpo::cli
