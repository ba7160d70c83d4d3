#include "store/full_disk_env.h"

#include <rocksdb/file_system.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "absl/synchronization/mutex.h"

namespace grpo::store::testing {

struct FullDiskEnv::State {
  absl::Mutex mu;
  uint64_t budget ABSL_GUARDED_BY(mu) = std::numeric_limits<uint64_t>::max();
  std::atomic<uint64_t> failed{0};

  // How many of `want` bytes fit; takes them from the budget.
  size_t Take(size_t want) {
    absl::MutexLock lock(&mu);
    const size_t got = static_cast<size_t>(std::min<uint64_t>(budget, want));
    budget -= got;
    if (got < want) failed.fetch_add(1);
    return got;
  }
  bool full() {
    absl::MutexLock lock(&mu);
    return budget == 0;
  }
};

namespace {

using rocksdb::DataVerificationInfo;
using rocksdb::FileOptions;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

IOStatus NoSpace(const std::string& path) {
  IOStatus s = IOStatus::NoSpace("While appending to file: " + path, "No space left on device (simulated)");
  s.SetRetryable(true);  // as RocksDB's POSIX Env marks ENOSPC
  return s;
}

class File : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  File(std::unique_ptr<FSWritableFile> file, std::string path, std::shared_ptr<FullDiskEnv::State> state)
      : FSWritableFileOwnerWrapper(std::move(file)), path_(std::move(path)), state_(std::move(state)) {}

  IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override {
    const size_t fits = state_->Take(data.size());
    if (fits > 0) {
      IOStatus s = target()->Append(Slice(data.data(), fits), options, dbg);
      if (!s.ok()) return s;
    }
    return fits == data.size() ? IOStatus::OK() : NoSpace(path_);
  }
  IOStatus Append(const Slice& data, const IOOptions& options, const DataVerificationInfo& /*info*/,
                  IODebugContext* dbg) override {
    return Append(data, options, dbg);
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            IODebugContext* dbg) override {
    if (state_->Take(data.size()) < data.size()) return NoSpace(path_);
    return target()->PositionedAppend(data, offset, options, dbg);
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            const DataVerificationInfo& /*info*/, IODebugContext* dbg) override {
    return PositionedAppend(data, offset, options, dbg);
  }

 private:
  const std::string path_;
  const std::shared_ptr<FullDiskEnv::State> state_;
};

class FileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FileSystem(std::shared_ptr<FullDiskEnv::State> state)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), state_(std::move(state)) {}
  const char* Name() const override { return "FullDiskFileSystem"; }

  IOStatus NewWritableFile(const std::string& f, const FileOptions& o, std::unique_ptr<FSWritableFile>* r,
                           IODebugContext* dbg) override {
    return Wrap(f, target()->NewWritableFile(f, o, r, dbg), r);
  }
  IOStatus ReopenWritableFile(const std::string& f, const FileOptions& o, std::unique_ptr<FSWritableFile>* r,
                              IODebugContext* dbg) override {
    return Wrap(f, target()->ReopenWritableFile(f, o, r, dbg), r);
  }
  IOStatus ReuseWritableFile(const std::string& f, const std::string& old, const FileOptions& o,
                             std::unique_ptr<FSWritableFile>* r, IODebugContext* dbg) override {
    return Wrap(f, target()->ReuseWritableFile(f, old, o, r, dbg), r);
  }
  // RocksDB's own info log, when a database is opened without one, through the files above.
  IOStatus NewLogger(const std::string& f, const IOOptions& o, std::shared_ptr<rocksdb::Logger>* r,
                     IODebugContext* dbg) override {
    return rocksdb::FileSystem::NewLogger(f, o, r, dbg);
  }
  IOStatus GetFreeSpace(const std::string& path, const IOOptions& o, uint64_t* free,
                        IODebugContext* dbg) override {
    if (state_->full()) {
      *free = 0;
      return IOStatus::OK();
    }
    return target()->GetFreeSpace(path, o, free, dbg);
  }

 private:
  IOStatus Wrap(const std::string& path, IOStatus s, std::unique_ptr<FSWritableFile>* r) {
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), path, state_);
    return s;
  }
  const std::shared_ptr<FullDiskEnv::State> state_;
};

}  // namespace

FullDiskEnv::FullDiskEnv()
    : state_(std::make_shared<State>()),
      env_(rocksdb::NewCompositeEnv(std::make_shared<FileSystem>(state_))) {}

FullDiskEnv::~FullDiskEnv() = default;

void FullDiskEnv::SetBudget(uint64_t bytes) {
  absl::MutexLock lock(&state_->mu);
  state_->budget = bytes;
}

void FullDiskEnv::Free() { SetBudget(std::numeric_limits<uint64_t>::max()); }

uint64_t FullDiskEnv::failed_appends() const { return state_->failed.load(); }

}  // namespace grpo::store::testing
