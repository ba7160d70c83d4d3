// YAML in and out: yaml-cpp's parser events -> ConfigTreeBuilder, with the YAML 1.2 core schema
// for plain scalars and the standard tags; Config::Dump through yaml-cpp's emitter.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

#include <yaml-cpp/emitter.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

#include "absl/strings/str_format.h"
#include "core/config_internal.h"
#include "core/utf8.h"

namespace grpo {
namespace config_internal {
namespace {

const std::string kStrTag = "tag:yaml.org,2002:str";
const std::string kIntTag = "tag:yaml.org,2002:int";
const std::string kFloatTag = "tag:yaml.org,2002:float";
const std::string kBoolTag = "tag:yaml.org,2002:bool";
const std::string kNullTag = "tag:yaml.org,2002:null";
const std::string kMapTag = "tag:yaml.org,2002:map";
const std::string kSeqTag = "tag:yaml.org,2002:seq";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool AllOf(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
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

// An int64 when it fits, else a uint64.
Json Unsigned(uint64_t u) {
  if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(u);
  }
  return u;
}

}  // namespace

Resolved ResolvePlain(std::string_view s, Json* out, std::string* error) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    *out = nullptr;
    return Resolved::kValue;
  }
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    *out = s[0] == 't' || s[0] == 'T';
    return Resolved::kValue;
  }
  if (!(IsDigit(s[0]) || s[0] == '-' || s[0] == '+' || s[0] == '.')) return Resolved::kString;

  // Hex and octal (unsigned, no sign, per the core schema).
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    std::string_view digits = s.substr(2);
    const int base = s[1] == 'x' ? 16 : 8;
    uint64_t u = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), u, base);
    if (p != digits.data() + digits.size()) return Resolved::kString;
    if (ec != std::errc()) {
      *error = "integer " + std::string(s) + " does not fit in 64 bits";
      return Resolved::kError;
    }
    *out = Unsigned(u);
    return Resolved::kValue;
  }

  std::string_view body = s;
  const bool negative = body[0] == '-';
  if (body[0] == '-' || body[0] == '+') body.remove_prefix(1);

  // Decimal integer; one too large for 64 bits is kept as a float, like JSON parsers do.
  if (AllOf(body, IsDigit)) {
    uint64_t mag = 0;
    auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), mag);
    constexpr uint64_t kMaxPos = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (ec == std::errc() && (!negative || mag <= kMaxPos + 1)) {
      *out = !negative ? Unsigned(mag)
                       : Json(mag == kMaxPos + 1 ? std::numeric_limits<int64_t>::min()
                                                 : -static_cast<int64_t>(mag));
      return Resolved::kValue;
    }
  }

  // Special floats.
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    *out = (negative ? -1 : 1) * std::numeric_limits<double>::infinity();
    return Resolved::kValue;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return Resolved::kValue;
  }

  if (!LooksLikeFloat(s)) return Resolved::kString;
  const std::string_view num = s[0] == '+' ? s.substr(1) : s;  // from_chars takes no '+'
  double d = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), d);
  if (ec == std::errc::result_out_of_range) {
    // Overflow is an error; underflow rounds towards zero like strtod does.
    d = std::strtod(std::string(num).c_str(), nullptr);
    if (std::isinf(d)) {
      *error = "number " + std::string(s) + " is out of range for a double";
      return Resolved::kError;
    }
  } else if (ec != std::errc() || p != num.data() + num.size()) {
    return Resolved::kString;
  }
  *out = d;
  return Resolved::kValue;
}

namespace {

// yaml-cpp 0.7 accepts a quoted scalar that is still open at the end of the input; `pos` is
// where the scalar starts in `input`.
bool QuoteClosed(const std::string& input, int pos) {
  if (pos < 0 || static_cast<size_t>(pos) >= input.size()) return true;
  const char q = input[pos];
  for (size_t i = pos + 1; q == '"' || q == '\''; ++i) {
    if (i >= input.size()) return false;
    if (q == '"' && input[i] == '\\') {
      ++i;
    } else if (input[i] == q) {
      if (q == '"' || i + 1 >= input.size() || input[i + 1] != '\'') return true;
      ++i;  // '' inside single quotes
    }
  }
  return true;
}

// "<where>:line:column", or "<where>: column N" for one-line sources.
std::string Position(const DocumentSource& source, const YAML::Mark& mark) {
  if (mark.is_null()) return source.where;
  if (source.one_line) return source.where + ": column " + std::to_string(mark.column + 1);
  return source.where + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// yaml-cpp's events -> the builder: tags, scalar resolution, keys, and a bound on nesting that
// holds while yaml-cpp parses (it recurses per level), even after an error.
class YamlEvents : public YAML::EventHandler {
 public:
  YamlEvents(const DocumentSource& source, size_t node_budget, const std::string* input)
      : builder_(source, node_budget), input_(input) {}

  ConfigTreeBuilder& builder() { return builder_; }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    builder_.Guard([&] {
      const int line = LineOf(mark);
      if (builder_.ExpectingKey()) {
        builder_.Fail(builder_.Where(line) + ": " + builder_.MappingName() + " has a null key" +
                      ConfigTreeBuilder::kKeyHint);
      }
      builder_.Value(nullptr, line, anchor);
    });
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    builder_.Guard([&] { Scalar(mark, tag, anchor, value); });
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    builder_.Guard([&] { builder_.Alias(anchor, LineOf(mark)); });
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Start(mark, tag, anchor, /*is_map=*/false);
  }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Start(mark, tag, anchor, /*is_map=*/true);
  }
  void OnSequenceEnd() override { End(); }
  void OnMapEnd() override { End(); }

