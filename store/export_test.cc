#include "store/export.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "core/file.h"
#include "core/jsonl.h"
#include "store/test_fixture.h"

namespace grpo::store {
namespace {

namespace fs = std::filesystem;

// Golden files live in store/testdata/. To regenerate after an intended change:
//   GRPO_UPDATE_GOLDEN=$PWD/store/testdata bazel-bin/store/export_test
std::string ReadGolden(const std::string& name) {
  return ReadFile("store/testdata/" + name).value_or("");
}

// A writer to a fresh file under the test's temporary directory.
std::unique_ptr<JsonlWriter> TempWriter(const std::string& path) {
  absl::StatusOr<std::unique_ptr<JsonlWriter>> w = JsonlWriter::Open(path);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

class ExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = (fs::path(tmp ? tmp : "/tmp") / "export_test_store").string();
    fs::remove_all(dir_);
    auto writer = TrajectoryStore::Open(dir_);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(testing::WriteDemoRun(**writer).ok());
  }

  // Exports with `o` and compares with the golden file; returns the stats.
  ExportStats Check(const std::string& golden, const ExportOptions& o) {
    auto store = TrajectoryStore::OpenReadOnly(dir_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    const std::string path = dir_ + ".out.jsonl";
    std::unique_ptr<JsonlWriter> out = TempWriter(path);
    ExportStats stats;
    absl::Status s = Export(**store, o, out.get(), &stats);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(out->Close().ok());
    const std::string text = ReadFile(path).value_or("");
    EXPECT_EQ(stats.bytes_out, text.size());
    if (const char* update = std::getenv("GRPO_UPDATE_GOLDEN")) {
      EXPECT_TRUE(WriteFileAtomic(std::string(update) + "/" + golden, text).ok());
    } else {
      EXPECT_EQ(text, ReadGolden(golden)) << "golden file " << golden;
    }
    const uint64_t in_range = o.first_step ? 6u : 12u;  // 6 samples per step
    EXPECT_EQ(stats.total, in_range);
    EXPECT_EQ(stats.scanned, in_range);
    uint64_t dropped = 0;
    for (uint64_t d : stats.dropped) dropped += d;
    EXPECT_EQ(stats.kept + dropped, stats.scanned);
    return stats;
  }

  static std::string dir_;
};
std::string ExportTest::dir_;

TEST_F(ExportTest, OpenAIAll) {
  ExportStats s = Check("openai_all.jsonl", {});
  EXPECT_EQ(s.kept, 11u);
  EXPECT_EQ(s.dropped[0], 1u);  // the aborted sample
}

TEST_F(ExportTest, OpenAISplitReasoningWithMetadata) {
  ExportOptions o;
  o.reasoning = Reasoning::kSplit;
  o.with_metadata = true;
  o.first_step = o.last_step = 1;
  ExportStats s = Check("openai_split_meta_step1.jsonl", o);
  EXPECT_EQ(s.kept, 6u);
}

TEST_F(ExportTest, ShareGPTCorrectOnly) {
  ExportOptions o;
  o.format = ExportFormat::kShareGPT;
  o.correct_only = true;
  ExportStats s = Check("sharegpt_correct_only.jsonl", o);
  EXPECT_EQ(s.kept, 5u);
  EXPECT_EQ(s.dropped[2], 1u);  // no_reward
  EXPECT_EQ(s.dropped[4], 5u);  // not_correct
}

TEST_F(ExportTest, PromptCompletionBestOfGroupDeduped) {
  ExportOptions o;
  o.format = ExportFormat::kPromptCompletion;
  o.best_of_group = true;
  o.dedupe = true;
  ExportStats s = Check("prompt_completion_best_dedupe.jsonl", o);
  // Best per group: 0/0/0 (tie with 0/0/1 -> lower index), 0/1/1 (only scored one left),
  // 1/0/0 (tie of 1.5 with 1/0/2; a duplicate of 0/0/0 -> dropped), 1/1/0.
  EXPECT_EQ(s.kept, 3u);
  EXPECT_EQ(s.dropped[7], 1u);  // duplicate
}

TEST_F(ExportTest, ShareGPTMinRewardMaxTokensNoTruncated) {
  ExportOptions o;
  o.format = ExportFormat::kShareGPT;
  o.min_reward = 0.5;
  o.max_tokens = 30;  // prompt is 5 tokens: drops the 40-token sample
  o.drop_truncated = true;
  o.reasoning = Reasoning::kSplit;
  ExportStats s = Check("sharegpt_min_reward_max_tokens.jsonl", o);
  EXPECT_EQ(s.dropped[1], 1u);  // truncated
  EXPECT_EQ(s.dropped[5], 1u);  // too_long
  EXPECT_EQ(s.kept, 6u);
}

TEST(SplitThinkTest, Forms) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(SplitThink("<think> a </think> b"), (P{"a", "b"}));
  EXPECT_EQ(SplitThink("pre <think>a</think>b"), (P{"a", "pre b"}));
  EXPECT_EQ(SplitThink("a</think>\nb"), (P{"a", "b"}));  // template opened the block
  EXPECT_EQ(SplitThink("no think"), (P{"", "no think"}));
  EXPECT_EQ(SplitThink("<think>unfinished"), (P{"", "<think>unfinished"}));
}

TEST(ExportErrorsTest, ForeignOrMissingRun) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = (fs::path(tmp ? tmp : "/tmp") / "export_errors_store").string();
  fs::remove_all(dir);
  auto writer = TrajectoryStore::Open(dir);
  ASSERT_TRUE(writer.ok());
  std::unique_ptr<JsonlWriter> out = TempWriter(dir + ".out.jsonl");
  ExportStats stats;
  absl::Status s = Export(**writer, {}, out.get(), &stats);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("holds no runs"), std::string::npos) << s.ToString();
  ASSERT_TRUE((*writer)->CreateRun(testing::DemoRunMetadata("a")).ok());
  ASSERT_TRUE((*writer)->CreateRun(testing::DemoRunMetadata("b")).ok());
  s = Export(**writer, {}, out.get(), &stats);
  EXPECT_NE(s.message().find("several runs (a, b)"), std::string::npos) << s.ToString();
  ExportOptions o;
  o.run = "c";
  s = Export(**writer, o, out.get(), &stats);
  EXPECT_NE(s.message().find("no run named 'c'"), std::string::npos) << s.ToString();
  EXPECT_EQ(ParseExportFormat("alpaca").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace grpo::store
