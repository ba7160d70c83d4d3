// Status and Result<T>: the one error type of the project.
//
// Every fallible function returns Status (no value) or Result<T> (a value or an error). A Status
// carries a code and a message that names what was wrong ("model.safetensors: tensor
// 'lm_head.weight' ends at byte 812 but the file has 800"). Exceptions are not used across
// module boundaries; third-party exceptions are caught at the call site and turned into Status.
#ifndef GRPO_CORE_STATUS_H_
#define GRPO_CORE_STATUS_H_

#include <cassert>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace grpo {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // bad input from a user or a file
  kNotFound,            // a named thing does not exist
  kAlreadyExists,
  kOutOfRange,
  kFailedPrecondition,  // the call is not valid in the current state
  kCorruption,          // stored data is damaged or malformed
  kIoError,             // the operating system refused (open, read, mmap, ...)
  kUnimplemented,       // a part that is not built yet
  kDeadlineExceeded,
  kResourceExhausted,   // a size or memory limit was hit
  kUnavailable,         // a service is down or not ready
  kCancelled,
  kInternal,            // a bug in our code
};

// Short lower-case name of a code, e.g. "invalid argument".
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid argument: <message>", or "ok".
  std::string ToString() const;

  // The same error with "<context>: " put before its message; OK stays OK.
  Status WithContext(std::string_view context) const;

  // An IoError whose message is "<what>: <strerror(errno_value)>".
  static Status FromErrno(std::string_view what, int errno_value);

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value of type T or an error Status. Accessing the value of an error Result aborts.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {          // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result built from an OK Status has no value");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return Checked(); }
  const T& value() const& { return const_cast<Result*>(this)->Checked(); }
  T&& value() && { return std::move(Checked()); }
  T& operator*() & { return Checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->Checked(); }
  T* operator->() { return &Checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->Checked(); }

 private:
  T& Checked();
  std::variant<T, Status> v_;
};

[[noreturn]] void DieOnBadResultAccess(const Status& status);

template <typename T>
T& Result<T>::Checked() {
  if (!ok()) DieOnBadResultAccess(std::get<Status>(v_));
  return std::get<T>(v_);
}

}  // namespace grpo

#define GRPO_STATUS_CONCAT_INNER_(a, b) a##b
#define GRPO_STATUS_CONCAT_(a, b) GRPO_STATUS_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function if it is not OK.
#define GRPO_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    ::grpo::Status grpo_status_ = (expr);          \
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
