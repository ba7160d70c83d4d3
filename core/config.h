// Config: the one loader for recipes (YAML) and JSON files (HF config.json and friends).
//
// Contract:
//  - Parse/LoadFile read one YAML 1.2 or JSON document whose top level is a mapping (an empty
//    document is an empty mapping). Text that starts with '{' or '[' is read as JSON (by
//    nlohmann's parser) when it is valid JSON, otherwise as YAML (a flow mapping such as
//    `{a: 1}`); a file named *.json that is neither reports the JSON error. Plain YAML scalars
//    resolve by the YAML 1.2 core schema: null/~, true/false, ints (12, -3, 0x1F, 0o17),
//    floats (1.5, 1e-4, .inf, .nan); everything else, and anything quoted, is a string (so
//    `yes`/`no`/`on` are strings). Ints stay ints and floats stay floats (`1` vs `1.0`).
//  - Rejected with a message naming file and line: syntax errors (file:line:column and the
//    parser's message), duplicate keys (both lines), non-string keys (`1: x`, `null: x`,
//    `[a]: x`), unsupported tags, invalid UTF-8, nesting deeper than kMaxDepth (checked while
//    yaml-cpp parses, so its recursion stays shallow), aliases that form a cycle or expand to
//    too many nodes, quoted strings left open at the end of the text, more than one document
//    or stray text after it. `<<` merge keys are supported (explicit keys win).
//  - Every node remembers where it came from ("recipe.yaml:12", or "--set" for overrides); all
//    errors about a value start with that origin:
//      recipe.yaml:12: key 'train.lr': expected a number, got "abc"
//  - Paths are dot-separated keys; a number walks into a list ("data.files.0"). Keys that
//    contain '.' are not addressable by path (read them through json()).
//  - Get* fail on a missing key (NotFound) or a wrong type (InvalidArgument; OutOfRange for
//    an int that does not fit int64). Get*Or return the default when the key is absent or its
//    value is null, and still fail on a wrong type.
//  - Sub(path) is a view of a subtree that keeps origins and reports full paths in errors.
//  - No exception escapes this API.
#ifndef GRPO_CORE_CONFIG_H_
#define GRPO_CORE_CONFIG_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace grpo {

namespace config_internal {
class ConfigTreeBuilder;
struct ParsedDocument;
}  // namespace config_internal

// Where a value came from.
struct ConfigOrigin {
  std::string file;  // display name of the file, or "--set"
  int line = 0;      // 1-based; 0 when unknown (overrides, values built in code)

  // "recipe.yaml:12", or just the file ("--set", "recipe.yaml") when the line is unknown.
  std::string ToString() const;
};

class Config {
 public:
  // Nesting deeper than this (mappings/lists inside each other) is rejected.
  static constexpr int kMaxDepth = 256;

  // An empty mapping named "<config>".
  Config();

  // Reads and parses a file; the path as given is the display name in errors.
  static absl::StatusOr<Config> LoadFile(const std::string& path);
  // Parses YAML (or JSON) text. `display_name` starts error messages and origins.
  static absl::StatusOr<Config> Parse(std::string_view text, std::string display_name);
  // Wraps a tree built in code (must be an object); every origin is `display_name`.
  static absl::StatusOr<Config> FromJson(nlohmann::json tree, std::string display_name);

  // "a.b.c=value": value is a YAML flow value when it starts with [ { " ' or ! (so `[1,2]`,
  // `{x: 1}`, `"quoted"`), otherwise a plain scalar resolved like in a file (`3`, `3.5`,
  // `true`, `null`, anything else is the string as written, trimmed; empty is null). Missing
  // mappings on the way are created (a null on the way becomes a mapping); a number walks
  // into a list and must be in range; walking into any other scalar is an error. A failed
  // override changes nothing.
  absl::Status ApplyOverride(std::string_view assignment);
  // Applies each in order; stops at the first error.
  absl::Status ApplyOverrides(const std::vector<std::string>& assignments);

