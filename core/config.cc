#include "core/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <functional>
#include <limits>
#include <sstream>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/emitterstyle.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

namespace grpo {

using Json = nlohmann::json;

namespace {

constexpr std::string_view kOverrideOrigin = "--set";
const std::string kStrTag = "tag:yaml.org,2002:str";
const std::string kIntTag = "tag:yaml.org,2002:int";
const std::string kFloatTag = "tag:yaml.org,2002:float";
const std::string kBoolTag = "tag:yaml.org,2002:bool";
const std::string kNullTag = "tag:yaml.org,2002:null";
const std::string kMapTag = "tag:yaml.org,2002:map";
const std::string kSeqTag = "tag:yaml.org,2002:seq";

// ---------------------------------------------------------------------------------------------
// Small text helpers.

std::string_view Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool AllOf(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}

// Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) {
      return false;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string FloatText(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  return Json(d).dump();  // shortest round-trip form; always has '.' or 'e'
}

std::string QuoteForMessage(const std::string& s) {
  constexpr size_t kMax = 60;
  std::string shown = s.size() > kMax ? s.substr(0, kMax) : s;
  std::string q = Json(shown).dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > kMax) q.insert(q.size() - 1, "...");
  return q;
}

// A short rendering of a value for "got ..." in messages.
std::string Describe(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case Json::value_t::number_integer: return std::to_string(v.get<int64_t>());
    case Json::value_t::number_unsigned: return std::to_string(v.get<uint64_t>());
    case Json::value_t::number_float: return FloatText(v.get<double>());
    case Json::value_t::string: return QuoteForMessage(v.get_ref<const std::string&>());
    case Json::value_t::array: return "a list";
    case Json::value_t::object: return "a mapping";
    default: return "an unsupported value";
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

std::string EscapePointerToken(std::string_view s) {
  std::string out;
  out.reserve(s.size());
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

std::string JoinDotted(const std::vector<std::string>& segs, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < segs.size(); ++i) {
    if (i) out += '.';
    out += segs[i];
  }
  return out;
}

std::string PointerOf(const std::vector<std::string>& segs, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < segs.size(); ++i) {
    out += '/';
    out += EscapePointerToken(segs[i]);
  }
  return out;
}

Result<std::vector<std::string>> SplitPath(std::string_view path) {
  std::vector<std::string> segs;
  if (path.empty()) return Status::InvalidArgument("empty key path");
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string_view seg =
        path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (seg.empty()) {
      return Status::InvalidArgument("bad key path '" + std::string(path) +
                                     "': empty key between dots");
    }
    segs.emplace_back(seg);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return segs;
}

// A list index: digits only, no sign.
bool ParseIndex(std::string_view seg, size_t* index) {
  if (!AllOf(seg, IsDigit)) return false;
  auto [p, ec] = std::from_chars(seg.data(), seg.data() + seg.size(), *index);
  return ec == std::errc() && p == seg.data() + seg.size();
}

// ---------------------------------------------------------------------------------------------
// YAML 1.2 core schema for plain scalars.

bool IsNullWord(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

bool BoolWord(std::string_view s, bool* v) {
  if (s == "true" || s == "True" || s == "TRUE") {
    *v = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *v = false;
    return true;
  }
  return false;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool LooksLikeFloat(std::string_view s) {
  size_t i = 0, n = s.size();
  if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < n && IsDigit(s[i])) ++i, ++int_digits;
  if (i < n && s[i] == '.') {
    ++i;
    while (i < n && IsDigit(s[i])) ++i, ++frac_digits;
    if (int_digits == 0 && frac_digits == 0) return false;
  } else if (int_digits == 0) {
    return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < n && IsDigit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == n;
}

enum class Resolved { kString, kValue, kError };

// Resolves a plain scalar. kString: `s` is a string. kValue: *out holds null/bool/int/float.
// kError: *error says why (a number that cannot be represented).
Resolved ResolvePlain(std::string_view s, Json* out, std::string* error) {
  if (IsNullWord(s)) {
    *out = nullptr;
    return Resolved::kValue;
  }
  bool b;
  if (BoolWord(s, &b)) {
    *out = b;
    return Resolved::kValue;
  }
  const char first = s[0];
  if (!(IsDigit(first) || first == '-' || first == '+' || first == '.')) return Resolved::kString;

  // Hex and octal (unsigned, no sign, per the core schema).
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    std::string_view digits = s.substr(2);
    bool hex = s[1] == 'x';
    bool ok = hex ? AllOf(digits, IsHexDigit)
                  : AllOf(digits, [](char c) { return c >= '0' && c <= '7'; });
    if (!ok) return Resolved::kString;
    uint64_t u = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), u, hex ? 16 : 8);
    if (ec != std::errc() || p != digits.data() + digits.size()) {
      *error = "integer " + std::string(s) + " does not fit in 64 bits";
      return Resolved::kError;
    }
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      *out = static_cast<int64_t>(u);
    } else {
      *out = u;
    }
    return Resolved::kValue;
  }

  // Decimal integer.
  {
    std::string_view body = s;
    bool negative = false;
    if (body[0] == '-' || body[0] == '+') {
      negative = body[0] == '-';
      body.remove_prefix(1);
    }
    if (AllOf(body, IsDigit)) {
      uint64_t mag = 0;
      auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), mag);
      if (ec == std::errc() && p == body.data() + body.size()) {
        constexpr uint64_t kMaxPos = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
        if (!negative) {
          if (mag <= kMaxPos) {
            *out = static_cast<int64_t>(mag);
          } else {
            *out = mag;
          }
          return Resolved::kValue;
        }
        if (mag <= kMaxPos) {
          *out = -static_cast<int64_t>(mag);
          return Resolved::kValue;
        }
        if (mag == kMaxPos + 1) {
          *out = std::numeric_limits<int64_t>::min();
          return Resolved::kValue;
        }
      }
      // Too large for 64 bits: kept as a float, like JSON parsers do (GetInt reports it).
    }
  }

  // Special floats.
  {
    std::string_view body = s;
    bool negative = false;
    if (body[0] == '-' || body[0] == '+') {
      negative = body[0] == '-';
      body.remove_prefix(1);
    }
    if (body == ".inf" || body == ".Inf" || body == ".INF") {
      *out = negative ? -std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::infinity();
      return Resolved::kValue;
    }
    if (s == ".nan" || s == ".NaN" || s == ".NAN") {
      *out = std::numeric_limits<double>::quiet_NaN();
      return Resolved::kValue;
    }
  }

  if (!LooksLikeFloat(s)) return Resolved::kString;
  std::string_view body = s;
  if (body[0] == '+') body.remove_prefix(1);
  double d = 0;
  auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), d);
  if (ec == std::errc::result_out_of_range) {
    // Overflow is an error; underflow rounds towards zero like strtod does.
    std::string copy(body);
    double approx = std::strtod(copy.c_str(), nullptr);
    if (std::isinf(approx)) {
      *error = "number " + std::string(s) + " is out of range for a double";
      return Resolved::kError;
    }
    *out = approx;
    return Resolved::kValue;
  }
  if (ec != std::errc() || p != body.data() + body.size()) return Resolved::kString;
  *out = d;
  return Resolved::kValue;
}

