#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/jsonl.h"
#include "tokenizer/prompt_template.h"

namespace grpo::tokenizer {
namespace {

// testdata/chat_expected.json: the real chat_template of each model rendered by jinja2 (as
// transformers does) for the same messages; see tools/tokenizer_render_chat.py.
TEST(ChatTemplate, MatchesJinjaRenderingOfTheRealTemplates) {
  auto in = JsonlReader::Open("tokenizer/testdata/chat_expected.json");
  ASSERT_TRUE(in.ok()) << "missing testdata: " << in.status();
  JsonlRecord record;
  int cases = 0;
  while ((*in)->Next(&record)) {
    ASSERT_TRUE(record.ok()) << record.status;
    const nlohmann::json& c = record.value;
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    ChatOptions options;
    options.add_generation_prompt = c["add_generation_prompt"];
    options.enable_thinking = c["enable_thinking"];
    auto format = ChatFormatFromName(c["format"].get<std::string>());
    ASSERT_TRUE(format.ok());
    auto got = RenderChat(*format, messages, options);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, c["expected"].get<std::string>()) << "line " << record.line;
    ++cases;
  }
  EXPECT_EQ(cases, 31);
}

TEST(ChatTemplate, Qwen25DefaultSystemPrompt) {
  std::vector<ChatMessage> m = {{"user", "What is 1+1?"}};
  EXPECT_EQ(*RenderChat(ChatFormat::kQwen25, m),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n");
  m = {{"system", "S"}, {"user", "Q"}, {"assistant", "A"}, {"user", "Q2"}};
  EXPECT_EQ(*RenderChat(ChatFormat::kQwen25, m, {.add_generation_prompt = false}),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
            "<|im_start|>assistant\nA<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n");
}

TEST(ChatTemplate, FormatsAndErrors) {
  EXPECT_EQ(*ChatFormatFromName("qwen3"), ChatFormat::kQwen3);
  EXPECT_FALSE(ChatFormatFromName("gpt2").ok());
  std::vector<ChatMessage> tool = {{"tool", "x"}};
  EXPECT_FALSE(RenderChat(ChatFormat::kQwen3, tool).ok());
  EXPECT_EQ(*DetectChatFormat("{{'<｜User｜>' + message['content']}}"), ChatFormat::kDeepSeekV3);
  EXPECT_EQ(*DetectChatFormat("<|im_start|> reasoning_content"), ChatFormat::kQwen3);
  EXPECT_EQ(*DetectChatFormat("<|im_start|>"), ChatFormat::kQwen25);
  EXPECT_FALSE(DetectChatFormat("{{ messages }}").ok());
}

TEST(PromptTemplate, R1Zero) {
  EXPECT_EQ(R1ZeroPrompt("What is 2+3?"),
            "A conversation between User and Assistant. The user asks a question, and the Assistant "
            "solves it. The assistant first thinks about the reasoning process in the mind and then "
            "provides the user with the answer. The reasoning process and answer are enclosed within "
            "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
            "process here </think> <answer> answer here </answer>. User: What is 2+3?. Assistant:");
}

TEST(PromptTemplate, NamedFields) {
  auto t = PromptTemplate::Parse("Using {nums}, make {target}. {{braces}} {target}!");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->fields(), (std::vector<std::string>{"nums", "target"}));
  EXPECT_EQ(*t->Render({{"nums", "[1, 2]"}, {"target", "3"}, {"unused", "x"}}),
            "Using [1, 2], make 3. {braces} 3!");
  EXPECT_FALSE(t->Render({{"nums", "1"}}).ok());
  EXPECT_FALSE(PromptTemplate::Parse("{open").ok());
  EXPECT_FALSE(PromptTemplate::Parse("lone } brace").ok());
  EXPECT_FALSE(PromptTemplate::Parse("{bad name}").ok());
  EXPECT_FALSE(PromptTemplate::Parse("{}").ok());
  EXPECT_EQ(*PromptTemplate::Parse("{question}")->Render({{"question", "Q"}}), "Q");
}

}  // namespace
}  // namespace grpo::tokenizer
