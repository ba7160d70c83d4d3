// ConfigTreeBuilder: parse events -> a tree with origins (see config_internal.h).
#include <algorithm>
#include <utility>

#include "core/config_internal.h"

namespace grpo {
namespace config_internal {
namespace {

// Path segment under which a `<<` value is built before it is merged; never a real key
// (keys are valid UTF-8).
const std::string kMergeSegment = "\xff<<";

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

std::string ConfigTreeBuilder::Where(int line) const {
  if (source_.one_line || line <= 0) return source_.where;
  return source_.where + ":" + std::to_string(line);
}

std::string ConfigTreeBuilder::Dotted() const {
  std::string out = JoinDotted(source_.base, source_.base.size());
  for (const auto& s : segs_) {
    if (!out.empty()) out += '.';
    out += s == kMergeSegment ? std::string("<<") : s;
  }
  return out;
}

std::string ConfigTreeBuilder::MappingName() const {
  std::string path = Dotted();
  return path.empty() ? std::string("the top-level mapping") : "mapping '" + path + "'";
}

void ConfigTreeBuilder::Fail(std::string message, absl::StatusCode code, bool fatal) const {
  throw BuildAbort{absl::Status(code, std::move(message)), fatal};
}

void ConfigTreeBuilder::PathError(int line, const std::string& path,
                                  const std::string& what) const {
  if (path.empty()) Fail(Where(line) + ": " + what);
  Fail(Where(line) + ": key '" + path + "': " + what);
}

void ConfigTreeBuilder::NodeError(int line, const std::string& what) const {
  std::string path = Dotted();
  if (!frames_.empty()) {
    const Frame& f = frames_.back();
    if (!path.empty()) path += '.';
    path += !f.is_map ? std::to_string(f.next_index) : f.key_is_merge ? "<<" : f.key;
  }
  PathError(line, path, what);
}

void ConfigTreeBuilder::CheckDepth(size_t depth, int line) {
  if (source_.base.size() + depth > static_cast<size_t>(Config::kMaxDepth)) {
    Fail(Where(line) + ": nesting deeper than " + std::to_string(Config::kMaxDepth) + " levels",
         absl::StatusCode::kInvalidArgument, /*fatal=*/true);
  }
}

void ConfigTreeBuilder::Count(size_t n, int line) {
  nodes_ += n;
  if (nodes_ > node_budget_) {
    Fail(Where(line) + ": document expands to more than " + std::to_string(node_budget_) +
             " nodes (aliases repeated too often?)",
         absl::StatusCode::kResourceExhausted, /*fatal=*/true);
  }
}

void ConfigTreeBuilder::Key(std::string key, int line, bool is_merge, Anchor anchor) {
  Frame& f = frames_.back();
  if (anchor != 0) {
    anchors_[anchor] = Anchored{key, {{"", Config::Origin{source_.file, Line(line)}}}};
  }
  if (!is_merge) {
    auto [pos, inserted] = f.seen.emplace(key, line);
    if (!inserted) {
      segs_.push_back(key);
      std::string path = Dotted();
      segs_.pop_back();
      std::string first = source_.one_line ? std::string("given twice")
                                           : "first at line " + std::to_string(pos->second);
      Fail(Where(line) + ": duplicate key '" + path + "' (" + first + ")");
    }
  }
  f.key = std::move(key);
  f.key_line = line;
  f.key_is_merge = is_merge;
  f.expecting_key = false;
}

void ConfigTreeBuilder::Value(Json value, int line, Anchor anchor) {
  BeginNode(line);
  EndNode(std::move(value), anchor);
}

void ConfigTreeBuilder::Alias(Anchor anchor, int line) {
  auto it = anchors_.find(anchor);
  if (it == anchors_.end()) {
    Fail(Where(line) + ": alias refers to a node that contains it (a cycle)");
  }
  const Anchored& a = it->second;
  if (ExpectingKey()) {
    if (!a.value.is_string()) {
      Fail(Where(line) + ": " + MappingName() + " has a key that is " + KindName(a.value) +
           " (through an alias; keys must be strings)");
    }
    Key(a.value.get<std::string>(), line);
    return;
  }
  Count(a.nodes, line);
  BeginNode(line);
  // The copy keeps the origins of where the anchored node's contents were written.
  for (const auto& [rel, origin] : a.origins) {
    if (!rel.empty()) origins_[ptr_ + rel] = origin;
  }
  EndNode(Json(a.value));
}

// A value node starts: take its path segment from the parent and record its origin.
void ConfigTreeBuilder::BeginNode(int line) {
  Count(1, line);
  int origin_line = line;
  if (!frames_.empty()) {
    Frame& parent = frames_.back();
    std::string seg;
    if (parent.is_map) {
      seg = parent.key_is_merge ? kMergeSegment : parent.key;
      origin_line = parent.key_line;  // a value is "on the line of its key"
    } else {
      seg = std::to_string(parent.next_index);
    }
    ptr_sizes_.push_back(ptr_.size());
    ptr_ += '/' + EscapePointerToken(seg);
    segs_.push_back(std::move(seg));
  }
  origins_[ptr_] = Config::Origin{source_.file, Line(origin_line)};
}

// The current node is complete: remember it under its anchor, leave its path, hand it to the
// parent.
void ConfigTreeBuilder::EndNode(Json value, Anchor anchor, size_t nodes) {
  if (anchor != 0) anchors_[anchor] = Anchored{value, CopyOrigins(ptr_), nodes};
  if (frames_.empty()) {
    doc_.has_root = true;
    doc_.line = origins_[""].line;
    doc_.value = std::move(value);
    doc_.origins = std::move(origins_);
    return;
  }
  ptr_.resize(ptr_sizes_.back());
  ptr_sizes_.pop_back();
  segs_.pop_back();
  Frame& parent = frames_.back();
  parent.expecting_key = true;
  if (!parent.is_map) {
    parent.value.push_back(std::move(value));
    ++parent.next_index;
  } else if (!parent.key_is_merge) {
    parent.value[parent.key] = std::move(value);
  } else {
    // Take the `<<` value and its origins out of the tree; merged when the mapping ends.
    const std::string merge_ptr = ptr_ + "/" + EscapePointerToken(kMergeSegment);
    Origins rel = CopyOrigins(merge_ptr);
    for (const auto& entry : rel) origins_.erase(merge_ptr + entry.first);
    auto is_map = [](const Json& e) { return e.is_object(); };
    const bool maps =
        value.is_object() || (value.is_array() && std::all_of(value.begin(), value.end(), is_map));
    if (!maps) {
      PathError(parent.key_line, Dotted(), "'<<' (merge) takes a mapping or a list of mappings");
    }
    if (parent.merges.empty()) parent.merge_line = parent.key_line;
    parent.merges.emplace_back(std::move(value), std::move(rel));
  }
}

// Origins at and below `ptr`, relative to it.
ConfigTreeBuilder::Origins ConfigTreeBuilder::CopyOrigins(const std::string& ptr) const {
  Origins rel;
  auto own = origins_.find(ptr);
  if (own != origins_.end()) rel[""] = own->second;
  const std::string prefix = ptr + "/";
  for (auto it = origins_.lower_bound(prefix);
       it != origins_.end() && StartsWith(it->first, prefix); ++it) {
    rel[it->first.substr(ptr.size())] = it->second;
  }
  return rel;
}

void ConfigTreeBuilder::StartCollection(bool is_map, int line, Anchor anchor) {
  if (ExpectingKey()) {
    Fail(Where(line) + ": " + MappingName() + " has a key that is " +
         (is_map ? "a mapping" : "a list") + " (keys must be strings)");
  }
  CheckDepth(frames_.size() + 1, line);
  BeginNode(line);
  Frame f;
  f.is_map = is_map;
  f.value = is_map ? Json::object() : Json::array();
  f.anchor = anchor;
  f.line = line;
  f.nodes_at_start = nodes_;
  frames_.push_back(std::move(f));
}

// Merges one `<<` source into the mapping `f`: explicit keys and earlier sources win.
void ConfigTreeBuilder::Merge(Frame& f, const Json& source, const Origins& rel) {
  auto merge_one = [&](const Json& map, const std::string& rel_prefix) {
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (f.value.contains(it.key())) continue;
      f.value[it.key()] = it.value();
      const std::string from = rel_prefix + "/" + EscapePointerToken(it.key());
      const std::string to = ptr_ + "/" + EscapePointerToken(it.key());
      for (auto o = rel.lower_bound(from); o != rel.end() && StartsWith(o->first, from); ++o) {
        const std::string tail = o->first.substr(from.size());
        if (tail.empty() || tail[0] == '/') origins_[to + tail] = o->second;
      }
    }
  };
  if (source.is_object()) {
    merge_one(source, "");
  } else {
    for (size_t i = 0; i < source.size(); ++i) merge_one(source[i], "/" + std::to_string(i));
  }
  Count(source.size(), f.merge_line);
}

void ConfigTreeBuilder::EndCollection() {
  Frame f = std::move(frames_.back());
  frames_.pop_back();
  for (const auto& [source, rel] : f.merges) Merge(f, source, rel);
  EndNode(std::move(f.value), f.anchor, nodes_ - f.nodes_at_start + 1);
}

}  // namespace config_internal
}  // namespace grpo
