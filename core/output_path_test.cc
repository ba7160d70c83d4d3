#include "core/output_path.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace grpo {
namespace {

namespace fs = std::filesystem;

class OutputPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = fs::path(tmp != nullptr ? tmp : "/tmp") / ("output_path_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "store");
    std::ofstream(root_ / "store" / "CURRENT") << "MANIFEST-000001\n";
    std::ofstream(root_ / "in.jsonl") << "{}\n";
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string P(const std::string& rel) const { return (root_ / rel).string(); }

  fs::path root_;
};

TEST_F(OutputPathTest, OutputInsideAStoreBeingReadIsRefused) {
  for (const std::string& out : {P("store/CURRENT"), P("store/new.jsonl"), P("store"), P("store/"),
                                 P("store/../store/CURRENT"), P("store/sub/x.jsonl")}) {
    const absl::Status s = CheckOutputPath("--output", out, {{"--store", P("store")}});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << out;
    EXPECT_NE(std::string(s.message()).find("--output " + out + " is inside --store " + P("store") +
                                            ", which this command reads"),
              std::string::npos)
        << s;
  }
  // The store named with a trailing slash or a relative path is the same directory.
  EXPECT_FALSE(CheckOutputPath("--output", P("store/CURRENT"), {{"--store", P("store") + "/"}}).ok());
  EXPECT_TRUE(CheckOutputPath("--output", P("store.jsonl"), {{"--store", P("store")}}).ok());
  EXPECT_TRUE(CheckOutputPath("--output", P("out.jsonl"), {{"--store", P("store")}}).ok());
}

TEST_F(OutputPathTest, OutputEqualToAnInputFileIsRefused) {
  const absl::Status s = CheckOutputPath("--output", P("in.jsonl"), {{"--input", P("in.jsonl")}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()),
            "--output " + P("in.jsonl") + " is --input " + P("in.jsonl") + ", which this command reads; write it elsewhere");
  EXPECT_FALSE(CheckOutputPath("--output", P("./in.jsonl"), {{"--input", P("store/../in.jsonl")}}).ok());
  EXPECT_TRUE(CheckOutputPath("--output", P("in.jsonl.out"), {{"--input", P("in.jsonl")}}).ok());
}

TEST_F(OutputPathTest, LinksAreSeenThrough) {
  fs::create_symlink(root_ / "store", root_ / "link");
  EXPECT_FALSE(CheckOutputPath("--output", P("link/CURRENT"), {{"--store", P("store")}}).ok());
  EXPECT_FALSE(CheckOutputPath("--output", P("store/CURRENT"), {{"--store", P("link")}}).ok());
  fs::create_symlink(root_ / "in.jsonl", root_ / "in-link.jsonl");
  EXPECT_FALSE(CheckOutputPath("--output", P("in-link.jsonl"), {{"--input", P("in.jsonl")}}).ok());
  fs::create_hard_link(root_ / "in.jsonl", root_ / "hard.jsonl");
  EXPECT_FALSE(CheckOutputPath("--output", P("hard.jsonl"), {{"--input", P("in.jsonl")}}).ok());
}

TEST_F(OutputPathTest, RelativePathsAreResolvedFromTheWorkingDirectory) {
  const fs::path cwd = fs::current_path();
  fs::current_path(root_);
  const absl::Status s = CheckOutputPath("--output", "store/CURRENT", {{"--store", P("store")}});
  const absl::Status t = CheckOutputPath("--output", P("in.jsonl"), {{"--input", "in.jsonl"}});
  fs::current_path(cwd);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(t.ok());
}

TEST_F(OutputPathTest, StandardStreamsAndEmptyPathsNeverConflict) {
  EXPECT_TRUE(CheckOutputPath("--output", "-", {{"--input", "-"}}).ok());
  EXPECT_TRUE(CheckOutputPath("--output", "", {{"--input", P("in.jsonl")}}).ok());
  EXPECT_TRUE(CheckOutputPath("--output", P("out.jsonl"), {{"--input", "-"}, {"--rules", ""}}).ok());
}

TEST_F(OutputPathTest, IsSameOrInside) {
  EXPECT_TRUE(IsSameOrInside(P("store/CURRENT"), P("store")));
  EXPECT_TRUE(IsSameOrInside(P("store"), P("store/")));
  EXPECT_TRUE(IsSameOrInside(P("store/../store/a/b"), P("store")));
  EXPECT_FALSE(IsSameOrInside(P("store2/x"), P("store")));
  EXPECT_FALSE(IsSameOrInside(P("in.jsonl"), P("store")));
  EXPECT_FALSE(IsSameOrInside("-", P("store")));
  EXPECT_FALSE(IsSameOrInside("", P("store")));
}

TEST_F(OutputPathTest, EveryInputIsChecked) {
  const absl::Status s = CheckOutputPath("--output", P("store/x.jsonl"),
                                         {{"--input", P("in.jsonl")}, {"--model", P("store")}});
  EXPECT_NE(std::string(s.message()).find("inside --model"), std::string::npos) << s;
}

}  // namespace
}  // namespace grpo
