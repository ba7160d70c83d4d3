#include "core/output_path.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace grpo {
namespace {

namespace fs = std::filesystem;

// The canonical form of `path` as far as it exists (the rest lexically normalized), absolute.
fs::path Canonical(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::path(path), ec);
  if (ec) p = fs::absolute(fs::path(path), ec).lexically_normal();
  // "dir/" and "dir" name the same directory.
  if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
  return p;
}

// Whether `inner` is `outer` or lies below it, component by component.
bool IsWithin(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

bool IsSameOrInside(const std::string& path, const std::string& dir) {
  if (path.empty() || path == "-" || dir.empty() || dir == "-") return false;
  return IsWithin(Canonical(path), Canonical(dir));
}

absl::Status CheckOutputPath(std::string_view output_flag, const std::string& output,
                             const std::vector<InputPath>& inputs) {
  if (output.empty() || output == "-") return absl::OkStatus();
  const fs::path out = Canonical(output);
  for (const InputPath& in : inputs) {
    if (in.path.empty() || in.path == "-") continue;
    const fs::path canonical_in = Canonical(in.path);
    std::error_code ec;
    const bool dir = fs::is_directory(canonical_in, ec);
    const bool hit = dir ? IsWithin(out, canonical_in) : out == canonical_in || SameFile(output, in.path);
    if (!hit) continue;
    return absl::InvalidArgumentError(std::string(output_flag) + " " + output + (dir ? " is inside " : " is ") +
                                      in.flag + " " + in.path +
                                      ", which this command reads; write it elsewhere");
  }
  return absl::OkStatus();
}

}  // namespace grpo
