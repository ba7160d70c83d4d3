#include "core/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>

namespace grpo {
namespace {

absl::StatusOr<int> ParsePositive(int x) {
  if (x <= 0) return absl::InvalidArgumentError("x must be positive, got " + std::to_string(x));
  return x;
}

absl::StatusOr<int> Doubled(int x) {
  GRPO_ASSIGN_OR_RETURN(int v, ParsePositive(x));
  return 2 * v;
}

absl::Status Chain(int x) {
  GRPO_RETURN_IF_ERROR(ParsePositive(x).status());
  return absl::OkStatus();
}

TEST(Status, WithContextKeepsCodeAndPayload) {
  absl::Status s = absl::DataLossError("bad header");
  s.SetPayload("grpo/test", absl::Cord("p"));
  const absl::Status c = WithContext(s, "model.safetensors");
  EXPECT_EQ(c.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(c.message(), "model.safetensors: bad header");
  ASSERT_TRUE(c.GetPayload("grpo/test").has_value());
  EXPECT_EQ(std::string(*c.GetPayload("grpo/test")), "p");
  EXPECT_TRUE(WithContext(absl::OkStatus(), "x").ok());
}

TEST(Status, ErrnoErrorClassifiesTheCode) {
  const absl::Status missing = ErrnoError("open a.txt", ENOENT);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "open a.txt: No such file or directory");
  EXPECT_EQ(ErrnoError("write b", ENOSPC).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoError("open c", EACCES).code(), absl::StatusCode::kPermissionDenied);
}

TEST(StatusOr, ValueOrError) {
  absl::StatusOr<int> ok = Doubled(4);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 8);
  absl::StatusOr<int> bad = Doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "x must be positive, got -1");
  EXPECT_TRUE(Chain(1).ok());
  EXPECT_EQ(Chain(0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusOr, MoveOnlyValues) {
  absl::StatusOr<std::unique_ptr<int>> r(std::make_unique<int>(5));
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

TEST(StatusOr, AccessingErrorValueThrowsWithTheError) {
  absl::StatusOr<int> bad = absl::NotFoundError("no tensor 'x'");
  try {
    (void)bad.value();
    FAIL() << "value() of an error returned";
  } catch (const absl::BadStatusOrAccess& e) {
    EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("no tensor 'x'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace grpo
