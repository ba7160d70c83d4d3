#include "tokenizer/builtin.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace grpo::tokenizer {
namespace {

TEST(BuiltinTokenizer, BytesR1EncodesTagsAsOneTokenAndCharactersAsBytes) {
  auto tok = BuiltinTokenizer("bytes-r1");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto ids = tok->Encode("Q:7+8\n<think>7+8=15</think><answer>15</answer><|endoftext|>");
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  const std::vector<int32_t> want = {'Q', ':', '7', '+', '8', '\n', 257, '7', '+', '8', '=', '1',
                                     '5', 258, 259, '1', '5', 260, 256};
  EXPECT_EQ(*ids, want);
  auto text = tok->Decode(*ids);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "Q:7+8\n<think>7+8=15</think><answer>15</answer><|endoftext|>");
  auto skipped = tok->Decode(*ids, {.skip_special_tokens = true});
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, "Q:7+8\n<think>7+8=15</think><answer>15</answer>");
  // Non-ASCII text is its UTF-8 bytes.
  auto utf8 = tok->Encode("é");
  ASSERT_TRUE(utf8.ok());
  EXPECT_EQ(*utf8, (std::vector<int32_t>{0xC3, 0xA9}));
}

TEST(BuiltinTokenizer, WrittenFilesLoadBack) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "builtin_tok";
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteBuiltinTokenizer("bytes-r1", dir.string()).ok());
  auto loaded = Tokenizer::Load(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  auto ids = loaded->Encode("<answer>42</answer>");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{259, '4', '2', 260}));
}

TEST(BuiltinTokenizer, UnknownNameIsNamed) {
  auto tok = BuiltinTokenizer("nope");
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("bytes-r1"), std::string::npos);
  EXPECT_FALSE(WriteBuiltinTokenizer("nope", ::testing::TempDir()).ok());
}

}  // namespace
}  // namespace grpo::tokenizer
