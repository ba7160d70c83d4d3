// JSON in: nlohmann's SAX parser -> ConfigTreeBuilder. nlohmann reports no positions for
// values, so the bytes are handed to its lexer through an iterator that remembers how far it
// has read; an event's line is the line of the last byte read for it.
#include <algorithm>
#include <iterator>
#include <limits>

#include "core/config_internal.h"

namespace grpo {
namespace config_internal {
namespace {

class TrackingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackingIterator(const char* p, const char** furthest) : p_(p), furthest_(furthest) {}
  reference operator*() const {
    *furthest_ = p_;
    return *p_;
  }
  TrackingIterator& operator++() {
    ++p_;
    return *this;
  }
  bool operator==(const TrackingIterator& other) const { return p_ == other.p_; }
  bool operator!=(const TrackingIterator& other) const { return p_ != other.p_; }

 private:
  const char* p_;
  const char** furthest_;
};

class JsonEvents : public Json::json_sax_t {
 public:
  JsonEvents(std::string_view text, const DocumentSource& source)
      : text_(text), source_(source), builder_(source, NodeBudget(text)), furthest_(text.data()) {}

  TrackingIterator begin() { return TrackingIterator(text_.data(), &furthest_); }
  TrackingIterator end() { return TrackingIterator(text_.data() + text_.size(), &furthest_); }
  ConfigTreeBuilder& builder() { return builder_; }
  const absl::Status& fatal() const { return fatal_; }
  const std::string& syntax_error() const { return syntax_error_; }

  bool null() override { return Add(nullptr); }
  bool boolean(bool v) override { return Add(v); }
  bool number_integer(number_integer_t v) override { return Add(v); }
  bool number_unsigned(number_unsigned_t v) override {
    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Add(static_cast<int64_t>(v));
    }
    return Add(v);
  }
  bool number_float(number_float_t v, const string_t&) override { return Add(v); }
  bool string(string_t& v) override { return Add(std::move(v)); }
  bool binary(binary_t&) override { return false; }  // not in JSON text
  bool key(string_t& k) override {
    return Event([&] { builder_.Key(std::move(k), Line()); });
  }
  bool start_object(std::size_t) override {
    return Event([&] { builder_.StartCollection(/*is_map=*/true, Line()); });
  }
  bool start_array(std::size_t) override {
    return Event([&] { builder_.StartCollection(/*is_map=*/false, Line()); });
  }
  bool end_object() override {
    return Event([&] { builder_.EndCollection(); });
  }
  bool end_array() override {
    return Event([&] { builder_.EndCollection(); });
  }

  // "<where>:line:column: <nlohmann's message>" ("<where>: column N: ..." for one-line text).
  // `position` counts the bytes read, the one nlohmann stopped at included.
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    size_t at = std::min(position, text_.size());
    if (at > 0) --at;
    size_t line_start = at;
    while (line_start > 0 && text_[line_start - 1] != '\n') --line_start;
    const std::string column = std::to_string(at - line_start + 1);
    const std::string line =
        std::to_string(std::count(text_.begin(), text_.begin() + at, '\n') + 1);
    // what(): "[json.exception.parse_error.101] parse error at line 1, column 2: <message>"
    std::string message = e.what();
    size_t cut = message.find("] ");
    if (cut != std::string::npos) message.erase(0, cut + 2);
    if (message.rfind("parse error", 0) == 0 && (cut = message.find(": ")) != std::string::npos) {
      message.erase(0, cut + 2);
    }
    syntax_error_ = source_.where +
                    (source_.one_line ? ": column " + column : ":" + line + ":" + column) + ": " +
                    message;
    return false;
  }

 private:
  // Builder errors other than limits are kept while parsing goes on, so that text that is not
  // JSON after all is left to the YAML reader.
  template <typename F>
  bool Event(F&& event) {
    try {
      builder_.Guard(event);
      return true;
    } catch (const BuildAbort& abort) {
      fatal_ = abort.status;
      return false;
    }
  }
  bool Add(Json value) {
    return Event([&] { builder_.Value(std::move(value), Line()); });
  }

  // The line of the last byte read, or of the byte before it when that one is blank (the
  // lexer reads one byte past a number). Positions only grow: newlines are counted once.
  int Line() {
    size_t pos = static_cast<size_t>(furthest_ - text_.data());
    const bool blank = pos < text_.size() && (text_[pos] == ' ' || text_[pos] == '\t' ||
                                              text_[pos] == '\r' || text_[pos] == '\n');
    if (blank && pos > 0) --pos;
    if (pos > counted_) {
      line_ += static_cast<int>(std::count(text_.begin() + counted_, text_.begin() + pos, '\n'));
      counted_ = pos;
    }
    return line_;
  }

  std::string_view text_;
  const DocumentSource& source_;
  ConfigTreeBuilder builder_;
  const char* furthest_;
  size_t counted_ = 0;  // newlines before text_[counted_] are in line_
  int line_ = 1;
  absl::Status fatal_;
  std::string syntax_error_;
};

}  // namespace

std::optional<absl::StatusOr<ParsedDocument>> ParseJson(std::string_view text,
                                                        const DocumentSource& source,
                                                        std::string* syntax_error) {
  JsonEvents events(text, source);
  const bool ok = Json::sax_parse(events.begin(), events.end(), &events);
  if (!events.fatal().ok()) return absl::StatusOr<ParsedDocument>(events.fatal());
  if (!ok) {
    *syntax_error = events.syntax_error();
    return std::nullopt;
  }
  ConfigTreeBuilder& builder = events.builder();
  if (!builder.failed().ok()) return absl::StatusOr<ParsedDocument>(builder.failed());
  return absl::StatusOr<ParsedDocument>(builder.Finish());
}

}  // namespace config_internal
}  // namespace grpo
