// Config: the tree, typed access, paths and errors. Reading YAML and JSON, overrides and the
// known-keys check live beside it (see config_internal.h for the map).
#include "core/config.h"

#include <sys/stat.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "core/config_internal.h"
#include "core/file.h"
#include "core/utf8.h"

namespace grpo {
namespace config_internal {

std::string FloatText(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  return Json(d).dump();  // shortest round-trip form; always has '.' or 'e'
}

std::string QuoteForMessage(const std::string& s) {
  constexpr size_t kMax = 60;
  std::string q = Json(s.substr(0, kMax)).dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > kMax) q.insert(q.size() - 1, "...");
  return q;
}

std::string Describe(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean:
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return v.dump();
    case Json::value_t::number_float: return FloatText(v.get<double>());
    case Json::value_t::string: return QuoteForMessage(v.get_ref<const std::string&>());
    default: return KindName(v);
  }
}

std::string KindName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "a list";
    case Json::value_t::object: return "a mapping";
    default: return "an unsupported value";
  }
}

absl::StatusOr<std::vector<std::string>> SplitPath(std::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("empty key path");
  std::vector<std::string> segs;
  for (size_t start = 0;;) {
    const size_t dot = path.find('.', start);
    const std::string_view seg = path.substr(start, dot == path.npos ? path.npos : dot - start);
    if (seg.empty()) {
      return absl::InvalidArgumentError("bad key path '" + std::string(path) +
                                        "': empty key between dots");
    }
    segs.emplace_back(seg);
    if (dot == path.npos) return segs;
    start = dot + 1;
  }
}

std::string JoinDotted(const std::vector<std::string>& segs, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < segs.size(); ++i) {
    if (i > 0) out += '.';
    out += segs[i];
  }
  return out;
}

std::string EscapePointerToken(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PointerOf(const std::vector<std::string>& segs, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < segs.size(); ++i) out += "/" + EscapePointerToken(segs[i]);
  return out;
}

bool ParseIndex(std::string_view seg, size_t* index) {
  if (seg.empty() || seg.find_first_not_of("0123456789") != seg.npos) return false;
  auto [p, ec] = std::from_chars(seg.data(), seg.data() + seg.size(), *index);
  return ec == std::errc() && p == seg.data() + seg.size();
}

absl::StatusOr<ParsedDocument> ParseDocument(std::string_view text, const DocumentSource& source) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  const size_t start = text.find_first_not_of(" \t\r\n");
  std::string json_error;
  if (start != text.npos && (text[start] == '{' || text[start] == '[')) {
    auto json = ParseJson(text, source, &json_error);
    if (json.has_value()) return *std::move(json);
  }
  auto yaml = ParseYaml(text, source);
  if (!yaml.ok() && !json_error.empty() && absl::EndsWith(source.where, ".json")) {
    return absl::InvalidArgumentError(json_error);
  }
  return yaml;
}

namespace {

// Checks a tree handed to FromJson: nesting, UTF-8, no binary values.
absl::Status CheckTree(const Json& v, int depth, const std::string& where) {
  // `depth` counts the collections above `v`; v itself is one more level.
  if (v.is_structured() && depth >= Config::kMaxDepth) {
    return absl::InvalidArgumentError(where + ": nesting deeper than " +
                                      std::to_string(Config::kMaxDepth) + " levels");
  }
  if (v.is_string() && !IsValidUtf8(v.get_ref<const std::string&>())) {
    return absl::InvalidArgumentError(where + ": invalid UTF-8 in a value");
  }
  if (v.is_binary() || v.is_discarded()) {
    return absl::InvalidArgumentError(where + ": binary or discarded values are not supported");
  }
  if (!v.is_structured()) return absl::OkStatus();
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (v.is_object() && !IsValidUtf8(it.key())) {
      return absl::InvalidArgumentError(where + ": invalid UTF-8 in a key");
    }
    GRPO_RETURN_IF_ERROR(CheckTree(it.value(), depth + 1, where));
  }
  return absl::OkStatus();
}

// Typed readers; an error's message is what follows "<origin>: key '<path>': ".
absl::StatusOr<int64_t> ReadInt(const Json& v) {
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::OutOfRangeError("integer " + v.dump() + " is out of range for int64");
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (!v.is_number_float()) {
    return absl::InvalidArgumentError("expected an integer, got " + Describe(v));
  }
  const double d = v.get<double>();
  if (!std::isfinite(d) || d != std::trunc(d)) {
    return absl::InvalidArgumentError("expected an integer, got " + FloatText(d) +
                                      " (not a whole number)");
  }
  // [-2^63, 2^63) holds exactly the doubles that convert to int64.
  if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
    return absl::OutOfRangeError("integer " + FloatText(d) + " is out of range for int64");
  }
  return static_cast<int64_t>(d);
}

absl::StatusOr<double> ReadDouble(const Json& v) {
  if (v.is_number()) return v.get<double>();
  return absl::InvalidArgumentError("expected a number, got " + Describe(v));
}