// JSON writes characters outside the BMP as UTF-16 surrogate pairs ("\ud83d\ude00"), which
// yaml-cpp rejects; rewrite each escaped pair as one "\UXXXXXXXX" escape. Applied to JSON
// documents only (text starting with '{' or '['), where a backslash can only be inside a
// double-quoted string.
bool LooksLikeJson(std::string_view text) {
  size_t i = 0;
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF &&
      static_cast<unsigned char>(text[1]) == 0xBB && static_cast<unsigned char>(text[2]) == 0xBF) {
    i = 3;
  }
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' ||
                             text[i] == '\n')) {
    ++i;
  }
  return i < text.size() && (text[i] == '{' || text[i] == '[');
}

bool ReadHex4(std::string_view s, size_t at, uint32_t* v) {
  if (at + 4 > s.size()) return false;
  uint32_t x = 0;
  for (size_t k = 0; k < 4; ++k) {
    char c = s[at + k];
    x <<= 4;
    if (IsDigit(c)) {
      x |= c - '0';
    } else if (c >= 'a' && c <= 'f') {
      x |= c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      x |= c - 'A' + 10;
    } else {
      return false;
    }
  }
  *v = x;
  return true;
}

std::string JoinSurrogatePairs(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c != '\\') {
      out += c;
      ++i;
      continue;
    }
    // An escape: "\uHHHH\uLLLL" with a high then a low surrogate becomes "\UXXXXXXXX".
    uint32_t hi, lo;
    if (i + 12 <= text.size() && text[i + 1] == 'u' && ReadHex4(text, i + 2, &hi) &&
        hi >= 0xD800 && hi <= 0xDBFF && text[i + 6] == '\\' && text[i + 7] == 'u' &&
        ReadHex4(text, i + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
      uint32_t cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\U%08X", static_cast<unsigned>(cp));
      out += buf;
      i += 12;
      continue;
    }
    // Any other escape: copy it with the escaped character so "\\u..." stays literal.
    out += c;
    if (i + 1 < text.size()) out += text[i + 1];
    i += 2;
  }
  return out;
}

