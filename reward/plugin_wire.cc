#include "reward/plugin_wire.h"

#include <errno.h>
#include <unistd.h>

#include <cstring>

namespace grpo::reward::wire {
namespace {

void PutU32(std::string* out, uint32_t v) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
               static_cast<char>(v >> 24)};
  out->append(b, 4);
}

void PutStr(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool U32(uint32_t* v) {
    if (s_.size() - p_ < 4) return false;
    const unsigned char* b = reinterpret_cast<const unsigned char*>(s_.data() + p_);
    *v = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
    p_ += 4;
    return true;
  }
  bool Str(std::string* out) {
    uint32_t n;
    if (!U32(&n) || s_.size() - p_ < n) return false;
    out->assign(s_.data() + p_, n);
    p_ += n;
    return true;
  }
  bool Bytes(void* dst, size_t n) {
    if (s_.size() - p_ < n) return false;
    std::memcpy(dst, s_.data() + p_, n);
    p_ += n;
    return true;
  }
  bool done() const { return p_ == s_.size(); }

 private:
  std::string_view s_;
  size_t p_ = 0;
};

}  // namespace

std::string EncodeRequest(const RewardItem& item) {
  std::string out;
  out.reserve(item.completion.size() + item.answer.size() + item.prompt.size() + 64);
  PutStr(&out, item.completion);
  PutStr(&out, item.answer);
  PutStr(&out, item.prompt);
  PutStr(&out, item.task);
  PutU32(&out, static_cast<uint32_t>(item.meta.size()));
  for (const auto& [k, v] : item.meta) {
    PutStr(&out, k);
    PutStr(&out, v);
  }
  return out;
}

absl::StatusOr<RewardItem> DecodeRequest(std::string_view payload) {
  Reader r(payload);
  RewardItem item;
  uint32_t n;
  if (!r.Str(&item.completion) || !r.Str(&item.answer) || !r.Str(&item.prompt) ||
      !r.Str(&item.task) || !r.U32(&n))
    return absl::DataLossError("malformed plugin request");
  for (uint32_t i = 0; i < n; ++i) {
    std::string k, v;
    if (!r.Str(&k) || !r.Str(&v)) return absl::DataLossError("malformed plugin request meta");
    item.meta[std::move(k)] = std::move(v);
  }
  if (!r.done()) return absl::DataLossError("trailing bytes in plugin request");
  return item;
}

std::string EncodeReply(const Reply& reply) {
  std::string out;
  out.push_back(static_cast<char>(reply.kind));
  char b[8];
  std::memcpy(b, &reply.score, 8);
  out.append(b, 8);
  PutStr(&out, reply.message);
  return out;
}

absl::StatusOr<Reply> DecodeReply(std::string_view payload) {
  Reader r(payload);
  Reply reply;
  uint8_t kind;
  if (!r.Bytes(&kind, 1) || kind > 2 || !r.Bytes(&reply.score, 8) || !r.Str(&reply.message) ||
      !r.done())
    return absl::DataLossError("malformed plugin reply");
  reply.kind = static_cast<ReplyKind>(kind);
  return reply;
}

std::string Frame(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 4);
  PutU32(&out, static_cast<uint32_t>(payload.size()));
  out.append(payload.data(), payload.size());
  return out;
}

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return grpo::ErrnoError("plugin pipe write", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::Status();
}

namespace {
absl::Status ReadExactly(int fd, char* buf, size_t n, bool* eof_at_start) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return grpo::ErrnoError("plugin pipe read", errno);
    }
    if (r == 0) {
      if (got == 0 && eof_at_start) *eof_at_start = true;
      return absl::NotFoundError("end of file");
    }
    got += static_cast<size_t>(r);
  }
  return absl::Status();
}
}  // namespace

absl::StatusOr<std::string> ReadFrame(int fd) {
  char hdr[4];
  bool eof = false;
  absl::Status st = ReadExactly(fd, hdr, 4, &eof);
  if (!st.ok()) return st;
  uint32_t n = static_cast<unsigned char>(hdr[0]) | (static_cast<unsigned char>(hdr[1]) << 8) |
               (static_cast<unsigned char>(hdr[2]) << 16) |
               (static_cast<uint32_t>(static_cast<unsigned char>(hdr[3])) << 24);
  if (n > kMaxFrameBytes) return absl::DataLossError("plugin frame too large");
  std::string payload(n, '\0');
  st = ReadExactly(fd, payload.data(), n, nullptr);
  if (!st.ok()) return st.code() == absl::StatusCode::kNotFound ? absl::DataLossError("truncated frame") : st;
  return payload;
}

}  // namespace grpo::reward::wire