absl::StatusOr<bool> ReadBool(const Json& v) {
  if (v.is_boolean()) return v.get<bool>();
  static const char* const kYamlOneOneWords[] = {"yes", "no", "on",  "off", "y",
                                                 "n",   "Yes", "No", "On",  "Off"};
  bool hint = false;
  for (const char* word : kYamlOneOneWords) hint = hint || (v.is_string() && v == word);
  return absl::InvalidArgumentError("expected a boolean, got " + Describe(v) +
                                    (hint ? " (write true or false)" : ""));
}

absl::StatusOr<std::string> ReadString(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  return absl::InvalidArgumentError(
      "expected a string, got " + Describe(v) +
      (v.is_primitive() && !v.is_null() ? " (quote it to make it a string)" : ""));
}

}  // namespace
}  // namespace config_internal

using config_internal::Json;

std::string ConfigOrigin::ToString() const {
  if (line <= 0) return file;
  return file + ":" + std::to_string(line);
}

Config::Config() { origins_[""] = Origin{std::make_shared<const std::string>(name_), 0}; }

absl::StatusOr<Config> Config::LoadFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(path + ": is a directory, not a config file");
  }
  GRPO_ASSIGN_OR_RETURN(std::string text, ReadFile(path, size_t{1} << 30));
  return Parse(text, path);
}

absl::StatusOr<Config> Config::Parse(std::string_view text, std::string display_name) {
  try {
    auto file = std::make_shared<const std::string>(display_name);
    const config_internal::DocumentSource source{display_name, file, /*one_line=*/false, {}};
    GRPO_ASSIGN_OR_RETURN(config_internal::ParsedDocument doc,
                          config_internal::ParseDocument(text, source));
    Config config;
    config.name_ = display_name;
    if (doc.has_root && !doc.value.is_null()) {
      if (!doc.value.is_object()) {
        return absl::InvalidArgumentError(
            display_name + ":" + std::to_string(std::max(doc.line, 1)) +
            ": the top level must be a mapping, got " + config_internal::KindName(doc.value));
      }
      config.tree_ = std::move(doc.value);
      config.origins_ = std::move(doc.origins);
    }
    config.origins_[""] = Origin{file, 0};  // the whole file: no single line
    return config;
  } catch (const std::exception& e) {
    return absl::InternalError(display_name + ": unexpected error while parsing: " + e.what());
  } catch (...) {
    return absl::InternalError(display_name + ": unexpected error while parsing");
  }
}

absl::StatusOr<Config> Config::FromJson(nlohmann::json tree, std::string display_name) {
  if (!tree.is_object()) {
    return absl::InvalidArgumentError(display_name + ": the top level must be a mapping, got " +
                                      config_internal::KindName(tree));
  }
  GRPO_RETURN_IF_ERROR(config_internal::CheckTree(tree, 0, display_name));
  Config config;
  config.name_ = display_name;
  config.tree_ = std::move(tree);
  config.origins_[""] = Origin{std::make_shared<const std::string>(display_name), 0};
  return config;
}

std::string Config::FullPath(std::string_view path) const {
  if (prefix_.empty()) return std::string(path);
  if (path.empty()) return prefix_;
  return prefix_ + "." + std::string(path);
}

ConfigOrigin Config::OriginOfSegments(const std::vector<std::string>& segments) const {
  for (size_t n = segments.size() + 1; n-- > 0;) {
    auto it = origins_.find(config_internal::PointerOf(segments, n));
    if (it != origins_.end()) {
      return ConfigOrigin{it->second.file ? *it->second.file : name_, it->second.line};
    }
  }
  return ConfigOrigin{name_, 0};
}

ConfigOrigin Config::OriginOf(std::string_view path) const {
  auto split = config_internal::SplitPath(path);
  return OriginOfSegments(split.ok() ? *split : std::vector<std::string>());
}

absl::Status Config::Error(std::string_view path, std::string_view message) const {
  return absl::InvalidArgumentError(OriginOf(path).ToString() + ": key '" + FullPath(path) +
                                    "': " + std::string(message));
}

// Walks `segments`; nullptr with *why_missing empty: the key is absent; nullptr with a
// message: the path runs into a scalar or a list with a non-index segment.
const Json* Config::Find(const std::vector<std::string>& segments,
                         std::string* why_missing) const {
  why_missing->clear();
  const Json* node = &tree_;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& seg = segments[i];
    auto parent = [&] { return FullPath(config_internal::JoinDotted(segments, i)); };
    size_t index;
    if (node->is_object()) {
      auto it = node->find(seg);
      if (it == node->end()) return nullptr;
      node = &*it;
    } else if (!node->is_array()) {
      *why_missing = (i == 0 && prefix_.empty() ? std::string("the top level")
                                                : "'" + parent() + "'") +
                     " is " + config_internal::KindName(*node) + ", not a mapping";
      return nullptr;
    } else if (!config_internal::ParseIndex(seg, &index)) {
      *why_missing = "'" + parent() + "' is a list and '" + seg + "' is not an index";
      return nullptr;
    } else if (index >= node->size()) {
      return nullptr;
    } else {
      node = &(*node)[index];
    }
  }
  return node;
}

