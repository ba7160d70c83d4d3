#include "core/file.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fcntl.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "testing/python_reference.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xFF);
  return s;
}

void WriteRaw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

bool Contains(const absl::Status& s, const std::string& part) {
  return std::string(s.message()).find(part) != std::string::npos;
}

TEST(ReadFile, ReadsWholeFilesOfEverySize) {
  const std::string dir = testing::MakeTempDir("file_read");
  for (size_t n : {size_t{0}, size_t{1}, size_t{65535}, size_t{65536}, size_t{65537},
                   size_t{3} << 20}) {
    const std::string path = dir + "/f" + std::to_string(n);
    const std::string want = Pattern(n);
    WriteRaw(path, want);
    absl::StatusOr<std::string> got = ReadFile(path);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->size(), n);
    EXPECT_TRUE(*got == want) << n;
  }
}

TEST(ReadFile, ReadsFilesWhoseSizeIsUnknown) {
  // /proc files report size 0; the reader must not trust it.
  absl::StatusOr<std::string> got = ReadFile("/proc/self/status");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_NE(got->find("Pid:"), std::string::npos);
  // A limit applies to them too.
  absl::StatusOr<std::string> capped = ReadFile("/proc/self/status", 10);
  EXPECT_EQ(capped.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(capped.status(), "/proc/self/status")) << capped.status().ToString();
}

