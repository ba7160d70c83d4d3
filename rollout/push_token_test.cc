// Push tokens: the file must be its owner's alone and hold a valid token; the environment names
// the file when no path is given; comparison is exact.
#include "rollout/push_token.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace grpo {
namespace {

const std::string kToken = "0123456789abcdef0123456789abcdef";

std::string WriteToken(const std::string& name, const std::string& contents, mode_t mode) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path) << contents;
  EXPECT_EQ(chmod(path.c_str(), mode), 0);
  return path;
}

TEST(PushToken, ValidTokens) {
  EXPECT_TRUE(ValidatePushToken(kToken).ok());
  EXPECT_TRUE(ValidatePushToken(std::string(16, 'x')).ok());
  EXPECT_TRUE(ValidatePushToken(std::string(1024, '~')).ok());
  for (const std::string& bad : {std::string(), std::string(15, 'x'), std::string(1025, 'x'), kToken + " x",
                                kToken + "\n" + kToken, kToken + "\x7f", kToken + "\xc3\xa9"}) {
    const absl::Status s = ValidatePushToken(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    if (bad.size() >= 16) {
      EXPECT_EQ(s.message().find(bad.substr(0, 16)), std::string::npos) << "quotes the token";
    }
  }
}

TEST(PushToken, ReadsAnOwnerOnlyFile) {
  auto t = ReadPushTokenFile(WriteToken("ok", kToken + "\n", 0600));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, kToken);
  t = ReadPushTokenFile(WriteToken("read-only", kToken, 0400));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, kToken);
}

TEST(PushToken, RefusesFilesOthersCanReadAndBadContents) {
  for (mode_t mode : {0644, 0640, 0604, 0620, 0602}) {
    const std::string path = WriteToken("shared", kToken, mode);
    auto t = ReadPushTokenFile(path);
    ASSERT_FALSE(t.ok()) << "mode " << std::oct << mode;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_NE(t.status().message().find("chmod 600 " + path), std::string::npos) << t.status();
  }
  EXPECT_EQ(ReadPushTokenFile(WriteToken("empty", "\n", 0600)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadPushTokenFile(WriteToken("short", "secret\n", 0600)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadPushTokenFile(WriteToken("long", std::string(5000, 'a'), 0600)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadPushTokenFile(std::string(std::getenv("TEST_TMPDIR")) + "/missing").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadPushTokenFile(std::getenv("TEST_TMPDIR")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PushToken, FromFileOrEnvironment) {
  const std::string a = WriteToken("a", kToken, 0600);
  const std::string b = WriteToken("b", std::string(20, 'b'), 0600);
  unsetenv(kPushTokenFileEnv);
  auto none = PushTokenFromFileOrEnv("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
  setenv(kPushTokenFileEnv, b.c_str(), 1);
  EXPECT_EQ(PushTokenFromFileOrEnv("").value_or("?"), std::string(20, 'b'));
  EXPECT_EQ(PushTokenFromFileOrEnv(a).value_or("?"), kToken);  // a path given wins
  setenv(kPushTokenFileEnv, (b + ".missing").c_str(), 1);
  auto missing = PushTokenFromFileOrEnv("");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("$GRPO_PUSH_TOKEN_FILE"), std::string::npos) << missing.status();
  unsetenv(kPushTokenFileEnv);
}

TEST(PushToken, EqualityIsExact) {
  EXPECT_TRUE(PushTokensEqual(kToken, kToken));
  EXPECT_FALSE(PushTokensEqual(kToken, kToken.substr(0, 31)));
  EXPECT_FALSE(PushTokensEqual(kToken, kToken + "0"));
  EXPECT_FALSE(PushTokensEqual(kToken, ""));
  EXPECT_TRUE(PushTokensEqual("", ""));
  std::string flipped = kToken;
  flipped[31] ^= 1;
  EXPECT_FALSE(PushTokensEqual(kToken, flipped));
  flipped = kToken;
  flipped[0] ^= 0x80;
  EXPECT_FALSE(PushTokensEqual(kToken, flipped));
}

}  // namespace
}  // namespace grpo