  // True when the path exists (its value may be null).
  bool Has(std::string_view path) const;

  absl::StatusOr<int64_t> GetInt(std::string_view path) const;    // ints; floats with no fraction
  absl::StatusOr<double> GetDouble(std::string_view path) const;  // floats and ints
  absl::StatusOr<bool> GetBool(std::string_view path) const;      // true/false only
  absl::StatusOr<std::string> GetString(std::string_view path) const;  // strings only (no coercion)
  absl::StatusOr<std::vector<std::string>> GetStringList(std::string_view path) const;

  absl::StatusOr<int64_t> GetIntOr(std::string_view path, int64_t default_value) const;
  absl::StatusOr<double> GetDoubleOr(std::string_view path, double default_value) const;
  absl::StatusOr<bool> GetBoolOr(std::string_view path, bool default_value) const;
  absl::StatusOr<std::string> GetStringOr(std::string_view path, std::string default_value) const;
  absl::StatusOr<std::vector<std::string>> GetStringListOr(
      std::string_view path, std::vector<std::string> default_value) const;

  // The mapping at `path`, with its origins; errors from it name full paths ("train.lr").
  absl::StatusOr<Config> Sub(std::string_view path) const;
  // The list at `path` whose elements are all mappings, one Config per element.
  absl::StatusOr<std::vector<Config>> SubList(std::string_view path) const;

  // Fails on the first key (in file order) not covered by `allowed_paths`, e.g.
  //   recipe.yaml:7: unknown key 'train.lrr' (did you mean 'train.lr'?)
  // An allowed path admits its ancestors and everything beneath it (so "model.overrides"
  // admits any keys under it); "*" matches any one key or list index ("rewards.*.weight").
  // The suggestion is the closest allowed key within edit distance 2.
  absl::Status CheckKnownKeys(const std::vector<std::string>& allowed_paths) const;

  // The effective config as block YAML (yaml-cpp's emitter), keys sorted; Parse(Dump()) gives
  // an equal tree, kinds and float bits included.
  std::string Dump() const;

  const nlohmann::json& json() const { return tree_; }
  // Display name of the file this config (or its root) came from.
  const std::string& name() const { return name_; }
  // The path of this config's root inside the file it came from ("" for a whole file).
  const std::string& prefix() const { return prefix_; }

  // Where the value at `path` (or its nearest existing ancestor) came from.
  ConfigOrigin OriginOf(std::string_view path) const;
  // An InvalidArgument "<origin>: key '<full path>': <message>", for callers' own checks
  // (e.g. `return cfg.Error("train.lr", "must be > 0");`).
  absl::Status Error(std::string_view path, std::string_view message) const;

 private:
  friend class config_internal::ConfigTreeBuilder;
  friend struct config_internal::ParsedDocument;

  struct Origin {
    std::shared_ptr<const std::string> file;
    int line = 0;
  };

  // Get<T>/Get<T>Or: the value at `path` read by `read`, or `default_value` (when given) if
  // it is absent or null.
  template <typename T>
  absl::StatusOr<T> Get(std::string_view path, absl::StatusOr<T> (*read)(const nlohmann::json&),
                        std::optional<T> default_value) const;

  const nlohmann::json* Find(const std::vector<std::string>& segments,
                             std::string* why_missing) const;
  absl::StatusOr<const nlohmann::json*> Lookup(std::string_view path, bool null_is_absent) const;
  ConfigOrigin OriginOfSegments(const std::vector<std::string>& segments) const;
  std::string FullPath(std::string_view path) const;

  nlohmann::json tree_ = nlohmann::json::object();
  // Origins keyed by JSON pointer ("/train/lr", "/data/files/0"; "" is the root).
  std::map<std::string, Origin> origins_;
  std::string name_ = "<config>";
  std::string prefix_;
};

}  // namespace grpo

#endif  // GRPO_CORE_CONFIG_H_