TEST(ReadFile, SizeLimitNamesTheFile) {
  const std::string path = testing::MakeTempDir("file_limit") + "/ten.bin";
  WriteRaw(path, "0123456789");
  ASSERT_TRUE(ReadFile(path, 10).ok());
  absl::StatusOr<std::string> got = ReadFile(path, 9);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(got.status().message(), path + " is larger than 9 bytes");
  EXPECT_EQ(ReadFile(path, 0).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ReadFile, ErrorsNameThePathAndCarryTheErrno) {
  const std::string dir = testing::MakeTempDir("file_err");
  absl::StatusOr<std::string> missing = ReadFile(dir + "/missing.txt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "cannot open " + dir + "/missing.txt: No such file or directory");
  absl::StatusOr<std::string> directory = ReadFile(dir);
  EXPECT_FALSE(directory.ok());
  EXPECT_TRUE(Contains(directory.status(), dir)) << directory.status().ToString();
}

TEST(WriteFileAtomic, CreatesAndReplacesLeavingNoTemporary) {
  const std::string path = testing::MakeTempDir("file_write") + "/out.txt";
  ASSERT_TRUE(WriteFileAtomic(path, "first\n").ok());
  EXPECT_EQ(*ReadFile(path), "first\n");
  // A reader holding the old file keeps seeing the old contents: the file is replaced, not
  // rewritten in place.
  const int old_fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(old_fd, 0);
  const std::string binary = Pattern(5 << 20);
  ASSERT_TRUE(WriteFileAtomic(path, binary).ok());
  EXPECT_TRUE(*ReadFile(path) == binary);
  char buf[16] = {0};
  EXPECT_EQ(::pread(old_fd, buf, sizeof buf, 0), 6);
  EXPECT_EQ(std::string(buf), "first\n");
  ::close(old_fd);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  ASSERT_TRUE(WriteFileAtomic(path, "").ok());
  EXPECT_EQ(fs::file_size(path), 0u);
}

TEST(WriteFileAtomic, ReplacesAStaleTemporary) {
  const std::string path = testing::MakeTempDir("file_stale") + "/out.txt";
  WriteRaw(path + ".tmp", "left over from a crash, and longer than the new contents");
  ASSERT_TRUE(WriteFileAtomic(path, "new").ok());
  EXPECT_EQ(*ReadFile(path), "new");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(WriteFileAtomic, ModeSetsThePermissionBits) {
  const mode_t old_mask = ::umask(022);
  const std::string dir = testing::MakeTempDir("file_mode");
  ASSERT_TRUE(WriteFileAtomic(dir + "/plain", "x").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/script.sh", "#!/bin/sh\n", 0777).ok());
  ::umask(old_mask);
  struct stat st;
  ASSERT_EQ(::stat((dir + "/plain").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_EQ(::stat((dir + "/script.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST(WriteFileAtomic, FailuresNameThePathAndLeaveNothing) {
  const std::string dir = testing::MakeTempDir("file_wfail");
  // The directory does not exist.
  absl::Status s = WriteFileAtomic(dir + "/no/such/out.txt", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s, dir + "/no/such/out.txt.tmp")) << s.ToString();
  // The target is a directory: the rename fails, the temporary is removed, the target stays.
  fs::create_directories(dir + "/taken");
  s = WriteFileAtomic(dir + "/taken", "x");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, dir + "/taken")) << s.ToString();
  EXPECT_TRUE(fs::is_directory(dir + "/taken"));
  EXPECT_FALSE(fs::exists(dir + "/taken.tmp"));
}

TEST(AtomicFileWriter, AppendsAcrossTheBufferAndPublishesOnCommit) {
  const std::string path = testing::MakeTempDir("file_stream") + "/out.bin";
  WriteRaw(path, "old");
  std::string want;
  {
    absl::StatusOr<std::unique_ptr<AtomicFileWriter>> w = AtomicFileWriter::Open(path);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ((*w)->path(), path);
    EXPECT_EQ((*w)->temp_path(), path + ".tmp");
    // Small pieces, a piece that overflows the buffer, one larger than it, small ones again.
    for (const std::string& piece :
         {std::string("header\n"), Pattern(700 << 10), Pattern(600 << 10), Pattern(3 << 20),
          std::string("a"), std::string(), std::string("tail\n")}) {
      ASSERT_TRUE((*w)->Append(piece).ok());
      want += piece;
    }
    EXPECT_EQ(*ReadFile(path), "old");  // nothing visible before Commit
    ASSERT_TRUE((*w)->Commit().ok());
    EXPECT_EQ((*w)->Append("x").code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_TRUE(*ReadFile(path) == want);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(AtomicFileWriter, WithoutCommitNothingChanges) {
  const std::string dir = testing::MakeTempDir("file_abandon");
  WriteRaw(dir + "/kept.txt", "old");
  {
    auto w = AtomicFileWriter::Open(dir + "/kept.txt");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Pattern(2 << 20)).ok());
    EXPECT_TRUE(fs::exists(dir + "/kept.txt.tmp"));
  }
  EXPECT_EQ(*ReadFile(dir + "/kept.txt"), "old");
  EXPECT_FALSE(fs::exists(dir + "/kept.txt.tmp"));
  {
    auto w = AtomicFileWriter::Open(dir + "/new.txt");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append("never").ok());
  }
  EXPECT_FALSE(fs::exists(dir + "/new.txt"));
  EXPECT_FALSE(fs::exists(dir + "/new.txt.tmp"));
}

TEST(AtomicFileWriter, AWriteErrorFailsTheCommitAndLeavesTheOldFile) {
  const std::string path = testing::MakeTempDir("file_efbig") + "/out.bin";
  WriteRaw(path, "old");
  // A file size limit makes write(2) fail with EFBIG once the file would pass 64 KiB.
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  void (*old_handler)(int) = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 64 << 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::Status append, commit;
  {
    auto w = AtomicFileWriter::Open(path);
    ASSERT_TRUE(w.ok());
    append = (*w)->Append(Pattern(2 << 20));  // larger than the buffer: written at once
    EXPECT_EQ((*w)->Append("more").code(), append.code());
    commit = (*w)->Commit();
  }
  absl::Status buffered;
  {
    auto w = AtomicFileWriter::Open(path);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Pattern(100 << 10)).ok());  // buffered: the error comes at Commit
    buffered = (*w)->Commit();
  }
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  ::signal(SIGXFSZ, old_handler);

  EXPECT_FALSE(append.ok());
  EXPECT_TRUE(Contains(append, "cannot write " + path + ".tmp")) << append.ToString();
  EXPECT_EQ(commit, append);
  EXPECT_FALSE(buffered.ok());
  EXPECT_TRUE(Contains(buffered, path + ".tmp")) << buffered.ToString();
  EXPECT_EQ(*ReadFile(path), "old");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(ReplaceDirectory, PutsTheNewDirectoryInPlaceOfTheOld) {
  const std::string root = testing::MakeTempDir("file_dir");
  const std::string dir = root + "/ckpt", tmp = root + "/ckpt.tmp";
  // No old directory.
  fs::create_directories(tmp + "/sub");
  WriteRaw(tmp + "/a.txt", "one");
  ASSERT_TRUE(ReplaceDirectory(tmp, dir).ok());
  EXPECT_EQ(*ReadFile(dir + "/a.txt"), "one");
  EXPECT_TRUE(fs::is_directory(dir + "/sub"));
  EXPECT_FALSE(fs::exists(tmp));
  // An old directory with other files is replaced whole.
  fs::create_directories(tmp);
  WriteRaw(tmp + "/b.txt", "two");
  ASSERT_TRUE(ReplaceDirectory(tmp, dir).ok());
  EXPECT_EQ(*ReadFile(dir + "/b.txt"), "two");
  EXPECT_FALSE(fs::exists(dir + "/a.txt"));
  EXPECT_FALSE(fs::exists(dir + "/sub"));
  EXPECT_FALSE(fs::exists(tmp));
  // A missing source is an error that names it, and the current directory stays.
  const absl::Status s = ReplaceDirectory(root + "/missing.tmp", dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s, root + "/missing.tmp")) << s.ToString();
  EXPECT_EQ(*ReadFile(dir + "/b.txt"), "two");
}

TEST(Sync, FilesAndDirectories) {
  const std::string dir = testing::MakeTempDir("file_sync");
  WriteRaw(dir + "/a", "a");
  EXPECT_TRUE(SyncFile(dir + "/a").ok());
  EXPECT_TRUE(SyncDirectory(dir).ok());
  EXPECT_EQ(SyncFile(dir + "/missing").code(), absl::StatusCode::kNotFound);
  const absl::Status s = SyncDirectory(dir + "/missing");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s, dir + "/missing")) << s.ToString();
  EXPECT_FALSE(SyncDirectory(dir + "/a").ok());  // not a directory
}

}  // namespace
}  // namespace grpo
