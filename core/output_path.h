// Where a command may write: never over what the same command reads (issue 19, class 6). A
// command checks its output path against its inputs before it opens anything, so that
// `grpo export --store S --output S/CURRENT` or `grpo tokenize --input x --output x` is refused
// instead of replacing the file (or destroying the store) being read.
#ifndef GRPO_CORE_OUTPUT_PATH_H_
#define GRPO_CORE_OUTPUT_PATH_H_

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace grpo {

// One path a command reads, with the flag that named it (for messages).
struct InputPath {
  std::string flag;  // "--input", "--store", "--model"
  std::string path;  // a file or a directory; "" and "-" (standard input) are ignored
};

// InvalidArgument when `output` (named by `output_flag`) is the same file as an input, or lies
// inside an input that is a directory (the directory itself included). Paths are compared after
// std::filesystem::weakly_canonical (so "d/../d/x", symbolic links and relative paths are seen
// through) and, where both exist, by device and inode (hard links). "" and "-" (standard
// output) are never refused. Messages:
//   "--output S/CURRENT is inside --store S, which this command reads; write it elsewhere"
//   "--output x.jsonl is --input x.jsonl, which this command reads; write it elsewhere"
absl::Status CheckOutputPath(std::string_view output_flag, const std::string& output,
                             const std::vector<InputPath>& inputs);

// Whether `path` is `dir` or lies inside it, compared as CheckOutputPath compares (for a command
// that is about to delete or replace `dir`: `grpo train --overwrite` and its inputs). "" and "-"
// are inside nothing.
bool IsSameOrInside(const std::string& path, const std::string& dir);

}  // namespace grpo

#endif  // GRPO_CORE_OUTPUT_PATH_H_
