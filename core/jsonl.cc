#include "core/jsonl.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace grpo {

Result<std::unique_ptr<JsonlReader>> JsonlReader::Open(const std::string& path) {
  if (path == "-") return std::unique_ptr<JsonlReader>(new JsonlReader("<stdin>", stdin, false));
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Status::FromErrno("open " + path, errno);
  return std::unique_ptr<JsonlReader>(new JsonlReader(path, f, true));
}

JsonlReader::~JsonlReader() {
  if (owned_ && file_ != nullptr) std::fclose(file_);
}

bool JsonlReader::Next(JsonlRecord* record) {
  std::string line;
  for (;;) {
    line.clear();
    bool too_long = false;
    int ch;
    bool any = false;
    while ((ch = std::getc(file_)) != EOF) {
      any = true;
      if (ch == '\n') break;
      if (line.size() < kMaxLineBytes) {
        line.push_back(static_cast<char>(ch));
      } else {
        too_long = true;
      }
    }
    if (!any) {
      if (std::ferror(file_)) status_ = Status::IoError("read error in " + path_);
      return false;
    }
    ++line_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos && !too_long) continue;  // blank
    record->line = line_;
    record->value = nullptr;
    record->status = Status::Ok();
    const std::string where = path_ + ":" + std::to_string(line_) + ": ";
    if (too_long) {
      record->status = Status::ResourceExhausted(where + "line longer than " +
                                                 std::to_string(kMaxLineBytes) + " bytes");
      return true;
    }
    nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
      record->status = Status::InvalidArgument(where + "not valid JSON");
    } else if (!value.is_object()) {
      record->status = Status::InvalidArgument(where + "not a JSON object");
    } else {
      record->value = std::move(value);
    }
    return true;
  }
}

Result<std::unique_ptr<JsonlWriter>> JsonlWriter::Open(const std::string& path) {
  if (path == "-") return std::unique_ptr<JsonlWriter>(new JsonlWriter("-", "", stdout));
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::FromErrno("create " + tmp, errno);
  return std::unique_ptr<JsonlWriter>(new JsonlWriter(path, tmp, f));
}

JsonlWriter::~JsonlWriter() {
  if (!closed_ && !tmp_.empty()) {
    std::fclose(file_);
    std::remove(tmp_.c_str());
  }
}

Status JsonlWriter::Write(const nlohmann::json& value) {
  const std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size()) {
    return Status::FromErrno("write " + (tmp_.empty() ? std::string("<stdout>") : tmp_), errno);
  }
  return Status::Ok();
}

Status JsonlWriter::Close() {
  if (closed_) return Status::Ok();
  closed_ = true;
  if (tmp_.empty()) return std::fflush(file_) == 0 ? Status::Ok() : Status::IoError("flush stdout");
  if (std::fflush(file_) != 0 || fsync(fileno(file_)) != 0) {
    const int err = errno;
    std::fclose(file_);
    return Status::FromErrno("write " + tmp_, err);
  }
  std::fclose(file_);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) return Status::FromErrno("rename to " + path_, errno);
  return Status::Ok();
}

}  // namespace grpo