 private:
  int LineOf(const YAML::Mark& mark) const {
    if (mark.line >= 0) return mark.line + 1;
    return open_lines_.empty() ? 0 : open_lines_.back();
  }

  void Start(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, bool is_map) {
    const int line = LineOf(mark);
    try {
      builder_.CheckDepth(open_lines_.size() + 1, line);
    } catch (BuildAbort& abort) {
      if (!builder_.failed().ok()) abort.status = builder_.failed();  // the first error wins
      throw;
    }
    open_lines_.push_back(line);
    builder_.Guard([&] {
      if (!(tag.empty() || tag == "?" || tag == "!" || tag == (is_map ? kMapTag : kSeqTag)) &&
          !builder_.ExpectingKey()) {
        builder_.NodeError(line, "unsupported tag '" + tag + "'");
      }
      builder_.StartCollection(is_map, line, anchor);
    });
  }

  void End() {
    open_lines_.pop_back();
    builder_.Guard([&] { builder_.EndCollection(); });
  }

  void Scalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
              const std::string& text) {
    const int line = LineOf(mark);
    if (tag == "!" && input_ != nullptr && !QuoteClosed(*input_, mark.pos)) {
      builder_.Fail(builder_.Where(line) +
                    ": quoted string is not closed before the end of the text");
    }
    if (builder_.ExpectingKey()) {
      builder_.Key(KeyString(tag, text, line), line, tag == "?" && text == "<<", anchor);
    } else {
      builder_.Value(ScalarValue(tag, text, line), line, anchor);
    }
  }

  std::string KeyString(const std::string& tag, const std::string& text, int line) {
    if (!IsValidUtf8(text)) builder_.Fail(builder_.Where(line) + ": invalid UTF-8 in a key");
    if (tag == "!" || tag == kStrTag) return text;
    if (tag != "?" && !tag.empty()) {
      builder_.Fail(builder_.Where(line) + ": " + builder_.MappingName() + " has a key with tag '" +
                    tag + "' (keys must be strings)");
    }
    Json v;
    std::string error;
    if (ResolvePlain(text, &v, &error) != Resolved::kString) {
      builder_.Fail(builder_.Where(line) + ": " + builder_.MappingName() +
                    " has a non-string key " + text + ConfigTreeBuilder::kKeyHint);
    }
    return text;
  }

  Json ScalarValue(const std::string& tag, const std::string& text, int line) {
    if (!IsValidUtf8(text)) builder_.NodeError(line, "invalid UTF-8 in value");
    if (tag == "!" || tag == kStrTag) return text;
    Json v;
    std::string error;
    const Resolved r = ResolvePlain(text, &v, &error);
    if (r == Resolved::kError) builder_.NodeError(line, error);
    if (tag == "?" || tag.empty()) return r == Resolved::kString ? Json(text) : v;
    auto require = [&](bool ok, const char* what) {
      if (r != Resolved::kValue || !ok) {
        builder_.NodeError(line, QuoteForMessage(text) + " is not a valid " + what);
      }
    };
    if (tag == kIntTag) {
      require(v.is_number_integer(), "!!int");
      return v;
    }
    if (tag == kFloatTag) {
      require(v.is_number(), "!!float");
      return v.get<double>();
    }
    if (tag == kBoolTag) {
      require(v.is_boolean(), "!!bool");
      return v;
    }
    if (tag == kNullTag) {
      require(v.is_null(), "!!null");
      return nullptr;
    }
    builder_.NodeError(line, "unsupported tag '" + tag + "'");
  }

  ConfigTreeBuilder builder_;
  const std::string* input_;    // the text yaml-cpp parses, when positions are byte offsets
  std::vector<int> open_lines_;  // lines of the collections yaml-cpp has open
};

// Stops at the first token of a second document.
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

}  // namespace