// "file:line:column: message"; for one-line text (an override value) "file: column N: ...".
std::string YamlErrorText(const std::string& file, const YAML::Exception& e, bool one_line) {
  std::string out = file;
  if (!e.mark.is_null()) {
    if (one_line) {
      out += ": column " + std::to_string(e.mark.column + 1);
    } else {
      out += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
  }
  out += ": ";
  out += e.msg.empty() ? std::string("YAML error") : e.msg;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conversion: yaml-cpp parser events -> Json tree with origins. Building from events (not from
// YAML::Node) lets us stop at the first error, bound nesting before yaml-cpp recurses deeper,
// see duplicate keys in order, and expand aliases under a node budget.

// Thrown from event callbacks to stop the parser; caught in ParseDocument.
struct BuildAbort {
  Status status;
  bool fatal = false;  // stop parsing (nesting or size limits) instead of letting it finish
};

// yaml-cpp 0.7 accepts a quoted scalar that is still open at the end of the input; `pos` is
// where the scalar starts in `input`.
bool QuoteClosed(const std::string& input, int pos) {
  if (pos < 0 || static_cast<size_t>(pos) >= input.size()) return true;
  const char q = input[pos];
  const size_t n = input.size();
  if (q == '"') {
    for (size_t i = pos + 1; i < n; ++i) {
      if (input[i] == '\\') {
        ++i;
      } else if (input[i] == '"') {
        return true;
      }
    }
    return false;
  }
  if (q == '\'') {
    for (size_t i = pos + 1; i < n; ++i) {
      if (input[i] != '\'') continue;
      if (i + 1 < n && input[i + 1] == '\'') {
        ++i;
        continue;
      }
      return true;
    }
    return false;
  }
  return true;
}

// The mark of the first token of a second document; thrown to stop at once.
struct SecondDocument {
  YAML::Mark mark;
};

class SecondDocumentProbe : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { throw SecondDocument{mark}; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Path segment under which a `<<` value is built before it is merged; never a real key
// (keys are valid UTF-8).
const std::string kMergeSegment = "\xff<<";

}  // namespace

class ConfigBuilder : public YAML::EventHandler {
 public:
  using Origin = Config::Origin;
  using Origins = std::map<std::string, Origin>;  // JSON pointer -> origin

  // `where` starts error messages; `file` is recorded in origins. `fixed_line` >= 0: every
  // origin gets that line (overrides); otherwise lines from marks. `base`: the path of the
  // document's root (for messages and the depth limit).
  ConfigBuilder(std::string where, std::shared_ptr<const std::string> file, size_t node_budget,
                int fixed_line, std::vector<std::string> base)
      : where_(std::move(where)),
        file_(std::move(file)),
        node_budget_(node_budget),
        fixed_line_(fixed_line),
        base_(std::move(base)) {}

  bool has_root() const { return has_root_; }
  Json& root() { return root_; }
  int root_line() const { return root_line_; }
  Origins& origins() { return origins_; }

  // --- events ---
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void DoNull(const YAML::Mark& mark, YAML::anchor_t anchor) {
    int line = LineOf(mark);
    if (ExpectingKey()) {
      Fail(Where(line) + ": " + MappingName() + " has a null key" + kKeyHint);
    }
    BeginNode(line);
    EndNode(Json(nullptr), anchor);
  }

  void DoScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) {
    int line = LineOf(mark);
    if (tag == "!" && input_ != nullptr && !QuoteClosed(*input_, mark.pos)) {
      Fail(Where(line) + ": quoted string is not closed before the end of the text");
    }
    if (ExpectingKey()) {
      SetKey(KeyString(tag, value, line), line, tag == "?" && value == "<<");
      if (anchor != YAML::NullAnchor) {
        anchors_[anchor] = Anchored{Json(value), Origins{{"", Origin{file_, Line(line)}}}, 1};
      }
      return;
    }
    BeginNode(line);
    EndNode(ScalarValue(tag, value, line), anchor);
  }

  void DoAlias(const YAML::Mark& mark, YAML::anchor_t anchor) {
    int line = LineOf(mark);
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      Fail(Where(line) + ": alias refers to a node that contains it (a cycle)");
    }
    if (ExpectingKey()) {
      if (!it->second.value.is_string()) {
        Fail(Where(line) + ": " + MappingName() + " has a key that is " +
             KindName(it->second.value) + " (through an alias; keys must be strings)");
      }
      SetKey(it->second.value.get<std::string>(), line, false);
      return;
    }
    Count(it->second.nodes, line);
    BeginNode(line);
    // The copy keeps the origins of where the anchored node's contents were written.
    for (const auto& [rel, origin] : it->second.origins) {
      if (!rel.empty()) origins_[ptr_ + rel] = origin;
    }
    EndNode(Json(it->second.value));
  }

  // Each event runs under Guard: the first error is kept and later events are ignored, so
  // that a syntax error yaml-cpp finds further on (and reports by throwing) takes precedence.
  void OnNull(const YAML::Mark& m, YAML::anchor_t a) override {
    Guard([&] { DoNull(m, a); });
  }
  void OnScalar(const YAML::Mark& m, const std::string& t, YAML::anchor_t a,
                const std::string& v) override {
    Guard([&] { DoScalar(m, t, a, v); });
  }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t a) override {
    Guard([&] { DoAlias(m, a); });
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string& t, YAML::anchor_t a,
                       YAML::EmitterStyle::value) override {
    EnterCollection(m);
    Guard([&] { StartCollection(m, t, a, /*is_map=*/false); });
  }
  void OnSequenceEnd() override {
    --event_depth_;
    Guard([&] { EndCollection(); });
  }
  void OnMapStart(const YAML::Mark& m, const std::string& t, YAML::anchor_t a,
                  YAML::EmitterStyle::value) override {
    EnterCollection(m);
    Guard([&] { StartCollection(m, t, a, /*is_map=*/true); });
  }
  void OnMapEnd() override {
    --event_depth_;
    Guard([&] { EndCollection(); });
  }

  // The first error met while building (OK if none).
  const Status& failed() const { return failed_; }
  // The text yaml-cpp parses (for checks on raw positions); must outlive the builder.
  void set_input(const std::string* input) { input_ = input; }

 private:
  static constexpr const char* kKeyHint =
      " (keys must be strings; quote keys that look like numbers, booleans or null)";

  struct Anchored {
    Json value;
    Origins origins;  // relative to the anchored node
    size_t nodes = 1;
  };

  struct Frame {
    bool is_map = false;
    Json value;
    YAML::anchor_t anchor = YAML::NullAnchor;
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

  [[noreturn]] void Fail(std::string message, StatusCode code = StatusCode::kInvalidArgument,
                         bool fatal = false) {
    throw BuildAbort{Status(code, std::move(message)), fatal};
  }

  template <typename F>
  void Guard(F&& body) {
    if (!failed_.ok()) return;
    try {
      body();
    } catch (const BuildAbort& abort) {
      if (abort.fatal) throw;
      failed_ = abort.status;
    }
  }

  // Nesting is bounded while yaml-cpp parses (it recurses per level), even after an error.
  void EnterCollection(const YAML::Mark& mark) {
    ++event_depth_;
    if (base_.size() + event_depth_ > static_cast<size_t>(Config::kMaxDepth)) {
      Status deep = Status::InvalidArgument(Where(LineOf(mark)) + ": nesting deeper than " +
                                            std::to_string(Config::kMaxDepth) + " levels");
      throw BuildAbort{failed_.ok() ? deep : failed_, true};
    }
  }

  int LineOf(const YAML::Mark& m) const {
    if (m.line >= 0) return m.line + 1;
    return frames_.empty() ? 0 : frames_.back().line;
  }
  int Line(int line) const { return fixed_line_ >= 0 ? fixed_line_ : line; }

  std::string Where(int line) const {
    if (fixed_line_ >= 0 || line <= 0) return where_;
    return where_ + ":" + std::to_string(line);
  }

  std::string Dotted() const {
    std::string out = JoinDotted(base_, base_.size());
    for (const auto& s : segs_) {
      if (!out.empty()) out += '.';
      out += s == kMergeSegment ? std::string("<<") : s;
    }
    return out;
  }

  std::string MappingName() const {
    std::string path = Dotted();
    return path.empty() ? std::string("the top-level mapping") : "mapping '" + path + "'";
  }

  [[noreturn]] void ValueError(int line, const std::string& what) {
    std::string path = Dotted();
    if (path.empty()) Fail(Where(line) + ": " + what);
    Fail(Where(line) + ": key '" + path + "': " + what);
  }

  bool ExpectingKey() const {
    return !frames_.empty() && frames_.back().is_map && frames_.back().expecting_key;
  }

  void Count(size_t n, int line) {
    nodes_ += n;
    if (nodes_ > node_budget_) {
      Fail(Where(line) + ": document expands to more than " + std::to_string(node_budget_) +
               " nodes (aliases repeated too often?)",
           StatusCode::kResourceExhausted, /*fatal=*/true);
    }
  }

  std::string KeyString(const std::string& tag, const std::string& text, int line) {
    if (!IsValidUtf8(text)) Fail(Where(line) + ": invalid UTF-8 in a key");
    if (tag == "!" || tag == kStrTag) return text;
    if (tag == "?" || tag.empty()) {
      Json v;
      std::string error;
      if (ResolvePlain(text, &v, &error) == Resolved::kString) return text;
      Fail(Where(line) + ": " + MappingName() + " has a non-string key " + text + kKeyHint);
    }
    Fail(Where(line) + ": " + MappingName() + " has a key with tag '" + tag +
         "' (keys must be strings)");
  }

  void SetKey(std::string key, int line, bool is_merge) {
    Frame& f = frames_.back();
    if (!is_merge) {
      auto [pos, inserted] = f.seen.emplace(key, line);
      if (!inserted) {
        segs_.push_back(key);
        std::string path = Dotted();
        segs_.pop_back();
        std::string first = fixed_line_ >= 0 ? std::string("given twice")
                                              : "first at line " + std::to_string(pos->second);
        Fail(Where(line) + ": duplicate key '" + path + "' (" + first + ")");
      }
    }
    f.key = std::move(key);
    f.key_line = line;
    f.key_is_merge = is_merge;
    f.expecting_key = false;
  }

  Json ScalarValue(const std::string& tag, const std::string& text, int line) {
    if (!IsValidUtf8(text)) ValueError(line, "invalid UTF-8 in value");
    if (tag == "!" || tag == kStrTag) return Json(text);
    Json v;
    std::string error;
    Resolved r = ResolvePlain(text, &v, &error);
    if (r == Resolved::kError) ValueError(line, error);
    if (tag == "?" || tag.empty()) return r == Resolved::kString ? Json(text) : v;
    auto bad = [&](const char* what) {
      ValueError(line, QuoteForMessage(text) + " is not a valid " + what);
    };
    if (tag == kIntTag) {
      if (r != Resolved::kValue || !v.is_number_integer()) bad("!!int");
      return v;
    }
    if (tag == kFloatTag) {
      if (r != Resolved::kValue || !v.is_number()) bad("!!float");
      return Json(v.get<double>());
    }
    if (tag == kBoolTag) {
      if (r != Resolved::kValue || !v.is_boolean()) bad("!!bool");
      return v;
    }
    if (tag == kNullTag) {
      if (r != Resolved::kValue || !v.is_null()) bad("!!null");
      return Json(nullptr);
    }
    ValueError(line, "unsupported tag '" + tag + "'");
  }

  // A value node starts: take its path segment from the parent and record its origin.
  void BeginNode(int line) {
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
      ptr_ += '/';
      ptr_ += EscapePointerToken(seg);
      segs_.push_back(std::move(seg));
    }
    origins_[ptr_] = Origin{file_, Line(origin_line)};
  }

  // The current node is complete: store anchors, leave its path, hand it to the parent.
  void EndNode(Json value, YAML::anchor_t anchor = YAML::NullAnchor, size_t nodes_in_node = 1) {
    if (anchor != YAML::NullAnchor) {
      anchors_[anchor] = Anchored{value, CopyOrigins(ptr_), nodes_in_node};
    }
    if (frames_.empty()) {
      has_root_ = true;
      root_line_ = origins_[""].line;
      root_ = std::move(value);
      return;
    }
    ptr_.resize(ptr_sizes_.back());
    ptr_sizes_.pop_back();
    segs_.pop_back();
    Frame& parent = frames_.back();
    if (!parent.is_map) {
      parent.value.push_back(std::move(value));
      ++parent.next_index;
      return;
    }
    if (parent.key_is_merge) {
      // Take the `<<` value (and its origins) out of the tree; merged when the mapping ends.
      std::string merge_ptr = ptr_ + "/" + EscapePointerToken(kMergeSegment);
      Origins rel = TakeOrigins(merge_ptr);
      if (!(value.is_object() ||
            (value.is_array() &&
             std::all_of(value.begin(), value.end(), [](const Json& e) { return e.is_object(); })))) {
        ValueError(parent.key_line, "'<<' (merge) takes a mapping or a list of mappings");
      }
      if (parent.merges.empty()) parent.merge_line = parent.key_line;
      parent.merges.emplace_back(std::move(value), std::move(rel));
    } else {
      parent.value[parent.key] = std::move(value);
    }
    parent.expecting_key = true;
  }

  // Origins at and below `ptr`, relative to it.
  Origins CopyOrigins(const std::string& ptr) const {
    Origins rel;
    auto own = origins_.find(ptr);
    if (own != origins_.end()) rel[""] = own->second;
    const std::string prefix = ptr + "/";
    for (auto it = origins_.lower_bound(prefix);
         it != origins_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      rel[it->first.substr(ptr.size())] = it->second;
    }
    return rel;
  }
  Origins TakeOrigins(const std::string& ptr) {
    Origins rel = CopyOrigins(ptr);
    origins_.erase(ptr);
    const std::string prefix = ptr + "/";
    auto first = origins_.lower_bound(prefix);
    auto last = first;
    while (last != origins_.end() && last->first.compare(0, prefix.size(), prefix) == 0) ++last;
    origins_.erase(first, last);
    return rel;
  }

  void StartCollection(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       bool is_map) {
    int line = LineOf(mark);
    if (ExpectingKey()) {
      Fail(Where(line) + ": " + MappingName() + " has a key that is " +
           (is_map ? "a mapping" : "a list") + " (keys must be strings)");
    }
    const std::string& std_tag = is_map ? kMapTag : kSeqTag;
    if (!(tag.empty() || tag == "?" || tag == "!" || tag == std_tag)) {
      BeginNode(line);
      ValueError(line, "unsupported tag '" + tag + "'");
    }
    BeginNode(line);
    Frame f;
    f.is_map = is_map;
    f.value = is_map ? Json::object() : Json::array();
    f.anchor = anchor;
    f.line = line;
    f.nodes_at_start = nodes_;
    frames_.push_back(std::move(f));
  }

  void EndCollection() {
    Frame f = std::move(frames_.back());
    frames_.pop_back();
    if (f.is_map) {
      // Merge `<<` sources: explicit keys win, then earlier sources over later ones.
      for (auto& merge : f.merges) {
        const Json& source = merge.first;
        const Origins& rel = merge.second;
        auto merge_one = [&](const Json& map, const std::string& rel_prefix) {
          for (auto it = map.begin(); it != map.end(); ++it) {
            if (f.value.contains(it.key())) continue;
            f.value[it.key()] = it.value();
            const std::string from = rel_prefix + "/" + EscapePointerToken(it.key());
            const std::string to = ptr_ + "/" + EscapePointerToken(it.key());
            auto own = rel.find(from);
            if (own != rel.end()) origins_[to] = own->second;
            const std::string below = from + "/";
            for (auto o = rel.lower_bound(below);
                 o != rel.end() && o->first.compare(0, below.size(), below) == 0; ++o) {
              origins_[to + o->first.substr(from.size())] = o->second;
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
    }
    EndNode(std::move(f.value), f.anchor, nodes_ - f.nodes_at_start + 1);
  }

  std::string where_;
  std::shared_ptr<const std::string> file_;
  size_t node_budget_;
  int fixed_line_;
  std::vector<std::string> base_;

  const std::string* input_ = nullptr;
  Status failed_;
  size_t event_depth_ = 0;
  size_t nodes_ = 0;
  std::vector<Frame> frames_;
  std::string ptr_;
  std::vector<size_t> ptr_sizes_;
  std::vector<std::string> segs_;
  Origins origins_;
  std::map<YAML::anchor_t, Anchored> anchors_;  // completed anchored nodes

  bool has_root_ = false;
  Json root_;
  int root_line_ = 0;
};

namespace {

struct ParsedDocument {
  bool has_root = false;  // false for an empty stream
  Json value;
  int line = 0;
  ConfigBuilder::Origins origins;  // relative to the root
};

// Parses one YAML document with a ConfigBuilder. `where` starts messages; `one_line` reports
// syntax errors by column only (override values).
Result<ParsedDocument> ParseDocument(std::string_view text, const std::string& where,
                                     bool one_line, std::shared_ptr<const std::string> file,
                                     int fixed_line, std::vector<std::string> base) {
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.remove_prefix(3);
  const std::string input = LooksLikeJson(text) ? JoinSurrogatePairs(text) : std::string(text);
  std::istringstream stream(input);
  // yaml-cpp reads UTF-16/32 too (by BOM or zero bytes); its positions then are not byte
  // offsets into `input`, so the raw-text check for open quotes only runs on UTF-8.
  const bool utf8 = !(input.size() >= 2 && (input[0] == '\0' || input[1] == '\0' ||
                                            input.compare(0, 2, "\xFE\xFF") == 0 ||
                                            input.compare(0, 2, "\xFF\xFE") == 0));
  // Budget for nodes: aliases may repeat subtrees; nothing else makes the tree much larger
  // than the text.
  ConfigBuilder builder(where, std::move(file), text.size() + 100000, fixed_line,
                        std::move(base));
  if (utf8) builder.set_input(&input);
  try {
    YAML::Parser parser(stream);
    if (parser.HandleNextDocument(builder)) {
      if (!builder.failed().ok()) return builder.failed();
      // yaml-cpp's LoadAll loops forever on a stray ',' after a document; one more call
      // tells a second document (or stray content) apart from the end of the stream.
      SecondDocumentProbe probe;
      try {
        if (parser.HandleNextDocument(probe)) {
          return Status::InvalidArgument(where + ": more than one YAML document");
        }
      } catch (const SecondDocument& second) {
        std::string at = where;
        if (!second.mark.is_null()) {
          at += one_line ? ": column " + std::to_string(second.mark.column + 1)
                         : ":" + std::to_string(second.mark.line + 1) + ":" +
                               std::to_string(second.mark.column + 1);
        }
        return Status::InvalidArgument(
            at + ": more than one YAML document, or stray content after the document");
      }
    }
  } catch (const BuildAbort& abort) {
    return abort.status;
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(YamlErrorText(where, e, one_line));
  }
  ParsedDocument doc;
  doc.has_root = builder.has_root();
  doc.value = std::move(builder.root());
  doc.line = builder.root_line();
  doc.origins = std::move(builder.origins());
  return doc;
}

// ---------------------------------------------------------------------------------------------
// YAML output.

bool PlainSafeChar(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_' || c == '.' ||
      c == '/') {
    return true;
  }
  return !first && (c == '-' || c == '+');
}

// True when `s` can be written without quotes and reads back as the same string.
bool CanBePlain(const std::string& s) {
  if (s.empty() || s.size() > 200 || s.compare(0, 2, "..") == 0) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!PlainSafeChar(s[i], i == 0)) return false;
  }
  Json v;
  std::string error;
  return ResolvePlain(s, &v, &error) == Resolved::kString;
}

void AppendQuoted(const std::string& s, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  char buf[16];
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      *out += "\\\"";
    } else if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (c == '\t') {
      *out += "\\t";
    } else if (c == '\r') {
      *out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\u%04X", c);
      *out += buf;
    } else if (c >= 0x80) {
      // Decode one UTF-8 sequence; escape the code points YAML treats as breaks, BOMs or
      // non-printable (C1 controls, U+2028/9, U+FEFF, U+FFFE/F). Invalid bytes pass through.
      int len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
      if (i + len > s.size()) len = 1;
      uint32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
      for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      bool escape = len > 1 && ((cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
                                cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF);
      if (escape) {
        std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(cp));
        *out += buf;
      } else {
        out->append(s, i, len);
      }
      i += len;
      continue;
    } else {
      out->push_back(static_cast<char>(c));
    }
    ++i;
  }
  out->push_back('"');
}

