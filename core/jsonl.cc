#include "core/jsonl.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace grpo {
namespace {

// The text of one line: `value` as compact JSON, invalid UTF-8 replaced.
template <typename Json>
std::string LineOf(const Json& value) {
  std::string line = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  line.push_back('\n');
  return line;
}

bool Blank(const std::string& line) { return line.find_first_not_of(" \t\r") == std::string::npos; }

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonlLine(std::string_view line) {
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(line.begin(), line.end());
  } catch (const nlohmann::json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    std::string_view why = e.what();
    if (const size_t bracket = why.find("] "); why.rfind("[json.exception.", 0) == 0 &&
                                               bracket != std::string_view::npos) {
      why.remove_prefix(bracket + 2);
    }
    return absl::InvalidArgumentError("not valid JSON: " + std::string(why));
  }
  if (!value.is_object()) return absl::InvalidArgumentError("not a JSON object");
  return value;
}

// ---------------------------------------------------------------------------------- reading

absl::StatusOr<std::unique_ptr<JsonlReader>> JsonlReader::Open(const std::string& path) {
  if (path == "-") return std::unique_ptr<JsonlReader>(new JsonlReader("<stdin>", stdin, false, {}));
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return grpo::ErrnoError("open " + path, errno);
  return std::unique_ptr<JsonlReader>(new JsonlReader(path, f, true, {}));
}

std::unique_ptr<JsonlReader> JsonlReader::FromText(std::string name, std::string_view text) {
  return std::unique_ptr<JsonlReader>(new JsonlReader(std::move(name), nullptr, false, text));
}

JsonlReader::~JsonlReader() {
  if (owned_ && file_ != nullptr) std::fclose(file_);
}

bool JsonlReader::ReadLine(std::string* line, bool* too_long) {
  line->clear();
  *too_long = false;
  if (file_ == nullptr) {
    if (text_pos_ >= text_.size()) return false;
    size_t end = text_.find('\n', text_pos_);
    if (end == std::string_view::npos) end = text_.size();
    size_t length = end - text_pos_;
    if (length > kMaxLineBytes) {
      length = kMaxLineBytes;
      *too_long = true;
    }
    line->assign(text_.data() + text_pos_, length);
    text_pos_ = end + 1;
    return true;
  }
  int ch;
  bool any = false;
  while ((ch = std::getc(file_)) != EOF) {
    any = true;
    if (ch == '\n') break;
    if (line->size() < kMaxLineBytes) {
      line->push_back(static_cast<char>(ch));
    } else {
      *too_long = true;
    }
  }
  if (!any && std::ferror(file_)) status_ = absl::UnknownError("read error in " + path_);
  return any;
}

bool JsonlReader::Next(JsonlRecord* record) {
  std::string line;
  bool too_long = false;
  for (;;) {
    if (!ReadLine(&line, &too_long)) return false;
    ++line_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!too_long && Blank(line)) continue;
    record->line = line_;
    record->value = nullptr;
    record->status = absl::OkStatus();
    const std::string where = path_ + ":" + std::to_string(line_);
    if (too_long) {
      record->status = absl::ResourceExhaustedError(where + ": line longer than " +
                                                    std::to_string(kMaxLineBytes) + " bytes");
      return true;
    }
    absl::StatusOr<nlohmann::json> value = ParseJsonlLine(line);
    if (value.ok()) {
      record->value = std::move(value).value();
    } else {
      record->status = grpo::WithContext(value.status(), where);
    }
    return true;
  }
}

// ---------------------------------------------------------------------------------- writing

absl::StatusOr<std::unique_ptr<JsonlWriter>> JsonlWriter::Open(const std::string& path) {
  if (path == "-") return std::unique_ptr<JsonlWriter>(new JsonlWriter(nullptr));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file, AtomicFileWriter::Open(path));
  return std::unique_ptr<JsonlWriter>(new JsonlWriter(std::move(file)));
}

JsonlWriter::~JsonlWriter() = default;  // an uncommitted AtomicFileWriter removes its file

absl::Status JsonlWriter::Write(const nlohmann::json& value) { return WriteLine(LineOf(value)); }

absl::Status JsonlWriter::WriteOrdered(const nlohmann::ordered_json& value) {
  return WriteLine(LineOf(value));
}

absl::Status JsonlWriter::WriteLine(const std::string& text) {
  if (closed_) return absl::FailedPreconditionError("JSONL writer: Write after Close");
  if (file_ != nullptr) {
    GRPO_RETURN_IF_ERROR(file_->Append(text));
  } else if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) {
    return grpo::ErrnoError("write <stdout>", errno);
  }
  bytes_written_ += text.size();
  return absl::OkStatus();
}

absl::Status JsonlWriter::Close() {
  if (closed_) return absl::OkStatus();
  closed_ = true;
  if (file_ != nullptr) return file_->Commit();
  if (std::fflush(stdout) != 0) return grpo::ErrnoError("flush <stdout>", errno);
  return absl::OkStatus();
}

// -------------------------------------------------------------------------------- appending

absl::StatusOr<std::unique_ptr<JsonlAppender>> JsonlAppender::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return grpo::ErrnoError("cannot open " + path, errno);
  std::unique_ptr<JsonlAppender> appender(new JsonlAppender(path, fd));
  struct stat st;
  if (::fstat(fd, &st) != 0) return grpo::ErrnoError("cannot open " + path, errno);
  if (st.st_size > 0) {
    // The last byte, through a second descriptor (this one is write-only).
    const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) return grpo::ErrnoError("cannot open " + path, errno);
    char last = '\n';
    const ssize_t n = ::pread(rfd, &last, 1, st.st_size - 1);
    const int err = errno;
    ::close(rfd);
    if (n < 0) return grpo::ErrnoError("cannot read " + path, err);
    if (n == 1 && last != '\n') GRPO_RETURN_IF_ERROR(appender->AppendText(""));  // a torn line
  }
  return appender;
}

JsonlAppender::~JsonlAppender() { (void)Close(); }

absl::Status JsonlAppender::Append(const nlohmann::json& value) {
  std::string text = LineOf(value);
  text.pop_back();
  return AppendText(text);
}

absl::Status JsonlAppender::AppendText(std::string_view object_text) {
  if (fd_ < 0) return absl::FailedPreconditionError(path_ + ": append after Close");
  if (object_text.find('\n') != std::string_view::npos) {
    return absl::InvalidArgumentError(path_ + ": a JSON Lines row cannot hold a newline");
  }
  std::string line;
  line.reserve(object_text.size() + 1);
  line.append(object_text.data(), object_text.size());
  line.push_back('\n');
  // Where the line starts (the end of the file: one writer appends), to cut a failed one off.
  struct stat st;
  const off_t start = ::fstat(fd_, &st) == 0 ? st.st_size : -1;
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      if (left < line.size() && (start < 0 || ::ftruncate(fd_, start) != 0)) {
        return grpo::ErrnoError("cannot write " + path_ + " (a part of the line stays in it)", err);
      }
      return grpo::ErrnoError("cannot write " + path_, err);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status JsonlAppender::Close() {
  if (fd_ < 0) return absl::OkStatus();
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return grpo::ErrnoError("cannot close " + path_, errno);
  return absl::OkStatus();
}

}  // namespace grpo