absl::StatusOr<ParsedDocument> ParseYaml(std::string_view text, const DocumentSource& source) {
  const std::string input(text);
  std::istringstream stream(input);
  // yaml-cpp reads UTF-16/32 too (by BOM or zero bytes); its positions then are not byte
  // offsets into `input`, so the raw-text check for open quotes only runs on UTF-8.
  const bool utf8 = !(input.size() >= 2 && (input[0] == '\0' || input[1] == '\0' ||
                                            input.compare(0, 2, "\xFE\xFF") == 0 ||
                                            input.compare(0, 2, "\xFF\xFE") == 0));
  YamlEvents events(source, NodeBudget(text), utf8 ? &input : nullptr);
  try {
    YAML::Parser parser(stream);
    if (parser.HandleNextDocument(events)) {
      if (!events.builder().failed().ok()) return events.builder().failed();
      // yaml-cpp's LoadAll loops forever on a stray ',' after a document; one more call
      // tells a second document (or stray content) apart from the end of the stream.
      SecondDocumentProbe probe;
      try {
        if (parser.HandleNextDocument(probe)) {
          return absl::InvalidArgumentError(source.where + ": more than one YAML document");
        }
      } catch (const SecondDocument& second) {
        return absl::InvalidArgumentError(
            Position(source, second.mark) +
            ": more than one YAML document, or stray content after the document");
      }
    }
  } catch (const BuildAbort& abort) {
    return abort.status;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(Position(source, e.mark) + ": " +
                                      (e.msg.empty() ? std::string("YAML error") : e.msg));
  }
  return events.builder().Finish();
}

// ---------------------------------------------------------------------------------------------
// Dump.

namespace {

// True when `s` can be written without quotes and reads back as the same string. (yaml-cpp's
// own choice of plain style would write "123" or "true" bare.)
bool CanBePlain(const std::string& s) {
  if (s.empty() || s.size() > 200 || s.compare(0, 2, "..") == 0) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_' ||
                    c == '.' || c == '/' || (i > 0 && (c == '-' || c == '+'));
    if (!ok) return false;
  }
  Json v;
  std::string error;
  return ResolvePlain(s, &v, &error) == Resolved::kString;
}

// yaml-cpp's emitter writes Unicode noncharacters (U+FDD0..U+FDEF, U+xxFFFE, U+xxFFFF) as
// U+FFFD. Strings are handed to it with each of those, and kMarker itself, spelled as kMarker
// and six hex digits; Dump then turns each into a "\U00XXXXXX" escape. Such strings contain
// non-ASCII text, so they are double-quoted, where that escape is valid.
constexpr char32_t kMarker = 0xE000;  // private use
constexpr char kMarkerUtf8[] = "\xEE\x80\x80";

std::string Protect(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t n = std::max<size_t>(DecodeUtf8(s, i, &cp), 1);
    if (cp == kMarker || (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) {
      AppendUtf8(kMarker, &out);
      out += absl::StrFormat("%06X", static_cast<uint32_t>(cp));
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  return out;
}

std::string Unprotect(std::string text) {
  for (size_t at = text.find(kMarkerUtf8); at != std::string::npos;
       at = text.find(kMarkerUtf8, at)) {
    text.replace(at, 3, "\\U00");
  }
  return text;
}

void EmitString(const std::string& s, YAML::Emitter* out) {
  if (CanBePlain(s)) {
    *out << s;
  } else {
    *out << YAML::DoubleQuoted << Protect(s);
  }
}

void Emit(const Json& v, YAML::Emitter* out) {
  switch (v.type()) {
    case Json::value_t::boolean: *out << v.get<bool>(); break;
    case Json::value_t::number_integer: *out << v.get<int64_t>(); break;
    case Json::value_t::number_unsigned: *out << v.get<uint64_t>(); break;
    case Json::value_t::number_float: *out << FloatText(v.get<double>()); break;
    case Json::value_t::string: EmitString(v.get_ref<const std::string&>(), out); break;
    case Json::value_t::object:
      if (v.empty()) *out << YAML::Flow;
      *out << YAML::BeginMap;
      for (auto it = v.begin(); it != v.end(); ++it) {
        // yaml-cpp reads keys of more than 1024 characters only in the explicit "? " form.
        if (it.key().size() > 200) *out << YAML::LongKey;
        *out << YAML::Key;
        EmitString(it.key(), out);
        *out << YAML::Value;
        Emit(it.value(), out);
      }
      *out << YAML::EndMap;
      break;
    case Json::value_t::array:
      if (v.empty()) *out << YAML::Flow;
      *out << YAML::BeginSeq;
      for (const Json& e : v) Emit(e, out);
      *out << YAML::EndSeq;
      break;
    default: *out << YAML::Null; break;
  }
}

}  // namespace
}  // namespace config_internal

std::string Config::Dump() const {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  config_internal::Emit(tree_, &out);
  return config_internal::Unprotect(std::string(out.c_str(), out.size()) + "\n");
}

}  // namespace grpo
