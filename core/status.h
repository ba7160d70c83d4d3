// The project's error type is absl::Status (no value) and absl::StatusOr<T> (a value or an
// error). This header adds the few things Abseil 20220623 does not ship: error-context chaining,
// errors from errno, and the two early-return macros.
//
// A Status message names what was wrong ("model.safetensors: tensor 'lm_head.weight' ends at
// byte 812 but the file has 800"). Exceptions are not used across module boundaries;
// third-party exceptions are caught at the call site and turned into a Status. Codes, as used
// here: kInvalidArgument bad input from a user or a file, kDataLoss stored data damaged or
// malformed, kResourceExhausted a size or memory limit hit, kUnavailable a service down or not
// ready, kUnknown an I/O failure with no errno to classify it, kInternal a bug in our code.
#ifndef GRPO_CORE_STATUS_H_
#define GRPO_CORE_STATUS_H_

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace grpo {

// The same error with "<context>: " put before its message (code and payloads kept); OK stays OK.
absl::Status WithContext(const absl::Status& status, std::string_view context);

// The error of a failed system call: message "<what>: <strerror(errno_value)>", code from errno
// (ENOENT is kNotFound, EACCES kPermissionDenied, ENOSPC kResourceExhausted, ...).
absl::Status ErrnoError(std::string_view what, int errno_value);

}  // namespace grpo

#define GRPO_STATUS_CONCAT_INNER_(a, b) a##b
#define GRPO_STATUS_CONCAT_(a, b) GRPO_STATUS_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function if it is not OK.
#define GRPO_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    ::absl::Status grpo_status_ = (expr);          \
    if (!grpo_status_.ok()) return grpo_status_;   \
  } while (0)

// `GRPO_ASSIGN_OR_RETURN(auto x, F());` declares x from F()'s value, or returns F()'s error.
#define GRPO_ASSIGN_OR_RETURN(lhs, expr) \
  GRPO_ASSIGN_OR_RETURN_IMPL_(GRPO_STATUS_CONCAT_(grpo_result_, __LINE__), lhs, expr)
#define GRPO_ASSIGN_OR_RETURN_IMPL_(result, lhs, expr) \
  auto result = (expr);                                \
  if (!result.ok()) return result.status();            \
  lhs = std::move(result).value()

#endif  // GRPO_CORE_STATUS_H_
