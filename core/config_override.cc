// Config::ApplyOverride: "--set a.b.c=value".
#include <utility>

#include "core/config_internal.h"
#include "core/strings.h"
#include "core/utf8.h"

namespace grpo {

using config_internal::DocumentSource;
using config_internal::JoinDotted;
using config_internal::Json;
using config_internal::KindName;
using config_internal::ParsedDocument;
using config_internal::ParseIndex;
using config_internal::PointerOf;
using config_internal::Resolved;

absl::Status Config::ApplyOverrides(const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) GRPO_RETURN_IF_ERROR(ApplyOverride(a));
  return absl::OkStatus();
}

absl::Status Config::ApplyOverride(std::string_view assignment) {
  const std::string shown = "--set '" + std::string(assignment) + "'";
  auto error = [&](const std::string& message) {
    return absl::InvalidArgumentError(shown + ": " + message);
  };
  try {
    const size_t eq = assignment.find('=');
    if (eq == std::string_view::npos) return error("expected key=value");
    const std::string_view key = StripAsciiWhitespace(assignment.substr(0, eq));
    const std::string_view value_text = StripAsciiWhitespace(assignment.substr(eq + 1));
    if (key.empty()) return error("empty key before '='");
    auto split = config_internal::SplitPath(key);
    if (!split.ok()) return error(std::string(split.status().message()));
    const std::vector<std::string>& segs = *split;
    if (!IsValidUtf8(key)) return error("invalid UTF-8 in the key");

    // The value: a YAML (or JSON) flow value, or a plain scalar taken as written.
    DocumentSource source{shown, std::make_shared<const std::string>("--set"), true, segs};
    Json value;
    std::map<std::string, Origin> value_origins;
    const char first = value_text.empty() ? '\0' : value_text[0];
    if (first == '[' || first == '{' || first == '"' || first == '\'' || first == '!') {
      GRPO_ASSIGN_OR_RETURN(ParsedDocument doc, config_internal::ParseDocument(value_text, source));
      value = doc.has_root ? std::move(doc.value) : Json(nullptr);
      value_origins = std::move(doc.origins);
    } else {
      if (!IsValidUtf8(value_text)) return error("invalid UTF-8 in the value");
      std::string why;
      const Resolved r = config_internal::ResolvePlain(value_text, &value, &why);
      if (r == Resolved::kError) return error(why);
      if (r == Resolved::kString) value = std::string(value_text);
    }
    value_origins[""] = Origin{source.file, 0};
    if (static_cast<int>(segs.size()) > kMaxDepth) {
      return error("key nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }

    // Walk to the parent of the target, checking everything before changing anything.
    Json* node = &tree_;
    size_t walked = 0;  // segments that exist
    for (; walked < segs.size(); ++walked) {
      const std::string& seg = segs[walked];
      const bool last = walked + 1 == segs.size();
      const std::string at = FullPath(JoinDotted(segs, walked));
      if (node->is_object()) {
        if (last) break;
        auto it = node->find(seg);
        if (it == node->end() || it->is_null()) break;  // created below
        node = &*it;
      } else if (node->is_array()) {
        size_t index;
        if (!ParseIndex(seg, &index)) {
          return error("'" + at + "' is a list and '" + seg + "' is not an index");
        }
        if (index >= node->size()) {
          return error("index " + seg + " is out of range, '" + at + "' has " +
                       std::to_string(node->size()) + " elements");
        }
        if (last) break;
        node = &(*node)[index];
      } else {
        return error("cannot set '" + FullPath(key) + "': '" + at + "' is " + KindName(*node) +
                     " (" + OriginOfSegments({segs.begin(), segs.begin() + walked}).ToString() +
                     "), not a mapping");
      }
    }

    // Create the missing mappings (a null on the way becomes a mapping).
    for (; walked + 1 < segs.size(); ++walked) {
      node = &((*node)[segs[walked]] = Json::object());
      origins_[PointerOf(segs, walked + 1)] = Origin{source.file, 0};
    }

    // Replace the target and its origins.
    const std::string ptr = PointerOf(segs, segs.size());
    const std::string below = ptr + "/";
    auto it = origins_.lower_bound(below);
    while (it != origins_.end() && it->first.compare(0, below.size(), below) == 0) {
      it = origins_.erase(it);
    }
    for (auto& [p, o] : value_origins) origins_[ptr + p] = o;
    size_t index;
    if (node->is_array() && ParseIndex(segs.back(), &index)) {
      (*node)[index] = std::move(value);
    } else {
      (*node)[segs.back()] = std::move(value);
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(shown + ": unexpected error: " + e.what());
  }
}

}  // namespace grpo
