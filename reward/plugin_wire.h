// The pipe protocol between a plugin host and its worker process (reward/plugin_host.h).
//
// Frames are [u32 little-endian length][payload], at most kMaxFrameBytes.
//  request payload:  strings completion, answer, prompt, task, u32 meta count, then key/value
//                    strings; each string is [u32 length][bytes].
//  response payload: [u8 kind: 0 ok, 1 item error, 2 fatal][f64 score][string message].
// The first response, sent unprompted after startup, is the hello: kind 0 with the plugin's
// "name\tdescription", or kind 2 with why loading failed.
#ifndef GRPO_REWARD_PLUGIN_WIRE_H_
#define GRPO_REWARD_PLUGIN_WIRE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"
#include "reward/rule.h"

namespace grpo::reward::wire {

inline constexpr size_t kMaxFrameBytes = 64u << 20;

enum class ReplyKind : uint8_t { kOk = 0, kItemError = 1, kFatal = 2 };

struct Reply {
  ReplyKind kind = ReplyKind::kOk;
  double score = 0;
  std::string message;
};

std::string EncodeRequest(const RewardItem& item);
absl::StatusOr<RewardItem> DecodeRequest(std::string_view payload);
std::string EncodeReply(const Reply& reply);
absl::StatusOr<Reply> DecodeReply(std::string_view payload);
// Prefixes the length.
std::string Frame(std::string_view payload);

// Blocking whole-frame I/O on a file descriptor (for the worker side).
absl::Status WriteAll(int fd, std::string_view data);
// Reads one frame; NotFound at a clean end of file.
absl::StatusOr<std::string> ReadFrame(int fd);

}  // namespace grpo::reward::wire

#endif  // GRPO_REWARD_PLUGIN_WIRE_H_