void AppendString(const std::string& s, std::string* out) {
  if (CanBePlain(s)) {
    *out += s;
  } else {
    AppendQuoted(s, out);
  }
}

bool IsInline(const Json& v) { return !v.is_structured() || v.empty(); }

void AppendInline(const Json& v, std::string* out) {
  switch (v.type()) {
    case Json::value_t::null: *out += "null"; break;
    case Json::value_t::boolean: *out += v.get<bool>() ? "true" : "false"; break;
    case Json::value_t::number_integer: *out += std::to_string(v.get<int64_t>()); break;
    case Json::value_t::number_unsigned: *out += std::to_string(v.get<uint64_t>()); break;
    case Json::value_t::number_float: *out += FloatText(v.get<double>()); break;
    case Json::value_t::string: AppendString(v.get_ref<const std::string&>(), out); break;
    case Json::value_t::array: *out += "[]"; break;
    case Json::value_t::object: *out += "{}"; break;
    default: *out += "null"; break;
  }
}

// Appends a non-empty mapping or list as block YAML, every line indented by `indent`.
void AppendBlock(const Json& v, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      *out += pad;
      std::string key;
      AppendString(it.key(), &key);
      if (key.size() > 1000) {
        // YAML limits implicit keys to 1024 characters; longer ones need the explicit form.
        *out += "? " + key + "\n" + pad;
      } else {
        *out += key;
      }
      *out += ':';
      if (IsInline(it.value())) {
        *out += ' ';
        AppendInline(it.value(), out);
        *out += '\n';
      } else {
        *out += '\n';
        AppendBlock(it.value(), indent + 2, out);
      }
    }
    return;
  }
  for (const auto& element : v) {
    if (IsInline(element)) {
      *out += pad;
      *out += "- ";
      AppendInline(element, out);
      *out += '\n';
    } else {
      // The element's block at indent+2, with "- " written over its first two spaces.
      size_t start = out->size();
      AppendBlock(element, indent + 2, out);
      (*out)[start + indent] = '-';
    }
  }
}

