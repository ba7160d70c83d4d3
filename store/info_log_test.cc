#include "store/info_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "core/file.h"
#include "store/full_disk_env.h"
#include "store/test_fixture.h"

namespace grpo::store {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) { return testing::FreshDir("info_log_test_" + name); }

std::string Contents(const std::string& path) { return ReadFile(path).value_or(""); }

TEST(InfoLogTest, WritesLinesAtItsLevelAndKeepsThePreviousLog) {
  const std::string dir = TempDir("lines");
  { std::ofstream(dir + "/LOG") << "the previous run's log\n"; }
  auto log = NewInfoLog(rocksdb::Env::Default(), dir, rocksdb::InfoLogLevel::WARN_LEVEL);
  rocksdb::Log(rocksdb::InfoLogLevel::INFO_LEVEL, log, "not written %d", 1);
  rocksdb::Log(rocksdb::InfoLogLevel::WARN_LEVEL, log, "written %d", 2);
  rocksdb::Log(rocksdb::InfoLogLevel::ERROR_LEVEL, log, "%s", std::string(2000, 'x').c_str());  // long line
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(Contents(dir + "/LOG.old"), "the previous run's log\n");
  const std::string text = Contents(dir + "/LOG");
  const std::regex line(R"(\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d\.\d{6} \d+ \[WARN\] written 2\n)"
                        R"(\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d\.\d{6} \d+ \[ERROR\] x{2000}\n)");
  EXPECT_TRUE(std::regex_match(text, line)) << text.substr(0, 200);
}

// RocksDB's default info log aborts the process on its next line after a failed write (see
// info_log.h); this one drops what does not fit and goes on.
TEST(InfoLogTest, AFullDiskDropsLinesAndNeverStopsTheProcess) {
  const std::string dir = TempDir("full");
  testing::FullDiskEnv disk;
  auto log = NewInfoLog(disk.env(), dir, rocksdb::InfoLogLevel::WARN_LEVEL);
  rocksdb::Log(rocksdb::InfoLogLevel::WARN_LEVEL, log, "before");
  disk.SetBudget(10);  // part of the next line fits
  for (int i = 0; i < 100; ++i) {
    rocksdb::Log(rocksdb::InfoLogLevel::ERROR_LEVEL, log, "while full %d", i);
    log->Flush();
  }
  EXPECT_GE(disk.failed_appends(), 100u);
  disk.Free();
  rocksdb::Log(rocksdb::InfoLogLevel::WARN_LEVEL, log, "after");
  ASSERT_TRUE(log->Close().ok());
  const std::string text = Contents(dir + "/LOG");
  EXPECT_NE(text.find("[WARN] before\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("while full"), std::string::npos) << text;
  EXPECT_NE(text.find("[WARN] after\n"), std::string::npos) << text;
}

TEST(InfoLogTest, WithoutALogFileLinesAreDropped) {
  const std::string dir = TempDir("none") + "/absent";
  auto log = NewInfoLog(rocksdb::Env::Default(), dir, rocksdb::InfoLogLevel::WARN_LEVEL);
  rocksdb::Log(rocksdb::InfoLogLevel::ERROR_LEVEL, log, "nowhere");
  EXPECT_TRUE(log->Close().ok());
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace grpo::store
