#include "store/export.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

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

// A multi-turn tool-use sample: the store keeps its environment spans (the loss mask) and turn
// texts, and the openai export writes the conversation as OpenAI messages (tool_calls, tool
// results) from which every turn of the stored sample is recovered; a single-turn sample of the
// same group stays one assistant message.
TEST(ExportToolUseTest, MultiTurnSampleRoundTripsThroughStoreAndOpenAIExport) {
  const std::string dir = testing::FreshPath("export_tool_use_store");
  auto store = TrajectoryStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->CreateRun(testing::DemoRunMetadata("tools")).ok());
  StepRecords rec;
  rec.step = 0;
  grpo::v1::PromptRecord p;
  p.set_prompt_index(0);
  p.set_group_id(7);
  p.set_prompt_text("Q:47+38");
  p.add_prompt_token_ids(1);
  p.set_answer("85");
  rec.prompts.push_back(p);
  const std::vector<std::string> turns = {"<think>add</think><tool_call>47+38</tool_call>", "<tool_result>85</tool_result>",
                                          "<tool_call>85*1</tool_call>", "<tool_result>85</tool_result>",
                                          "<answer>85</answer>"};
  grpo::v1::Trajectory multi;
  multi.set_group_id(7);
  multi.set_sample_index(0);
  grpo::v1::Sample* s = multi.mutable_sample();
  s->set_sample_index(0);
  s->set_finish_reason(grpo::v1::FINISH_REASON_STOP);
  std::string text;
  for (const std::string& turn : turns) text += turn;
  s->set_text(text);
  for (size_t i = 0; i < text.size(); ++i) {  // one token per byte
    s->add_token_ids(static_cast<unsigned char>(text[i]));
    s->add_logprobs(-0.5f);
  }
  s->add_weight_versions()->set_first_token(0);
  uint32_t at = 0;
  const char* calls[] = {"<tool_call>47+38</tool_call>", "<tool_call>85*1</tool_call>"};
  const char* arguments[] = {R"({"expression":"47+38"})", R"({"expression":"85*1"})"};
  for (int k = 0; k < 2; ++k) {
    at += static_cast<uint32_t>(turns[2 * k].size());
    grpo::v1::EnvironmentSpan* span = s->add_environment_spans();
    span->set_first_token(at);
    span->set_num_tokens(static_cast<uint32_t>(turns[2 * k + 1].size()));
    span->set_tool("calculator");
    span->set_call(calls[k]);
    span->set_arguments(arguments[k]);
    span->set_output("85");
    span->set_result_start("<tool_result>");
    span->set_result_end("</tool_result>");
    for (uint32_t i = 0; i < span->num_tokens(); ++i) s->set_logprobs(at + i, 0.0f);
    at += span->num_tokens();
  }
  for (const std::string& turn : turns) s->add_turn_texts(turn);
  multi.mutable_reward()->set_reward(1.0);
  grpo::v1::Trajectory single;
  single.set_group_id(7);
  single.set_sample_index(1);
  single.mutable_sample()->set_sample_index(1);
  single.mutable_sample()->set_finish_reason(grpo::v1::FINISH_REASON_STOP);
  single.mutable_sample()->set_text("<answer>84</answer>");
  single.mutable_sample()->add_token_ids(5);
  single.mutable_sample()->add_logprobs(-1.0f);
  single.mutable_sample()->add_weight_versions()->set_first_token(0);
  single.mutable_reward()->set_reward(0.0);
  rec.trajectories = {multi, single};
  ASSERT_TRUE((*store)->WriteStep("tools", &rec).ok());

  // Store round trip: spans (and with them the loss mask) and turn texts as written.
  auto back = (*store)->GetSample("tools", 0, 0, 0);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sample().environment_spans_size(), 2);
  EXPECT_EQ(back->sample().SerializeAsString(), multi.sample().SerializeAsString());

  // Export.
  const std::string path = dir + ".out.jsonl";
  std::unique_ptr<JsonlWriter> out = TempWriter(path);
  ExportStats stats;
  ASSERT_TRUE(Export(**store, {}, out.get(), &stats).ok());
  ASSERT_TRUE(out->Close().ok());
  EXPECT_EQ(stats.kept, 2u);
  const std::string lines = ReadFile(path).value_or("");
  const size_t nl = lines.find('\n');
  ASSERT_NE(nl, std::string::npos);
  const nlohmann::json m = nlohmann::json::parse(lines.substr(0, nl))["messages"];
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m[0], (nlohmann::json{{"role", "user"}, {"content", "Q:47+38"}}));
  // Every turn comes back: assistant content + its call = the model turn, tool content = the
  // output, in the result markers = the environment turn; the arguments are the call's JSON.
  for (int k = 0; k < 2; ++k) {
    const nlohmann::json& a = m[1 + 2 * k];
    const nlohmann::json& t = m[2 + 2 * k];
    EXPECT_EQ(a["role"], "assistant");
    EXPECT_EQ(a["content"].get<std::string>() + calls[k], turns[2 * k]);
    ASSERT_EQ(a["tool_calls"].size(), 1u);
    EXPECT_EQ(a["tool_calls"][0]["type"], "function");
    EXPECT_EQ(a["tool_calls"][0]["function"]["name"], "calculator");
    EXPECT_EQ(nlohmann::json::parse(a["tool_calls"][0]["function"]["arguments"].get<std::string>()),
              nlohmann::json::parse(arguments[k]));
    EXPECT_EQ(t["role"], "tool");
    EXPECT_EQ(t["tool_call_id"], a["tool_calls"][0]["id"]);
    EXPECT_EQ("<tool_result>" + t["content"].get<std::string>() + "</tool_result>", turns[2 * k + 1]);
  }
  EXPECT_NE(m[1]["tool_calls"][0]["id"], m[3]["tool_calls"][0]["id"]);
  EXPECT_EQ(m[5], (nlohmann::json{{"role", "assistant"}, {"content", "<answer>85</answer>"}}));
  const nlohmann::json one = nlohmann::json::parse(lines.substr(nl + 1))["messages"];
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[1], (nlohmann::json{{"role", "assistant"}, {"content", "<answer>84</answer>"}}));

  // A sample whose turn texts do not match its spans is reported, not guessed at.
  grpo::v1::Sample broken = multi.sample();
  broken.mutable_turn_texts()->RemoveLast();
  EXPECT_EQ(ToolUseMessages(broken, Reasoning::kInline).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace grpo::store
