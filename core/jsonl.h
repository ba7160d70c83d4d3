// JSON Lines: the file format of every command that reads or writes records (one JSON object per
// line). Readers report a bad line with its number and go on; writers write to "<path>.tmp" and
// rename on Close, so an interrupted run never leaves a half-written output under `path`.
// The path "-" means standard input / standard output.
#ifndef GRPO_CORE_JSONL_H_
#define GRPO_CORE_JSONL_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace grpo {

struct JsonlRecord {
  int64_t line = 0;       // 1-based line number in the file
  nlohmann::json value;   // the object, when ok()
  Status status;          // what was wrong with this line: "IN.jsonl:12: not a JSON object"
  bool ok() const { return status.ok(); }
};

class JsonlReader {
 public:
  // Lines longer than this are reported as errors (and skipped) instead of being parsed.
  static constexpr size_t kMaxLineBytes = 64 << 20;

  static Result<std::unique_ptr<JsonlReader>> Open(const std::string& path);
  ~JsonlReader();

  // The next non-blank line. Returns false at end of file. A line that is not a JSON object
  // yields a record whose status names the file and line.
  bool Next(JsonlRecord* record);
  // An I/O error met while reading (end of file is not an error).
  Status status() const { return status_; }

 private:
  JsonlReader(std::string path, FILE* file, bool owned) : path_(std::move(path)), file_(file), owned_(owned) {}
  std::string path_;
  FILE* file_;
  bool owned_;
  int64_t line_ = 0;
  Status status_;
};

class JsonlWriter {
 public:
  static Result<std::unique_ptr<JsonlWriter>> Open(const std::string& path);
  ~JsonlWriter();  // without Close(), the temporary file is removed
  Status Write(const nlohmann::json& value);
  // Flushes, fsyncs and renames into place.
  Status Close();

 private:
  JsonlWriter(std::string path, std::string tmp, FILE* file) : path_(std::move(path)), tmp_(std::move(tmp)), file_(file) {}
  std::string path_, tmp_;
  FILE* file_;
  bool closed_ = false;
};

}  // namespace grpo

#endif  // GRPO_CORE_JSONL_H_