// Validation of trees handed to FromJson or built by overrides.
Status CheckTree(const Json& v, int depth, const std::string& where) {
  // `depth` counts the collections above `v`; v itself is one more level.
  if (v.is_structured() && depth >= Config::kMaxDepth) {
    return Status::InvalidArgument(where + ": nesting deeper than " +
                                   std::to_string(Config::kMaxDepth) + " levels");
  }
  switch (v.type()) {
    case Json::value_t::string:
      if (!IsValidUtf8(v.get_ref<const std::string&>())) {
        return Status::InvalidArgument(where + ": invalid UTF-8 in a value");
      }
      return Status::Ok();
    case Json::value_t::object:
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!IsValidUtf8(it.key())) {
          return Status::InvalidArgument(where + ": invalid UTF-8 in a key");
        }
        GRPO_RETURN_IF_ERROR(CheckTree(it.value(), depth + 1, where));
      }
      return Status::Ok();
    case Json::value_t::array:
      for (const auto& e : v) GRPO_RETURN_IF_ERROR(CheckTree(e, depth + 1, where));
      return Status::Ok();
    case Json::value_t::binary:
    case Json::value_t::discarded:
      return Status::InvalidArgument(where + ": binary or discarded values are not supported");
    default:
      return Status::Ok();
  }
}

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

constexpr size_t kMaxSuggestDistance = 2;

bool Suggestable(std::string_view typo, std::string_view candidate, size_t* best) {
  if (typo.size() > 64 || candidate.size() > 64) return false;  // keeps the DP small
  size_t dist = EditDistance(typo, candidate);
  if (dist > kMaxSuggestDistance || dist >= candidate.size() || dist >= *best) return false;
  *best = dist;
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ConfigOrigin and Config.

std::string ConfigOrigin::ToString() const {
  if (line <= 0) return file;
  return file + ":" + std::to_string(line);
}

Config::Config() {
  origins_[""] = Origin{std::make_shared<const std::string>(name_), 0};
}

Result<Config> Config::LoadFile(const std::string& path) {
  constexpr off_t kMaxFileBytes = off_t{1} << 30;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::FromErrno(path, err);
  }
  std::string text;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(path, err);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + ": is a directory, not a config file");
  }
  if (st.st_size > kMaxFileBytes) {
    ::close(fd);
    return Status::ResourceExhausted(path + ": config file larger than 1 GiB");
  }
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Status::FromErrno(path, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (static_cast<off_t>(text.size()) > kMaxFileBytes) {
      ::close(fd);
      return Status::ResourceExhausted(path + ": config file larger than 1 GiB");
    }
  }
  ::close(fd);
  return Parse(text, path);
}

