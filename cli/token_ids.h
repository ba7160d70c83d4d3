// Reading token ids from a JSON Lines record, for the commands that take {"tokens": [..]}.
#ifndef GRPO_CLI_TOKEN_IDS_H_
#define GRPO_CLI_TOKEN_IDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/jsonl.h"
#include "core/status.h"

namespace grpo::cli {

// The ids under `key` of a good record, each in [0, vocab). Errors name the file and line:
//   "IN.jsonl:4: token id 100000 is outside the vocabulary [0, 256)"
absl::StatusOr<std::vector<int32_t>> TokenIdsOf(const JsonlRecord& record, const std::string& path,
                                        const std::string& key, int64_t vocab);

}  // namespace grpo::cli

#endif  // GRPO_CLI_TOKEN_IDS_H_
