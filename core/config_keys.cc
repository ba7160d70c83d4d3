// Config::CheckKnownKeys: unknown keys, with a did-you-mean.
#include <algorithm>
#include <functional>

#include "core/config_internal.h"

namespace grpo {

using config_internal::JoinDotted;
using config_internal::Json;
using config_internal::SplitPath;

namespace {

constexpr size_t kMaxSuggestDistance = 2;

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
size_t EditDistance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// True when `candidate` is closer to `typo` than *best (and then updates *best).
bool Closer(std::string_view typo, std::string_view candidate, size_t* best) {
  if (typo.size() > 64 || candidate.size() > 64) return false;  // keeps the table small
  size_t dist = EditDistance(typo, candidate);
  if (dist > kMaxSuggestDistance || dist >= candidate.size() || dist >= *best) return false;
  *best = dist;
  return true;
}

// Whether the first `n` segments of `path` match `pattern` ("*" matches any one segment).
bool MatchesPrefix(const std::vector<std::string>& pattern, const std::vector<std::string>& path,
                   size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (pattern[i] != "*" && pattern[i] != path[i]) return false;
  }
  return true;
}

// The allowed key to suggest for `path`, whose last segment is unknown; "" for none.
std::string Suggest(const std::vector<std::string>& path,
                    const std::vector<std::vector<std::string>>& patterns,
                    const std::vector<std::string>& allowed_paths) {
  const size_t depth = path.size() - 1;
  const std::string& typo = path.back();
  size_t best = kMaxSuggestDistance + 1;
  std::string out;
  // 1. A sibling allowed at the same place.
  for (const auto& pat : patterns) {
    if (pat.size() <= depth || pat[depth] == "*" || !MatchesPrefix(pat, path, depth)) continue;
    if (Closer(typo, pat[depth], &best)) {
      out = JoinDotted(path, depth) + (depth > 0 ? "." : "") + pat[depth];
    }
  }
  if (!out.empty()) return out;
  // 2. A whole allowed path close to the whole path ("trian.lr" vs "train.lr").
  const std::string whole = JoinDotted(path, path.size());
  for (const auto& p : allowed_paths) {
    if (p.find('*') == std::string::npos && Closer(whole, p, &best)) out = p;
  }
  if (!out.empty()) return out;
  // 3. The same key allowed elsewhere (a key put in the wrong section).
  for (const auto& p : allowed_paths) {
    const size_t dot = p.rfind('.');
    if (p.find('*') == std::string::npos && dot != std::string::npos &&
        p.compare(dot + 1, std::string::npos, typo) == 0) {
      return p;
    }
  }
  return "";
}

}  // namespace

absl::Status Config::CheckKnownKeys(const std::vector<std::string>& allowed_paths) const {
  std::vector<std::vector<std::string>> patterns;
  for (const auto& p : allowed_paths) {
    auto split = SplitPath(p);
    if (!split.ok()) {
      return absl::InvalidArgumentError("CheckKnownKeys: " + std::string(split.status().message()));
    }
    patterns.push_back(std::move(split).value());
  }

  struct Unknown {
    ConfigOrigin origin;
    std::string path;
    std::string suggestion;
  };
  std::vector<Unknown> unknown;
  std::vector<std::string> path;
  // Visits the children of `node`, whose path is covered by an allowed path's prefix.
  std::function<void(const Json&)> visit = [&](const Json& node) {
    if (!node.is_structured()) return;
    size_t index = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++index) {
      path.push_back(node.is_object() ? it.key() : std::to_string(index));
      bool covered = false, inner = false;
      for (const auto& pat : patterns) {
        if (pat.size() <= path.size()) {
          covered = covered || MatchesPrefix(pat, path, pat.size());
        } else {
          inner = inner || MatchesPrefix(pat, path, path.size());
        }
      }
      // Everything beneath an allowed path is allowed.
      if (!covered && inner) {
        visit(it.value());
      } else if (!covered && node.is_object()) {
        unknown.push_back({OriginOfSegments(path), FullPath(JoinDotted(path, path.size())),
                           Suggest(path, patterns, allowed_paths)});
      }
      path.pop_back();
    }
  };
  if (tree_.is_object()) visit(tree_);
  if (unknown.empty()) return absl::OkStatus();

  // The first in file order; keys from the file before overrides.
  auto first = std::min_element(unknown.begin(), unknown.end(),
                                [](const Unknown& a, const Unknown& b) {
                                  const bool a_line = a.origin.line > 0, b_line = b.origin.line > 0;
                                  if (a_line != b_line) return a_line;
                                  if (a.origin.line != b.origin.line) {
                                    return a.origin.line < b.origin.line;
                                  }
                                  return a.path < b.path;
                                });
  std::string msg = first->origin.ToString() + ": unknown key '" + first->path + "'";
  if (!first->suggestion.empty()) msg += " (did you mean '" + FullPath(first->suggestion) + "'?)";
  if (unknown.size() > 1) {
    msg += " (and " + std::to_string(unknown.size() - 1) + " more unknown key" +
           (unknown.size() > 2 ? "s" : "") + ")";
  }
  return absl::InvalidArgumentError(msg);
}

}  // namespace grpo