Result<Config> Config::Parse(std::string_view text, std::string display_name) {
  try {
    auto file = std::make_shared<const std::string>(display_name);
    GRPO_ASSIGN_OR_RETURN(ParsedDocument doc,
                          ParseDocument(text, display_name, /*one_line=*/false, file,
                                        /*fixed_line=*/-1, {}));
    Config config;
    config.name_ = display_name;
    config.origins_.clear();
    if (doc.has_root && !doc.value.is_null()) {
      if (!doc.value.is_object()) {
        return Status::InvalidArgument(display_name + ":" + std::to_string(std::max(doc.line, 1)) +
                                       ": the top level must be a mapping, got " +
                                       KindName(doc.value));
      }
      config.tree_ = std::move(doc.value);
      config.origins_ = std::move(doc.origins);
    }
    config.origins_[""] = Origin{file, 0};  // the whole file: no single line
    return config;
  } catch (const std::exception& e) {
    return Status::Internal(display_name + ": unexpected error while parsing: " + e.what());
  } catch (...) {
    return Status::Internal(display_name + ": unexpected error while parsing");
  }
}

Result<Config> Config::FromJson(nlohmann::json tree, std::string display_name) {
  if (!tree.is_object()) {
    return Status::InvalidArgument(display_name + ": the top level must be a mapping, got " +
                                   KindName(tree));
  }
  GRPO_RETURN_IF_ERROR(CheckTree(tree, 0, display_name));
  Config config;
  config.name_ = display_name;
  config.tree_ = std::move(tree);
  config.origins_.clear();
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
    auto it = origins_.find(PointerOf(segments, n));
    if (it != origins_.end()) {
      return ConfigOrigin{it->second.file ? *it->second.file : name_, it->second.line};
    }
  }
  return ConfigOrigin{name_, 0};
}

ConfigOrigin Config::OriginOf(std::string_view path) const {
  std::vector<std::string> segs;
  if (!path.empty()) {
    auto split = SplitPath(path);
    if (split.ok()) segs = std::move(split).value();
  }
  return OriginOfSegments(segs);
}

Status Config::Error(std::string_view path, std::string_view message) const {
  return Status::InvalidArgument(OriginOf(path).ToString() + ": key '" + FullPath(path) +
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
    if (node->is_object()) {
      auto it = node->find(seg);
      if (it == node->end()) return nullptr;
      node = &*it;
    } else if (node->is_array()) {
      size_t index;
      if (!ParseIndex(seg, &index)) {
        *why_missing = "'" + FullPath(JoinDotted(segments, i)) + "' is a list and '" + seg +
                       "' is not an index";
        return nullptr;
      }
      if (index >= node->size()) return nullptr;
      node = &(*node)[index];
    } else {
      std::string parent = FullPath(JoinDotted(segments, i));
      *why_missing = (parent.empty() ? std::string("the top level") : "'" + parent + "'") +
                     " is " + KindName(*node) + ", not a mapping";
      return nullptr;
    }
  }
  return node;
}

Result<const Json*> Config::Lookup(std::string_view path, bool null_is_absent) const {
  auto split = SplitPath(path);
  if (!split.ok()) return split.status();
  const std::vector<std::string>& segs = *split;
  std::string why;
  const Json* node = Find(segs, &why);
  if (node == nullptr) {
    if (!why.empty()) {
      return Status::InvalidArgument(OriginOfSegments(segs).ToString() + ": key '" +
                                     FullPath(path) + "': " + why);
    }
    if (null_is_absent) return static_cast<const Json*>(nullptr);
    return Status::NotFound(OriginOfSegments(segs).ToString() + ": key '" + FullPath(path) +
                            "' is missing");
  }
  if (null_is_absent && node->is_null()) return static_cast<const Json*>(nullptr);
  return node;
}

bool Config::Has(std::string_view path) const {
  auto split = SplitPath(path);
  if (!split.ok()) return false;
  std::string why;
  return Find(*split, &why) != nullptr;
}

namespace {

// The typed readers shared by Get* and Get*Or; `err` builds "<origin>: key '<path>': <msg>".
template <typename MakeError>
Result<int64_t> ReadInt(const Json& v, const MakeError& err) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return err(StatusCode::kOutOfRange,
                 "integer " + std::to_string(u) + " is out of range for int64");
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::trunc(d)) {
      // [-2^63, 2^63) holds exactly the doubles that convert to int64.
      if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        return static_cast<int64_t>(d);
      }
      return err(StatusCode::kOutOfRange,
                 "integer " + FloatText(d) + " is out of range for int64");
    }
    return err(StatusCode::kInvalidArgument,
               "expected an integer, got " + FloatText(d) + " (not a whole number)");
  }
  return err(StatusCode::kInvalidArgument, "expected an integer, got " + Describe(v));
}

template <typename MakeError>
Result<double> ReadDouble(const Json& v, const MakeError& err) {
  if (v.is_number_unsigned()) return static_cast<double>(v.get<uint64_t>());
  if (v.is_number_integer()) return static_cast<double>(v.get<int64_t>());
  if (v.is_number_float()) return v.get<double>();
  return err(StatusCode::kInvalidArgument, "expected a number, got " + Describe(v));
}

template <typename MakeError>
Result<bool> ReadBool(const Json& v, const MakeError& err) {
  if (v.is_boolean()) return v.get<bool>();
  std::string hint;
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s == "yes" || s == "no" || s == "on" || s == "off" || s == "y" || s == "n" ||
        s == "Yes" || s == "No" || s == "On" || s == "Off") {
      hint = " (write true or false)";
    }
  }
  return err(StatusCode::kInvalidArgument, "expected a boolean, got " + Describe(v) + hint);
}

template <typename MakeError>
Result<std::string> ReadString(const Json& v, const MakeError& err) {
  if (v.is_string()) return v.get<std::string>();
  return err(StatusCode::kInvalidArgument,
             "expected a string, got " + Describe(v) +
                 (v.is_primitive() && !v.is_null() ? " (quote it to make it a string)" : ""));
}

}  // namespace

#define GRPO_CONFIG_ERR_(path)                                                          \
  [this, &path](StatusCode code, const std::string& msg) {                              \
    return Status(code, OriginOf(path).ToString() + ": key '" + FullPath(path) + "': " + \
                            msg);                                                       \
  }

