// Files: reading a whole file, and replacing a file atomically. Every part of the system reads
// and writes its files through these (JSONL outputs through core/jsonl, which uses them).
//
// Atomic replacement: the new contents are written to "<path>.tmp" in the same directory
// (a stale one from an earlier crash is replaced), fsync'ed, renamed over `path`, and then the
// directory is fsync'ed. A reader sees the old file or the new one, never a mix; once the call
// returns OK the new file survives a crash or power loss. On any failure the temporary file is
// removed and `path` is left as it was. Writers of one path share the temporary name: callers
// must not write the same path from two writers at once.
//
// Errors name the path and, for a failed system call, carry its errno (grpo::ErrnoError: a
// missing file is kNotFound, a full disk kResourceExhausted, ...).
#ifndef GRPO_CORE_FILE_H_
#define GRPO_CORE_FILE_H_

#include <sys/types.h>

#include <cstddef>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grpo {

inline constexpr size_t kNoFileSizeLimit = std::numeric_limits<size_t>::max();

// The whole contents of `path`. A file larger than `max_bytes` is not read:
// kResourceExhausted "<path> is larger than <max_bytes> bytes".
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = kNoFileSizeLimit);

// Replaces `path` with `contents` atomically (see above). `mode` is the new file's permission
// bits before the umask (0777 for a script).
absl::Status WriteFileAtomic(const std::string& path, std::string_view contents,
                             mode_t mode = 0666);

// Writes a file incrementally, then replaces `path` with it atomically on Commit() (see above).
// Appends are buffered. Not thread-safe.
//
//   GRPO_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> w, AtomicFileWriter::Open(path));
//   GRPO_RETURN_IF_ERROR(w->Append(header));
//   ...
//   GRPO_RETURN_IF_ERROR(w->Commit());
class AtomicFileWriter {
 public:
  // Creates "<path>.tmp" with permission bits `mode` (before the umask).
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Open(const std::string& path,
                                                                mode_t mode = 0666);

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  // Without a successful Commit(), removes the temporary file; `path` stays as it was.
  ~AtomicFileWriter();

  // Appends `data` to the new contents. After an error the writer is failed: every later call
  // returns that error and Commit() replaces nothing.
  absl::Status Append(std::string_view data);

  // Writes what is buffered, fsyncs, renames over `path`, fsyncs the directory. Returns the
  // first error of the writer's life; on error the temporary file is removed. The writer is
  // closed afterwards (Append and Commit return FailedPrecondition).
  absl::Status Commit();

  const std::string& path() const { return path_; }
  // The temporary file's path, "<path>.tmp".
  const std::string& temp_path() const { return tmp_; }

 private:
  static constexpr size_t kBufferBytes = 1 << 20;

  AtomicFileWriter(std::string path, std::string tmp, int fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}
  absl::Status Flush();
  absl::Status WriteFd(const char* data, size_t size);
  void Abandon();  // closes and removes the temporary file

  std::string path_;
  std::string tmp_;
  int fd_;  // -1 once closed
  std::string buffer_;
  absl::Status status_;
};

// Makes `tmp_dir`, a directory whose files are complete, appear as `dir` (a checkpoint, a saved
// model): fsyncs each file directly inside `tmp_dir` and `tmp_dir` itself, puts it in place of
// `dir`, and fsyncs the parent of `dir`. An existing `dir` is swapped out in one step where the
// filesystem can (renameat2 RENAME_EXCHANGE), so a crash leaves the old or the new directory
// complete, then removed; elsewhere it is removed first. On error nothing has replaced `dir`
// unless the message says the old one could not be removed.
absl::Status ReplaceDirectory(const std::string& tmp_dir, const std::string& dir);

// fsyncs the directory `dir`, so that entries created, renamed or removed in it are durable.
// Filesystems that cannot sync a directory (EINVAL, EROFS) count as success.
absl::Status SyncDirectory(const std::string& dir);

// fsyncs the file `path` (the contents written through another handle, such as a library's).
absl::Status SyncFile(const std::string& path);

}  // namespace grpo

#endif  // GRPO_CORE_FILE_H_
