#include "reward/jsonl.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

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
  std::ifstream f(out);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(), "{\"reward\":1.0,\"rules\":{\"math\":1.0}}\n{\"reward\":0.0,\"rules\":{\"math\":0.0}}\n");
  auto strict = ScoreJsonlFile(*rules, in, out, true, 2);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find(":2:"), std::string::npos) << strict.status().message();
}

}  // namespace
}  // namespace grpo::reward
