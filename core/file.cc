#include "core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <utility>

namespace grpo {
namespace {

std::string DirName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status TooLarge(const std::string& path, size_t max_bytes) {
  return absl::ResourceExhaustedError(path + " is larger than " + std::to_string(max_bytes) +
                                      " bytes");
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open " + path, errno);
  // Read up to one byte past the limit, to tell "exactly max_bytes" from "more".
  const size_t read_limit = max_bytes == kNoFileSizeLimit ? max_bytes : max_bytes + 1;
  std::string out;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    if (static_cast<uint64_t>(st.st_size) > max_bytes) {
      ::close(fd);
      return TooLarge(path, max_bytes);
    }
    // One byte more than the size, so that the end of file is seen without growing.
    out.resize(std::min<size_t>(static_cast<size_t>(st.st_size) + 1, read_limit));
  }
  size_t size = 0;
  for (;;) {
    if (size == out.size()) {
      if (size >= read_limit) break;
      out.resize(std::min<size_t>(std::max<size_t>(2 * size, 64 << 10), read_limit));
    }
    const ssize_t n = ::read(fd, &out[size], out.size() - size);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoError("cannot read " + path, err);
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  ::close(fd);
  if (size > max_bytes) return TooLarge(path, max_bytes);
  out.resize(size);
  return out;
}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Open(const std::string& path,
                                                                         mode_t mode) {
  std::string tmp = path + ".tmp";
  // A stale temporary file is removed rather than truncated, so that `mode` applies.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("cannot remove stale " + tmp, errno);
  }
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("cannot create " + tmp, errno);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, std::move(tmp), fd));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) Abandon();
}

void AtomicFileWriter::Abandon() {
  ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
}

absl::Status AtomicFileWriter::WriteFd(const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd_, data, std::min<size_t>(size, size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      status_ = ErrnoError("cannot write " + tmp_, errno);
      return status_;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Flush() {
  if (buffer_.empty()) return absl::OkStatus();
  GRPO_RETURN_IF_ERROR(WriteFd(buffer_.data(), buffer_.size()));
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Append(std::string_view data) {
  if (fd_ < 0) return absl::FailedPreconditionError(path_ + ": written after Commit");
  if (!status_.ok()) return status_;
  if (buffer_.size() + data.size() <= kBufferBytes) {
    if (buffer_.capacity() < kBufferBytes) buffer_.reserve(kBufferBytes);
    buffer_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  GRPO_RETURN_IF_ERROR(Flush());
  if (data.size() >= kBufferBytes) return WriteFd(data.data(), data.size());
  buffer_.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  if (fd_ < 0) return absl::FailedPreconditionError(path_ + ": committed twice");
  absl::Status s = status_;
  if (s.ok()) s = Flush();
  if (s.ok() && ::fsync(fd_) != 0) s = ErrnoError("cannot sync " + tmp_, errno);
  if (::close(fd_) != 0 && s.ok()) s = ErrnoError("cannot close " + tmp_, errno);
  fd_ = -1;
  if (s.ok() && ::rename(tmp_.c_str(), path_.c_str()) != 0) {
    s = ErrnoError("cannot rename " + tmp_ + " to " + path_, errno);
  }
  buffer_.clear();
  buffer_.shrink_to_fit();
  if (!s.ok()) {
    ::unlink(tmp_.c_str());
    status_ = s;
    return s;
  }
  return SyncDirectory(DirName(path_));
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view contents, mode_t mode) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> writer, AtomicFileWriter::Open(path, mode));
  GRPO_RETURN_IF_ERROR(writer->Append(contents));
  return writer->Commit();
}

absl::Status ReplaceDirectory(const std::string& tmp_dir, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::directory_iterator it(tmp_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) GRPO_RETURN_IF_ERROR(SyncFile(it->path().string()));
  }
  if (ec) return ErrnoError("cannot list " + tmp_dir, ec.value());
  GRPO_RETURN_IF_ERROR(SyncDirectory(tmp_dir));
  if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
    // The old directory is now at tmp_dir.
    GRPO_RETURN_IF_ERROR(SyncDirectory(DirName(dir)));
    fs::remove_all(tmp_dir, ec);
    if (ec) return ErrnoError("cannot remove the replaced " + dir + " (now " + tmp_dir + ")", ec.value());
    return absl::OkStatus();
  }
  const int err = errno;
  if (err == EINVAL || err == ENOSYS || err == EOPNOTSUPP) {
    // The filesystem cannot exchange: remove the old directory first.
    fs::remove_all(dir, ec);
    if (ec) return ErrnoError("cannot remove " + dir, ec.value());
  } else if (err != ENOENT) {  // ENOENT: there is no `dir` (or no `tmp_dir`: rename says so)
    return ErrnoError("cannot rename " + tmp_dir + " to " + dir, err);
  }
  if (::rename(tmp_dir.c_str(), dir.c_str()) != 0) {
    return ErrnoError("cannot rename " + tmp_dir + " to " + dir, errno);
  }
  return SyncDirectory(DirName(dir));
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open directory " + dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != EROFS) return ErrnoError("cannot sync " + dir, err);
  return absl::OkStatus();
}

absl::Status SyncFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open " + path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("cannot sync " + path, err);
  return absl::OkStatus();
}

}  // namespace grpo
