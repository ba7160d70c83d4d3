// What the parts of //core:config share; not for use outside them.
//
//   config.cc           the tree, typed access, paths, errors; Parse picks JSON or YAML
//   config_builder.cc   parse events -> tree with origins (duplicate keys, limits, anchors, `<<`)
//   config_yaml.cc      YAML in (yaml-cpp events, core-schema scalars, tags) and out (Dump)
//   config_json.cc      JSON in (nlohmann's SAX parser; lines from byte offsets)
//   config_override.cc  --set
//   config_keys.cc      CheckKnownKeys and its did-you-mean
#ifndef GRPO_CORE_CONFIG_INTERNAL_H_
#define GRPO_CORE_CONFIG_INTERNAL_H_

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.h"

namespace grpo {
namespace config_internal {

using Json = nlohmann::json;

// Messages.
std::string FloatText(double d);                    // shortest round-trip form, ".inf", ".nan"
std::string QuoteForMessage(const std::string& s);  // JSON-quoted, cut after 60 bytes
std::string Describe(const Json& v);                // "3", "\"abc\"", "a list"
std::string KindName(const Json& v);                // "an integer", "a mapping"

// Paths: dotted for people ("data.files.0"), JSON pointers for origins ("/data/files/0").
absl::StatusOr<std::vector<std::string>> SplitPath(std::string_view path);
std::string JoinDotted(const std::vector<std::string>& segs, size_t n);
std::string EscapePointerToken(std::string_view s);
std::string PointerOf(const std::vector<std::string>& segs, size_t n);
bool ParseIndex(std::string_view seg, size_t* index);  // digits only, no sign

// A YAML 1.2 core-schema plain scalar: kValue puts null/bool/int/float in *out; kString means
// the text is a string; kError puts why in *error (a number that cannot be represented).
enum class Resolved { kString, kValue, kError };
Resolved ResolvePlain(std::string_view s, Json* out, std::string* error);

// Where a document comes from.
struct DocumentSource {
  std::string where;                         // starts messages: "recipe.yaml", "--set 'a=[1'"
  std::shared_ptr<const std::string> file;   // recorded in origins
  bool one_line = false;  // an override's value: columns only in messages, every origin line 0
  std::vector<std::string> base;             // the path of the document's root
};

// Thrown by the builder to stop at an error.
struct BuildAbort {
  absl::Status status;
  bool fatal = false;  // stop the parser (nesting or size limits), not only the building
};

// A parsed document: its root value and the origins of its nodes (relative to the root).
struct ParsedDocument {
  bool has_root = false;  // false for an empty stream
  Json value;
  int line = 0;
  std::map<std::string, Config::Origin> origins;
};

// Builds a tree from parse events in document order (a stack of open mappings and lists).
// Refuses duplicate keys (naming both lines), bounds nesting and the node count, keeps the
// origin of every node, and resolves anchors, aliases and `<<` merge keys (explicit keys win).
// Errors are thrown as BuildAbort; Guard keeps the first and ignores the events after it.
class ConfigTreeBuilder {
 public:
  using Origins = std::map<std::string, Config::Origin>;  // JSON pointer -> origin
  using Anchor = size_t;                                  // 0: none
  static constexpr const char* kKeyHint =
      " (keys must be strings; quote keys that look like numbers, booleans or null)";

  ConfigTreeBuilder(const DocumentSource& source, size_t node_budget)
      : source_(source), node_budget_(node_budget) {}

  bool ExpectingKey() const {
    return !frames_.empty() && frames_.back().is_map && frames_.back().expecting_key;
  }
  // A key of the open mapping; `is_merge` for a plain `<<`. Remembered under `anchor`.
  void Key(std::string key, int line, bool is_merge = false, Anchor anchor = 0);
  // A scalar value; remembered under `anchor`.
  void Value(Json value, int line, Anchor anchor = 0);
  // A copy of the node remembered under `anchor` (as a value or as a key).
  void Alias(Anchor anchor, int line);
  void StartCollection(bool is_map, int line, Anchor anchor = 0);
  void EndCollection();
  // The depth check for a collection about to start, `depth` levels below the root.
  void CheckDepth(size_t depth, int line);

  template <typename F>
  void Guard(F&& event) {
    if (!failed_.ok()) return;
    try {
      event();
    } catch (const BuildAbort& abort) {
      if (abort.fatal) throw;
      failed_ = abort.status;
    }
  }
  const absl::Status& failed() const { return failed_; }
  ParsedDocument Finish() { return std::move(doc_); }

  // For messages: "recipe.yaml:12" (the line is left out for one-line sources), and the open
  // mapping as "mapping 'a.b'" or "the top-level mapping".
  std::string Where(int line) const;
  std::string MappingName() const;
  [[noreturn]] void Fail(std::string message,
                         absl::StatusCode code = absl::StatusCode::kInvalidArgument,
                         bool fatal = false) const;
  // Fails with "<where>: key '<path of the value about to be added>': <what>".
  [[noreturn]] void NodeError(int line, const std::string& what) const;

 private:
  struct Anchored {
    Json value;
    Origins origins;  // relative to the anchored node
    size_t nodes = 1;
  };
  struct Frame {
    bool is_map = false;
    Json value;
    Anchor anchor = 0;
    int line = 0;
    size_t nodes_at_start = 0;
    // Mappings:
    bool expecting_key = true;
    std::string key;
    int key_line = 0;
    bool key_is_merge = false;
    std::map<std::string, int> seen;  // explicit key -> line
    std::vector<std::pair<Json, Origins>> merges;
    int merge_line = 0;
    // Lists:
    size_t next_index = 0;
  };

  int Line(int line) const { return source_.one_line ? 0 : line; }
  std::string Dotted() const;  // the path of the current node
  [[noreturn]] void PathError(int line, const std::string& path, const std::string& what) const;
  void Count(size_t n, int line);
  void BeginNode(int line);
  void EndNode(Json value, Anchor anchor = 0, size_t nodes = 1);
  Origins CopyOrigins(const std::string& ptr) const;
  void Merge(Frame& f, const Json& source, const Origins& rel);

  const DocumentSource& source_;
  size_t node_budget_;
  absl::Status failed_;
  size_t nodes_ = 0;
  std::vector<Frame> frames_;
  std::string ptr_;                 // JSON pointer of the current node
  std::vector<size_t> ptr_sizes_;
  std::vector<std::string> segs_;   // its path below the root
  Origins origins_;
  std::map<Anchor, Anchored> anchors_;  // completed anchored nodes
  ParsedDocument doc_;
};

// The two readers. ParseJson returns nullopt when the text is not JSON (then *syntax_error
// says why, "<where>:line:column: ..."); ParseYaml reads any YAML document.
std::optional<absl::StatusOr<ParsedDocument>> ParseJson(std::string_view text,
                                                        const DocumentSource& source,
                                                        std::string* syntax_error);
absl::StatusOr<ParsedDocument> ParseYaml(std::string_view text, const DocumentSource& source);

// JSON when it parses as JSON (text starting with '{' or '['), otherwise YAML; a byte order
// mark is skipped. For a source named *.json that is neither, the JSON error is reported.
absl::StatusOr<ParsedDocument> ParseDocument(std::string_view text, const DocumentSource& source);

// Budget for nodes: aliases may repeat subtrees; nothing else makes a tree much larger than
// its text.
inline size_t NodeBudget(std::string_view text) { return text.size() + 100000; }

}  // namespace config_internal
}  // namespace grpo

#endif  // GRPO_CORE_CONFIG_INTERNAL_H_