Result<int64_t> Config::GetInt(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  return ReadInt(*v, GRPO_CONFIG_ERR_(path));
}

Result<double> Config::GetDouble(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  return ReadDouble(*v, GRPO_CONFIG_ERR_(path));
}

Result<bool> Config::GetBool(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  return ReadBool(*v, GRPO_CONFIG_ERR_(path));
}

Result<std::string> Config::GetString(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  return ReadString(*v, GRPO_CONFIG_ERR_(path));
}

Result<std::vector<std::string>> Config::GetStringList(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  if (!v->is_array()) {
    return GRPO_CONFIG_ERR_(path)(StatusCode::kInvalidArgument,
                                  "expected a list of strings, got " + Describe(*v));
  }
  std::vector<std::string> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& e = (*v)[i];
    if (!e.is_string()) {
      std::string epath = std::string(path) + "." + std::to_string(i);
      return Status::InvalidArgument(OriginOf(epath).ToString() + ": key '" + FullPath(epath) +
                                     "': expected a string, got " + Describe(e));
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

Result<int64_t> Config::GetIntOr(std::string_view path, int64_t default_value) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, true));
  if (v == nullptr) return default_value;
  return ReadInt(*v, GRPO_CONFIG_ERR_(path));
}

Result<double> Config::GetDoubleOr(std::string_view path, double default_value) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, true));
  if (v == nullptr) return default_value;
  return ReadDouble(*v, GRPO_CONFIG_ERR_(path));
}

Result<bool> Config::GetBoolOr(std::string_view path, bool default_value) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, true));
  if (v == nullptr) return default_value;
  return ReadBool(*v, GRPO_CONFIG_ERR_(path));
}

Result<std::string> Config::GetStringOr(std::string_view path, std::string default_value) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, true));
  if (v == nullptr) return default_value;
  return ReadString(*v, GRPO_CONFIG_ERR_(path));
}

Result<std::vector<std::string>> Config::GetStringListOr(
    std::string_view path, std::vector<std::string> default_value) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, true));
  if (v == nullptr) return default_value;
  return GetStringList(path);
}

#undef GRPO_CONFIG_ERR_

Result<Config> Config::Sub(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  if (!v->is_object()) {
    return Status::InvalidArgument(OriginOf(path).ToString() + ": key '" + FullPath(path) +
                                   "': expected a mapping, got " + Describe(*v));
  }
  std::vector<std::string> segs = SplitPath(path).value();
  const std::string ptr = PointerOf(segs, segs.size());
  Config sub;
  sub.tree_ = *v;
  sub.origins_.clear();
  const std::string child_prefix = ptr + "/";
  for (auto it = origins_.lower_bound(child_prefix);
       it != origins_.end() && it->first.compare(0, child_prefix.size(), child_prefix) == 0;
       ++it) {
    sub.origins_[it->first.substr(ptr.size())] = it->second;
  }
  auto own = origins_.find(ptr);
  ConfigOrigin root = OriginOfSegments(segs);
  sub.origins_[""] = own != origins_.end()
                         ? own->second
                         : Origin{std::make_shared<const std::string>(root.file), root.line};
  sub.name_ = root.file;
  sub.prefix_ = FullPath(path);
  return sub;
}

Result<std::vector<Config>> Config::SubList(std::string_view path) const {
  GRPO_ASSIGN_OR_RETURN(const Json* v, Lookup(path, false));
  if (!v->is_array()) {
    return Status::InvalidArgument(OriginOf(path).ToString() + ": key '" + FullPath(path) +
                                   "': expected a list of mappings, got " + Describe(*v));
  }
  std::vector<Config> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    GRPO_ASSIGN_OR_RETURN(Config element, Sub(std::string(path) + "." + std::to_string(i)));
    out.push_back(std::move(element));
  }
  return out;
}

Status Config::ApplyOverrides(const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) GRPO_RETURN_IF_ERROR(ApplyOverride(a));
  return Status::Ok();
}

Status Config::ApplyOverride(std::string_view assignment) {
  try {
    const std::string shown = "--set '" + std::string(assignment) + "'";
    size_t eq = assignment.find('=');
    if (eq == std::string_view::npos) {
      return Status::InvalidArgument(shown + ": expected key=value");
    }
    std::string_view key = Trim(assignment.substr(0, eq));
    std::string_view value_text = Trim(assignment.substr(eq + 1));
    if (key.empty()) return Status::InvalidArgument(shown + ": empty key before '='");
    auto split = SplitPath(key);
    if (!split.ok()) return Status::InvalidArgument(shown + ": " + split.status().message());
    const std::vector<std::string>& segs = *split;
    if (!IsValidUtf8(key)) return Status::InvalidArgument(shown + ": invalid UTF-8 in the key");

    // The value: a YAML flow value, or a plain scalar taken as written.
    auto file = std::make_shared<const std::string>(kOverrideOrigin);
    Json value;
    std::map<std::string, Origin> value_origins;
    const char first = value_text.empty() ? '\0' : value_text[0];
    if (first == '[' || first == '{' || first == '"' || first == '\'' || first == '!') {
      GRPO_ASSIGN_OR_RETURN(ParsedDocument doc,
                            ParseDocument(value_text, shown, /*one_line=*/true, file,
                                          /*fixed_line=*/0, segs));
      value = doc.has_root ? std::move(doc.value) : Json(nullptr);
      value_origins = std::move(doc.origins);
      value_origins[""] = Origin{file, 0};
    } else {
      if (!IsValidUtf8(value_text)) {
        return Status::InvalidArgument(shown + ": invalid UTF-8 in the value");
      }
      std::string error;
      Resolved r = ResolvePlain(value_text, &value, &error);
      if (r == Resolved::kError) return Status::InvalidArgument(shown + ": " + error);
      if (r == Resolved::kString) value = std::string(value_text);
      value_origins[""] = Origin{file, 0};
    }
    if (static_cast<int>(segs.size()) > kMaxDepth) {
      return Status::InvalidArgument(shown + ": key nested deeper than " +
                                     std::to_string(kMaxDepth) + " levels");
    }

    // Walk to the parent, checking before changing anything.
    Json* node = &tree_;
    size_t walked = 0;  // segments that exist
    for (; walked + 1 < segs.size(); ++walked) {
      const std::string& seg = segs[walked];
      if (node->is_object()) {
        auto it = node->find(seg);
        if (it == node->end() || it->is_null()) break;  // created below
        node = &*it;
      } else if (node->is_array()) {
        size_t index;
        std::string list = FullPath(JoinDotted(segs, walked));
        if (!ParseIndex(seg, &index)) {
          return Status::InvalidArgument(shown + ": '" + list + "' is a list and '" + seg +
                                         "' is not an index");
        }
        if (index >= node->size()) {
          return Status::InvalidArgument(shown + ": index " + seg + " is out of range, '" +
                                         list + "' has " + std::to_string(node->size()) +
                                         " elements");
        }
        node = &(*node)[index];
      } else {
        std::string at = FullPath(JoinDotted(segs, walked));
        return Status::InvalidArgument(shown + ": cannot set '" + FullPath(key) + "': '" + at +
                                       "' is " + KindName(*node) + " (" +
                                       OriginOfSegments({segs.begin(), segs.begin() + walked})
                                           .ToString() +
                                       "), not a mapping");
      }
    }
    if (walked + 1 == segs.size()) {
      // The parent exists; it must take the last segment.
      const std::string& seg = segs.back();
      if (node->is_array()) {
        size_t index;
        std::string list = FullPath(JoinDotted(segs, walked));
        if (!ParseIndex(seg, &index)) {
          return Status::InvalidArgument(shown + ": '" + list + "' is a list and '" + seg +
                                         "' is not an index");
        }
        if (index >= node->size()) {
          return Status::InvalidArgument(shown + ": index " + seg + " is out of range, '" +
                                         list + "' has " + std::to_string(node->size()) +
                                         " elements");
        }
      } else if (!node->is_object()) {
        std::string at = FullPath(JoinDotted(segs, walked));
        return Status::InvalidArgument(
            shown + ": cannot set '" + FullPath(key) + "': '" + at + "' is " +
            KindName(*node) + " (" +
            OriginOfSegments({segs.begin(), segs.begin() + walked}).ToString() +
            "), not a mapping");
      }
    }

    // Create the missing mappings (a null on the way becomes a mapping).
    for (; walked + 1 < segs.size(); ++walked) {
      Json& child = (*node)[segs[walked]];
      child = Json::object();
      origins_[PointerOf(segs, walked + 1)] = Origin{file, 0};
      node = &child;
    }

    // Replace the target and its origins.
    const std::string ptr = PointerOf(segs, segs.size());
    const std::string child_prefix = ptr + "/";
    origins_.erase(origins_.lower_bound(child_prefix),
                   std::find_if(origins_.lower_bound(child_prefix), origins_.end(),
                                [&](const auto& kv) {
                                  return kv.first.compare(0, child_prefix.size(),
                                                          child_prefix) != 0;
                                }));
    for (auto& [p, o] : value_origins) origins_[ptr + p] = o;
    if (node->is_array()) {
      size_t index;
      ParseIndex(segs.back(), &index);
      (*node)[index] = std::move(value);
    } else {
      (*node)[segs.back()] = std::move(value);
    }
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal("--set '" + std::string(assignment) +
                            "': unexpected error: " + e.what());
  }
}

