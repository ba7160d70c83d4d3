#include "core/input_tally.h"

#include <string>

#include <gtest/gtest.h>

namespace grpo {
namespace {

TEST(InputTallyTest, EmptyInputIsNotAFailure) {
  InputTally t;
  EXPECT_EQ(t.total(), 0);
  EXPECT_EQ(t.Summary(), "0 lines: 0 used");
  EXPECT_TRUE(t.RequireSome().ok());
}

TEST(InputTallyTest, CountsByReasonWithTheFirstMessage) {
  InputTally t;
  t.Used();
  t.Skip("not a JSON object", "in.jsonl:2: not a JSON object");
  t.Used(2);
  t.Skip("too long", "in.jsonl:4: 300 tokens");
  t.Skip("not a JSON object", "in.jsonl:5: not a JSON object");
  EXPECT_EQ(t.used(), 3);
  EXPECT_EQ(t.skipped(), 3);
  EXPECT_EQ(t.total(), 6);
  EXPECT_EQ(t.skipped("not a JSON object"), 2);
  EXPECT_EQ(t.skipped("too long"), 1);
  EXPECT_EQ(t.skipped("never"), 0);
  EXPECT_EQ(t.Summary("lines", "encoded"),
            "6 lines: 3 encoded, 3 skipped (2 not a JSON object, first in.jsonl:2: not a JSON object; "
            "1 too long, first in.jsonl:4: 300 tokens)");
  EXPECT_TRUE(t.RequireSome().ok());
  EXPECT_EQ(t.Summary("lines", "scored", "not scored").substr(0, 37), "6 lines: 3 scored, 3 not scored (2 no");
}

TEST(InputTallyTest, AllSkippedFailsNamingTheReasons) {
  InputTally t;
  t.Skip("does not fit the model", "p.jsonl:1: prompt (3 tokens) + max_new_tokens (256) exceeds 128");
  t.Skip("does not fit the model", "p.jsonl:2: prompt (2 tokens) + max_new_tokens (256) exceeds 128");
  const absl::Status s = t.RequireSome("prompts");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()),
            "nothing to output: none of the 2 prompts could be used (2 does not fit the model, first p.jsonl:1: "
            "prompt (3 tokens) + max_new_tokens (256) exceeds 128)");
}

TEST(InputTallyTest, LongFirstMessagesAreCut) {
  InputTally t;
  t.Skip("bad", std::string(1000, 'x'));
  const std::string s = t.Summary();
  EXPECT_NE(s.find(std::string(300, 'x') + "...)"), std::string::npos);
  EXPECT_EQ(s.find(std::string(301, 'x')), std::string::npos);
}

}  // namespace
}  // namespace grpo
