// The per-job secret that authorizes weight pushes (RolloutService.UpdateWeights;
// docs/security.md).
//
// Any process that can reach a rollout server's port could otherwise replace the policy it
// serves. So a server started with a token takes a weight update only from a caller that sends
// the same token as gRPC metadata kPushTokenMetadataKey (learner/weight_push.h does), compared
// in constant time; a server without one refuses every push unless it was started with
// RolloutServeOptions::allow_unauthenticated_push (local testing).
//
// The token lives in a file only its owner may read: `grpo submit` jobs write a fresh random
// one per attempt to <job>/rendezvous/push_token (mode 0600) and export its path as
// $GRPO_PUSH_TOKEN_FILE to every role (deploy/README.md), so the learner and the servers read the
// same file. By hand: `(umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > token)`.
//
//  - ValidatePushToken: 16 to 1024 characters, each printable ASCII other than space (what gRPC
//    metadata values may carry). InvalidArgument otherwise (the message never quotes the token).
//  - ReadPushTokenFile: the token in `path`, trailing whitespace (the newline) removed. Errors:
//    the file cannot be read (its errno), is not a regular file, is readable or writable by group
//    or others (PermissionDenied: "chmod 600 PATH"), or holds no valid token.
//  - PushTokenFromFileOrEnv: ReadPushTokenFile(path), or when `path` is empty the file
//    $GRPO_PUSH_TOKEN_FILE names, or when that is unset or empty "" (no token).
//  - PushTokensEqual: whether two tokens are equal, in time that depends only on their lengths.
#ifndef GRPO_ROLLOUT_PUSH_TOKEN_H_
#define GRPO_ROLLOUT_PUSH_TOKEN_H_

#include <string>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace grpo {

inline constexpr char kPushTokenMetadataKey[] = "x-grpo-push-token";
inline constexpr char kPushTokenFileEnv[] = "GRPO_PUSH_TOKEN_FILE";

absl::Status ValidatePushToken(absl::string_view token);
absl::StatusOr<std::string> ReadPushTokenFile(const std::string& path);
absl::StatusOr<std::string> PushTokenFromFileOrEnv(const std::string& path);
bool PushTokensEqual(absl::string_view a, absl::string_view b);

}  // namespace grpo

#endif  // GRPO_ROLLOUT_PUSH_TOKEN_H_