Status Config::CheckKnownKeys(const std::vector<std::string>& allowed_paths) const {
  std::vector<std::vector<std::string>> patterns;
  for (const auto& p : allowed_paths) {
    auto split = SplitPath(p);
    if (!split.ok()) {
      return Status::InvalidArgument("CheckKnownKeys: " + split.status().message());
    }
    patterns.push_back(std::move(split).value());
  }
  auto matches_prefix = [](const std::vector<std::string>& pattern,
                           const std::vector<std::string>& path, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (pattern[i] != "*" && pattern[i] != path[i]) return false;
    }
    return true;
  };

  struct Unknown {
    ConfigOrigin origin;
    std::string path;
    std::string suggestion;
  };
  std::vector<Unknown> unknown;
  std::vector<std::string> path;

  // Suggests an allowed key for `path` (whose last segment is unknown).
  auto suggest = [&]() -> std::string {
    const size_t depth = path.size() - 1;
    const std::string& typo = path.back();
    size_t best = kMaxSuggestDistance + 1;
    std::string out;
    // 1. A sibling allowed at the same place.
    for (const auto& pat : patterns) {
      if (pat.size() <= depth || pat[depth] == "*" || !matches_prefix(pat, path, depth)) continue;
      if (Suggestable(typo, pat[depth], &best)) {
        std::vector<std::string> s(path.begin(), path.begin() + depth);
        s.push_back(pat[depth]);
        out = JoinDotted(s, s.size());
      }
    }
    if (!out.empty()) return out;
    // 2. A whole allowed path close to the whole path ("trian.lr" vs "train.lr").
    const std::string whole = JoinDotted(path, path.size());
    for (const auto& p : allowed_paths) {
      if (p.find('*') == std::string::npos && Suggestable(whole, p, &best)) out = p;
    }
    if (!out.empty()) return out;
    // 3. The same key allowed elsewhere (a key put in the wrong section).
    for (const auto& p : allowed_paths) {
      if (p.find('*') != std::string::npos) continue;
      size_t dot = p.rfind('.');
      if (dot != std::string::npos && p.compare(dot + 1, std::string::npos, typo) == 0) return p;
    }
    return out;
  };

  // Visits `node` at `path`, which is covered by an allowed prefix (an ancestor).
  std::function<void(const Json&)> visit = [&](const Json& node) {
    if (!node.is_structured()) return;
    size_t idx = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++idx) {
      path.push_back(node.is_object() ? it.key() : std::to_string(idx));
      bool covered = false, inner = false;
      for (const auto& pat : patterns) {
        if (pat.size() <= path.size()) {
          if (matches_prefix(pat, path, pat.size())) covered = true;
        } else if (matches_prefix(pat, path, path.size())) {
          inner = true;
        }
      }
      if (covered) {
        // Everything beneath an allowed path is allowed.
      } else if (inner) {
        visit(it.value());
      } else if (node.is_object()) {
        unknown.push_back({OriginOfSegments(path), FullPath(JoinDotted(path, path.size())),
                           suggest()});
      }
      path.pop_back();
    }
  };
  if (!tree_.is_object()) return Status::Ok();
  visit(tree_);
  if (unknown.empty()) return Status::Ok();

  auto first = std::min_element(unknown.begin(), unknown.end(), [](const Unknown& a,
                                                                   const Unknown& b) {
    bool a_line = a.origin.line > 0, b_line = b.origin.line > 0;
    if (a_line != b_line) return a_line;  // keys from the file before overrides
    if (a.origin.line != b.origin.line) return a.origin.line < b.origin.line;
    return a.path < b.path;
  });
  std::string msg = first->origin.ToString() + ": unknown key '" + first->path + "'";
  if (!first->suggestion.empty()) msg += " (did you mean '" + FullPath(first->suggestion) + "'?)";
  if (unknown.size() > 1) {
    msg += " (and " + std::to_string(unknown.size() - 1) + " more unknown key" +
           (unknown.size() > 2 ? "s" : "") + ")";
  }
  return Status::InvalidArgument(msg);
}

std::string Config::Dump() const {
  if (IsInline(tree_)) {
    std::string out;
    AppendInline(tree_, &out);
    return out + "\n";
  }
  std::string out;
  AppendBlock(tree_, 0, &out);
  return out;
}

}  // namespace grpo
