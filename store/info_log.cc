#include "store/info_log.h"

#include <rocksdb/file_system.h>
#include <sys/time.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace grpo::store {
namespace {

class InfoLog : public rocksdb::Logger {
 public:
  InfoLog(rocksdb::Env* env, std::unique_ptr<rocksdb::FSWritableFile> file, rocksdb::InfoLogLevel level)
      : rocksdb::Logger(level), env_(env), file_(std::move(file)) {}
  ~InfoLog() override { CloseFile().PermitUncheckedError(); }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    timeval tv;
    gettimeofday(&tv, nullptr);
    tm t;
    localtime_r(&tv.tv_sec, &t);
    char prefix[64];
    const int n = std::snprintf(prefix, sizeof(prefix), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld %llu ", t.tm_year + 1900,
                                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<long>(tv.tv_usec),
                                static_cast<unsigned long long>(env_->GetThreadID()));
    std::string line(prefix, n > 0 ? static_cast<size_t>(n) : 0);
    va_list copy;
    va_copy(copy, ap);
    const int len = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (len > 0) {
      const size_t start = line.size();
      line.resize(start + static_cast<size_t>(len) + 1);
      std::vsnprintf(line.data() + start, static_cast<size_t>(len) + 1, format, ap);
      line.resize(start + static_cast<size_t>(len));
    }
    if (line.empty() || line.back() != '\n') line.push_back('\n');

    absl::MutexLock lock(&mu_);
    if (file_ == nullptr) return;
    // A failed append (a full disk) is dropped: the log must never stop the database.
    file_->Append(rocksdb::Slice(line), rocksdb::IOOptions(), nullptr).PermitUncheckedError();
  }

 protected:
  rocksdb::Status CloseImpl() override { return CloseFile(); }

 private:
  rocksdb::Status CloseFile() {
    absl::MutexLock lock(&mu_);
    if (file_ == nullptr) return rocksdb::Status::OK();
    rocksdb::IOStatus s = file_->Close(rocksdb::IOOptions(), nullptr);
    file_.reset();
    return s;
  }

  rocksdb::Env* const env_;
  absl::Mutex mu_;
  std::unique_ptr<rocksdb::FSWritableFile> file_ ABSL_GUARDED_BY(mu_);  // null: lines are dropped
};

}  // namespace

std::shared_ptr<rocksdb::Logger> NewInfoLog(rocksdb::Env* env, const std::string& dir,
                                            rocksdb::InfoLogLevel level) {
  const std::shared_ptr<rocksdb::FileSystem>& fs = env->GetFileSystem();
  const std::string path = dir + "/LOG";
  const rocksdb::IOOptions io;
  if (fs->FileExists(path, io, nullptr).ok()) {
    fs->RenameFile(path, dir + "/LOG.old", io, nullptr).PermitUncheckedError();
  }
  std::unique_ptr<rocksdb::FSWritableFile> file;
  if (!fs->NewWritableFile(path, rocksdb::FileOptions(), &file, nullptr).ok()) file.reset();
  return std::make_shared<InfoLog>(env, std::move(file), level);
}

}  // namespace grpo::store
