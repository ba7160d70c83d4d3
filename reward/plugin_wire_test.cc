#include "reward/plugin_wire.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace grpo::reward::wire {
namespace {

TEST(PluginWire, RequestRoundTrip) {
  RewardItem it;
  it.completion = std::string("a\0b", 3);
  it.answer = "42";
  it.prompt = "p";
  it.task = "math";
  it.meta = {{"k", "v"}, {"n", "[1,2]"}};
  auto back = DecodeRequest(EncodeRequest(it));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->completion, it.completion);
  EXPECT_EQ(back->answer, "42");
  EXPECT_EQ(back->task, "math");
  EXPECT_EQ(back->meta, it.meta);
}

TEST(PluginWire, ReplyRoundTripAndMalformed) {
  Reply r{ReplyKind::kItemError, 0.25, "bad gold"};
  auto back = DecodeReply(EncodeReply(r));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->kind, ReplyKind::kItemError);
  EXPECT_EQ(back->score, 0.25);
  EXPECT_EQ(back->message, "bad gold");
  EXPECT_FALSE(DecodeReply("").ok());
  EXPECT_FALSE(DecodeReply(std::string(1, '\x07') + std::string(8, '\0') + std::string(4, '\0')).ok());
  std::string truncated = EncodeRequest(RewardItem{});
  truncated.pop_back();
  EXPECT_FALSE(DecodeRequest(truncated).ok());
  EXPECT_FALSE(DecodeRequest(EncodeRequest(RewardItem{}) + "x").ok());
}

TEST(PluginWire, FramesOverAPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_TRUE(WriteAll(fds[1], Frame("hello")).ok());
  ASSERT_TRUE(WriteAll(fds[1], Frame("")).ok());
  close(fds[1]);
  EXPECT_EQ(*ReadFrame(fds[0]), "hello");
  EXPECT_EQ(*ReadFrame(fds[0]), "");
  EXPECT_EQ(ReadFrame(fds[0]).status().code(), absl::StatusCode::kNotFound);  // clean end of file
  close(fds[0]);
}

}  // namespace
}  // namespace grpo::reward::wire
