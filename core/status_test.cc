#include "core/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>

namespace grpo {
namespace {

Result<int> ParsePositive(int x) {
  if (x <= 0) return Status::InvalidArgument("x must be positive, got " + std::to_string(x));
  return x;
}

Result<int> Doubled(int x) {
  GRPO_ASSIGN_OR_RETURN(int v, ParsePositive(x));
  return 2 * v;
}

Status Chain(int x) {
  GRPO_RETURN_IF_ERROR(ParsePositive(x).status());
  return Status::Ok();
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status().ok());
  EXPECT_EQ(Status().ToString(), "ok");
  const Status s = Status::Corruption("bad header");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.ToString(), "corruption: bad header");
  EXPECT_EQ(s.WithContext("model.safetensors").ToString(), "corruption: model.safetensors: bad header");
  EXPECT_TRUE(Status().WithContext("x").ok());
  EXPECT_EQ(Status::FromErrno("open a.txt", ENOENT).ToString(),
            "io error: open a.txt: No such file or directory");
}

TEST(Result, ValueOrError) {
  Result<int> ok = Doubled(4);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 8);
  Result<int> bad = Doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "x must be positive, got -1");
  EXPECT_TRUE(Chain(1).ok());
  EXPECT_EQ(Chain(0).code(), StatusCode::kInvalidArgument);
}

TEST(Result, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(5));
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

TEST(ResultDeathTest, AccessingErrorValueAborts) {
  Result<int> bad = Status::NotFound("no tensor 'x'");
  EXPECT_DEATH((void)*bad, "no tensor 'x'");
}

}  // namespace
}  // namespace grpo