absl::StatusOr<const Json*> Config::Lookup(std::string_view path, bool null_is_absent) const {
  GRPO_ASSIGN_OR_RETURN(std::vector<std::string> segs, config_internal::SplitPath(path));
  std::string why;
  const Json* node = Find(segs, &why);
  const std::string where = OriginOfSegments(segs).ToString() + ": key '" + FullPath(path) + "'";
  if (node == nullptr && !why.empty()) return absl::InvalidArgumentError(where + ": " + why);
  if (node == nullptr && !null_is_absent) return absl::NotFoundError(where + " is missing");
  if (node == nullptr || (null_is_absent && node->is_null())) {
    return static_cast<const Json*>(nullptr);
  }
  return node;
}

bool Config::Has(std::string_view path) const {
  auto split = config_internal::SplitPath(path);
  std::string why;
  return split.ok() && Find(*split, &why) != nullptr;
}

template <typename T>
absl::StatusOr<T> Config::Get(std::string_view path, absl::StatusOr<T> (*read)(const Json&),
                              std::optional<T> default_value) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, default_value.has_value()));
  if (v == nullptr) return *std::move(default_value);
  absl::StatusOr<T> r = read(*v);
  if (r.ok()) return r;
  return absl::Status(r.status().code(),
                      Error(path, std::string(r.status().message())).message());
}

absl::StatusOr<int64_t> Config::GetInt(std::string_view path) const {
  return Get<int64_t>(path, config_internal::ReadInt, std::nullopt);
}
absl::StatusOr<double> Config::GetDouble(std::string_view path) const {
  return Get<double>(path, config_internal::ReadDouble, std::nullopt);
}
absl::StatusOr<bool> Config::GetBool(std::string_view path) const {
  return Get<bool>(path, config_internal::ReadBool, std::nullopt);
}
absl::StatusOr<std::string> Config::GetString(std::string_view path) const {
  return Get<std::string>(path, config_internal::ReadString, std::nullopt);
}
absl::StatusOr<std::vector<std::string>> Config::GetStringList(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  if (!v->is_array()) {
    return Error(path, "expected a list of strings, got " + config_internal::Describe(*v));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& e = (*v)[i];
    if (!e.is_string()) {
      return Error(std::string(path) + "." + std::to_string(i),
                   "expected a string, got " + config_internal::Describe(e));
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}
absl::StatusOr<int64_t> Config::GetIntOr(std::string_view path, int64_t default_value) const {
  return Get<int64_t>(path, config_internal::ReadInt, default_value);
}
absl::StatusOr<double> Config::GetDoubleOr(std::string_view path, double default_value) const {
  return Get<double>(path, config_internal::ReadDouble, default_value);
}
absl::StatusOr<bool> Config::GetBoolOr(std::string_view path, bool default_value) const {
  return Get<bool>(path, config_internal::ReadBool, default_value);
}
absl::StatusOr<std::string> Config::GetStringOr(std::string_view path,
                                                std::string default_value) const {
  return Get<std::string>(path, config_internal::ReadString, std::move(default_value));
}
absl::StatusOr<std::vector<std::string>> Config::GetStringListOr(
    std::string_view path, std::vector<std::string> default_value) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, true));
  if (v == nullptr) return default_value;
  return GetStringList(path);
}

absl::StatusOr<Config> Config::Sub(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  if (!v->is_object()) {
    return Error(path, "expected a mapping, got " + config_internal::Describe(*v));
  }
  const std::vector<std::string> segs = config_internal::SplitPath(path).value();
  const std::string ptr = config_internal::PointerOf(segs, segs.size());
  Config sub;
  sub.tree_ = *v;
  const std::string below = ptr + "/";
  for (auto it = origins_.lower_bound(below);
       it != origins_.end() && it->first.compare(0, below.size(), below) == 0; ++it) {
    sub.origins_[it->first.substr(ptr.size())] = it->second;
  }
  auto own = origins_.find(ptr);
  const ConfigOrigin root = OriginOfSegments(segs);
  sub.origins_[""] = own != origins_.end()
                         ? own->second
                         : Origin{std::make_shared<const std::string>(root.file), root.line};
  sub.name_ = root.file;
  sub.prefix_ = FullPath(path);
  return sub;
}

absl::StatusOr<std::vector<Config>> Config::SubList(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  if (!v->is_array()) {
    return Error(path, "expected a list of mappings, got " + config_internal::Describe(*v));
  }
  std::vector<Config> out;
  for (size_t i = 0; i < v->size(); ++i) {
    GRPO_ASSIGN_OR_RETURN(Config element, Sub(std::string(path) + "." + std::to_string(i)));
    out.push_back(std::move(element));
  }
  return out;
}

}  // namespace grpo
