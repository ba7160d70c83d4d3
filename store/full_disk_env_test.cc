#include "store/full_disk_env.h"

#include <gtest/gtest.h>
#include <rocksdb/file_system.h>

#include <string>

#include "core/file.h"
#include "store/test_fixture.h"

namespace grpo::store::testing {
namespace {

std::string TempDir(const std::string& name) { return FreshDir("full_disk_env_test_" + name); }

std::string Contents(const std::string& path) { return ReadFile(path).value_or(""); }

TEST(FullDiskEnvTest, AppendsFailWithNoSpaceOnceTheBudgetIsSpent) {
  const std::string dir = TempDir("budget");
  FullDiskEnv disk;
  const std::shared_ptr<rocksdb::FileSystem>& fs = disk.env()->GetFileSystem();
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSWritableFile> file;
  ASSERT_TRUE(fs->NewWritableFile(dir + "/f", rocksdb::FileOptions(), &file, nullptr).ok());
  ASSERT_TRUE(file->Append("unlimited ", io, nullptr).ok());
  uint64_t free = 0;
  ASSERT_TRUE(fs->GetFreeSpace(dir, io, &free, nullptr).ok());
  EXPECT_GT(free, 0u);

  disk.SetBudget(4);
  // The part that fits is written, the rest fails as RocksDB's POSIX Env reports ENOSPC.
  rocksdb::IOStatus s = file->Append("abcdef", io, nullptr);
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_TRUE(s.GetRetryable());
  EXPECT_NE(s.ToString().find(dir + "/f"), std::string::npos) << s.ToString();
  EXPECT_TRUE(file->Append("x", io, nullptr).IsNoSpace());
  EXPECT_EQ(disk.failed_appends(), 2u);
  ASSERT_TRUE(fs->GetFreeSpace(dir, io, &free, nullptr).ok());
  EXPECT_EQ(free, 0u);
  // A new file is full too.
  std::unique_ptr<rocksdb::FSWritableFile> other;
  ASSERT_TRUE(fs->NewWritableFile(dir + "/g", rocksdb::FileOptions(), &other, nullptr).ok());
  EXPECT_TRUE(other->Append("y", io, nullptr).IsNoSpace());

  disk.Free();
  ASSERT_TRUE(file->Append("|freed", io, nullptr).ok());
  ASSERT_TRUE(file->Close(io, nullptr).ok());
  EXPECT_EQ(Contents(dir + "/f"), "unlimited abcd|freed");
  EXPECT_EQ(disk.failed_appends(), 3u);
}

TEST(FullDiskEnvTest, DisksAreIndependent) {
  const std::string dir = TempDir("independent");
  FullDiskEnv full, roomy;
  full.Fill();
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSWritableFile> a, b;
  ASSERT_TRUE(full.env()->GetFileSystem()->NewWritableFile(dir + "/a", {}, &a, nullptr).ok());
  ASSERT_TRUE(roomy.env()->GetFileSystem()->NewWritableFile(dir + "/b", {}, &b, nullptr).ok());
  EXPECT_TRUE(a->Append("1", io, nullptr).IsNoSpace());
  EXPECT_TRUE(b->Append("1", io, nullptr).ok());
  EXPECT_EQ(roomy.failed_appends(), 0u);
}

}  // namespace
}  // namespace grpo::store::testing
