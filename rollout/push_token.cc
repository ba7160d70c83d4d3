#include "rollout/push_token.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace grpo {

namespace {
constexpr size_t kMinTokenChars = 16, kMaxTokenChars = 1024;
}  // namespace

absl::Status ValidatePushToken(absl::string_view token) {
  if (token.size() < kMinTokenChars || token.size() > kMaxTokenChars) {
    return absl::InvalidArgumentError(absl::StrCat("a push token has ", kMinTokenChars, " to ", kMaxTokenChars,
                                                   " characters; this one has ", token.size()));
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "a push token is printable ASCII without spaces; this one has another character");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadPushTokenFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoError("push token file " + path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError("push token file " + path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError("push token file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    return absl::PermissionDeniedError("push token file " + path +
                                       " is readable or writable by others than its owner; chmod 600 " + path);
  }
  std::string token(kMaxTokenChars + 64, '\0');  // room for trailing whitespace; more is refused
  size_t n = 0;
  while (n < token.size()) {
    const ssize_t r = read(fd, token.data() + n, token.size() - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      close(fd);
      return ErrnoError("push token file " + path, err);
    }
    if (r == 0) break;
    n += static_cast<size_t>(r);
  }
  close(fd);
  token.resize(n);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  GRPO_RETURN_IF_ERROR(grpo::WithContext(ValidatePushToken(token), "push token file " + path));
  return token;
}

absl::StatusOr<std::string> PushTokenFromFileOrEnv(const std::string& path) {
  if (!path.empty()) return ReadPushTokenFile(path);
  const char* env = std::getenv(kPushTokenFileEnv);
  if (env == nullptr || *env == '\0') return std::string();
  absl::StatusOr<std::string> token = ReadPushTokenFile(env);
  if (!token.ok()) return grpo::WithContext(token.status(), std::string("$") + kPushTokenFileEnv);
  return token;
}

bool PushTokensEqual(absl::string_view a, absl::string_view b) {
  // Every byte of the longer one is read whatever differs, so the time reveals only the lengths.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace grpo
