#include "reward/jsonl.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/config.h"
#include "core/file.h"

namespace grpo::reward {
namespace {

TEST(ParseJsonlItem, FieldsAndMeta) {
  auto r = ParseJsonlItem(R"({"id":"7","completion":"c","answer":"a","prompt":"p","task":"t",
                              "meta":{"target":24,"numbers":[1,2],"s":"x"},"extra":1})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->has_id);
  EXPECT_EQ(r->id, "7");
  EXPECT_EQ(r->item.completion, "c");
  EXPECT_EQ(r->item.meta.at("target"), "24");
  EXPECT_EQ(r->item.meta.at("numbers"), "[1,2]");
  EXPECT_EQ(r->item.meta.at("s"), "x");
}

TEST(ParseJsonlItem, BadLines) {
  EXPECT_FALSE(ParseJsonlItem("{").ok());
  EXPECT_FALSE(ParseJsonlItem("[1]").ok());
  EXPECT_FALSE(ParseJsonlItem(R"({"completion": 5})").ok());
  EXPECT_FALSE(ParseJsonlItem(R"({"meta": [1]})").ok());
  EXPECT_TRUE(ParseJsonlItem(R"({})").ok());
}

TEST(FormatJsonlResult, RewardXorError) {
  JsonlItem in;
  ItemResult ok;
  ok.reward = 1.5;
  ok.rules.push_back({"acc", 1.0, 1.0, "", ""});
  EXPECT_EQ(FormatJsonlResult(in, ok), R"({"reward":1.5,"rules":{"acc":1.0}})");
  ItemResult bad;
  bad.error = "acc: boom";
  bad.rules.push_back({"acc", 0, 1.0, "boom", ""});
  in.has_id = true;
  in.id = "x";
  EXPECT_EQ(FormatJsonlResult(in, bad), R"({"error":"acc: boom","id":"x","rules":{"acc":null}})");
}

TEST(ScoreJsonlFile, SkipsBadLinesOrFailsWhenStrict) {
  std::string dir = ::testing::TempDir();
  std::string in = dir + "/in.jsonl", out = dir + "/out.jsonl";
  {
    std::ofstream f(in);
    f << R"({"completion":"\\boxed{2}","answer":"2"})" << "\n"
      << "not json\n\n"
      << R"({"completion":"\\boxed{3}","answer":"2"})" << "\n";
  }
  auto rules = RuleSet::Single("math");
  ASSERT_TRUE(rules.ok());
  auto stats = ScoreJsonlFile(*rules, in, out, false, 2);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->lines, 3u);
  EXPECT_EQ(stats->bad_lines, 1u);
  EXPECT_EQ(stats->scored, 2u);
  EXPECT_EQ(*ReadFile(out), "{\"reward\":1.0,\"rules\":{\"math\":1.0}}\n{\"reward\":0.0,\"rules\":{\"math\":0.0}}\n");
  auto strict = ScoreJsonlFile(*rules, in, out, true, 2);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find(":2:"), std::string::npos) << strict.status().message();
  // The failed run left the earlier output whole (the output is replaced atomically).
  EXPECT_EQ(*ReadFile(out), "{\"reward\":1.0,\"rules\":{\"math\":1.0}}\n{\"reward\":0.0,\"rules\":{\"math\":0.0}}\n");
  auto missing_dir = ScoreJsonlFile(*rules, in, dir + "/no/such/out.jsonl", false, 2);
  EXPECT_EQ(missing_dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(stats->tally.used(), 2);
  EXPECT_EQ(stats->tally.skipped("bad line"), 1);
}

// Issue 19, class 6: a file of which nothing could be scored fails, says why, and leaves the
// output as it was; item errors are counted by reason.
TEST(ScoreJsonlFile, NothingScoredFails) {
  std::string dir = ::testing::TempDir();
  std::string in = dir + "/errors.jsonl", out = dir + "/errors.out.jsonl";
  {
    std::ofstream f(in);
    f << R"({"completion":"x","task":"poetry"})" << "\n"
      << "[1]\n"
      << R"({"completion":"y","task":"prose"})" << "\n";
  }
  ASSERT_TRUE(WriteFileAtomic(out, "earlier\n").ok());
  auto config = Config::Parse("rules:\n  - {type: math, tasks: [math]}\n", "rules.yaml");
  ASSERT_TRUE(config.ok());
  auto rules = RuleSet::FromConfig(*config, {});
  ASSERT_TRUE(rules.ok());
  auto stats = ScoreJsonlFile(*rules, in, out, false, 2);
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string m(stats.status().message());
  EXPECT_NE(m.find("none of the 3 lines could be used"), std::string::npos) << m;
  EXPECT_NE(m.find("2 error: unknown task, first " + in + ":1: unknown task 'poetry'"), std::string::npos) << m;
  EXPECT_NE(m.find("1 bad line, first " + in + ":2: not a JSON object"), std::string::npos) << m;
  EXPECT_EQ(*ReadFile(out), "earlier\n");

  // One item scored is output: the errors are counted beside it.
  {
    std::ofstream f(in, std::ios::app);
    f << R"({"completion":"\\boxed{2}","answer":"2","task":"math"})" << "\n";
  }
  auto some = ScoreJsonlFile(*rules, in, out, false, 2);
  ASSERT_TRUE(some.ok()) << some.status();
  const std::string summary = some->tally.Summary("lines", "scored", "not scored");
  EXPECT_EQ(summary.substr(0, 33), "4 lines: 1 scored, 3 not scored (") << summary;
  EXPECT_NE(summary.find("2 error: unknown task"), std::string::npos) << summary;
  EXPECT_EQ(some->item_errors, 2u);
}

}  // namespace
}  // namespace grpo::reward
