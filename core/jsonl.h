// JSON Lines: the file format of every command that reads or writes records (one JSON object per
// line). Every JSONL file of the system is read and written through this header.
//  * JsonlReader reports a bad line with its number and goes on.
//  * JsonlWriter replaces its output atomically (core/file.h: "<path>.tmp", fsync, rename on
//    Close), so an interrupted run never leaves a half-written output under `path`.
//  * JsonlAppender appends to a log that outlives the process (metrics.jsonl), a line at a time.
// The path "-" means standard input / standard output.
#ifndef GRPO_CORE_JSONL_H_
#define GRPO_CORE_JSONL_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/file.h"
#include "core/status.h"

namespace grpo {

// The JSON object that is the whole of `line`. Errors are InvalidArgument without a location:
// "not valid JSON: <the parser's reason>" or "not a JSON object".
absl::StatusOr<nlohmann::json> ParseJsonlLine(std::string_view line);

struct JsonlRecord {
  int64_t line = 0;       // 1-based line number in the file
  nlohmann::json value;   // the object, when ok()
  absl::Status status;    // what was wrong with this line: "IN.jsonl:12: not a JSON object"
  bool ok() const { return status.ok(); }
};

class JsonlReader {
 public:
  // Lines longer than this are reported as errors (and skipped) instead of being parsed.
  static constexpr size_t kMaxLineBytes = 64 << 20;

  static absl::StatusOr<std::unique_ptr<JsonlReader>> Open(const std::string& path);
  // Reads `text` (which must outlive the reader) as if it were a file called `name`.
  static std::unique_ptr<JsonlReader> FromText(std::string name, std::string_view text);
  ~JsonlReader();

  // The next line that is not blank (only spaces, tabs and a trailing '\r'). Returns false at the
  // end. A line that is not a JSON object yields a record whose status names the file and line
  // (ParseJsonlLine's reason after "<path>:<line>: ").
  bool Next(JsonlRecord* record);
  // An I/O error met while reading (end of file is not an error).
  absl::Status status() const { return status_; }
  // The path (or name) used in messages; "<stdin>" for "-".
  const std::string& path() const { return path_; }

 private:
  JsonlReader(std::string path, FILE* file, bool owned, std::string_view text)
      : path_(std::move(path)), file_(file), owned_(owned), text_(text) {}
  // The next line without its '\n'; false at the end. A line longer than kMaxLineBytes is cut
  // there and *too_long set.
  bool ReadLine(std::string* line, bool* too_long);

  std::string path_;
  FILE* file_;           // null when reading text_
  bool owned_;
  std::string_view text_;
  size_t text_pos_ = 0;
  int64_t line_ = 0;
  absl::Status status_;
};

class JsonlWriter {
 public:
  static absl::StatusOr<std::unique_ptr<JsonlWriter>> Open(const std::string& path);
  ~JsonlWriter();  // without Close(), the temporary file is removed and `path` is unchanged
  // One line: `value` as compact JSON (invalid UTF-8 in strings replaced by U+FFFD). Keys are
  // written in the value's order: sorted for nlohmann::json, as inserted for ordered_json.
  absl::Status Write(const nlohmann::json& value);
  // (A template only so that a braced list, Write({{"k", v}}), still means nlohmann::json.)
  template <typename Json,
            typename = std::enable_if_t<std::is_same_v<Json, nlohmann::ordered_json>>>
  absl::Status Write(const Json& value) {
    return WriteOrdered(value);
  }
  // Writes, fsyncs and renames into place (for "-": flushes standard output).
  absl::Status Close();
  // Bytes of the lines written so far, newlines included.
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  explicit JsonlWriter(std::unique_ptr<AtomicFileWriter> file) : file_(std::move(file)) {}
  absl::Status WriteOrdered(const nlohmann::ordered_json& value);
  absl::Status WriteLine(const std::string& line);
  std::unique_ptr<AtomicFileWriter> file_;  // null for standard output
  bool closed_ = false;
  uint64_t bytes_written_ = 0;
};

// An append-only JSON Lines log that a resumed run continues (metrics.jsonl). Each call appends
// one whole line with one write(2), so a crash loses at most the line being written; when the
// file's last line lacks its newline (a torn write), Open writes one first so that the next row
// is a line of its own. A failed append (a full disk) returns an error naming the file and cuts
// off the part of its line that was written, so the file keeps exactly its earlier lines.
// Not thread-safe.
class JsonlAppender {
 public:
  // Creates `path` if missing.
  static absl::StatusOr<std::unique_ptr<JsonlAppender>> Open(const std::string& path);
  ~JsonlAppender();  // closes the file (errors are lost: call Close() to see them)

  absl::Status Append(const nlohmann::json& value);
  // Appends `object_text`, the JSON text of one object without a newline, for callers that
  // format it themselves (metrics write doubles in their shortest form). InvalidArgument if it
  // holds a newline.
  absl::Status AppendText(std::string_view object_text);
  // Closes the file; later appends fail.
  absl::Status Close();

  const std::string& path() const { return path_; }

 private:
  JsonlAppender(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;  // -1 once closed
};

}  // namespace grpo

#endif  // GRPO_CORE_JSONL_H_
