// CheckedInt64: 64-bit signed arithmetic that remembers overflow, for sizes that come from
// outside (config files, recipes, requests, flags) before they size an allocation.
//
//   const CheckedInt64 bytes = CheckedInt64(rows) * cols * sizeof(float);
//   if (bytes.overflowed()) return absl::InvalidArgumentError(...);
//
// Overflow is sticky: once a sum or product does not fit in int64_t, every result computed from
// it is overflowed too. value() of an overflowed number is INT64_MAX, so that comparing it with
// a budget refuses it. Any integer type converts implicitly; an unsigned value above INT64_MAX
// converts to an overflowed number.
#ifndef GRPO_CORE_CHECKED_MATH_H_
#define GRPO_CORE_CHECKED_MATH_H_

#include <cstdint>
#include <limits>
#include <type_traits>

namespace grpo {

class CheckedInt64 {
 public:
  constexpr CheckedInt64() = default;
  template <typename T, typename = std::enable_if_t<std::is_integral_v<T>>>
  constexpr CheckedInt64(T v) {  // NOLINT: implicit on purpose (sizes mix with plain integers)
    overflowed_ = __builtin_add_overflow(v, int64_t{0}, &value_);
  }

  bool overflowed() const { return overflowed_; }
  // The value; INT64_MAX when overflowed.
  int64_t value() const { return overflowed_ ? std::numeric_limits<int64_t>::max() : value_; }

  friend CheckedInt64 operator+(CheckedInt64 a, CheckedInt64 b) {
    CheckedInt64 r;
    r.overflowed_ = a.overflowed_ || b.overflowed_ || __builtin_add_overflow(a.value_, b.value_, &r.value_);
    return r;
  }
  friend CheckedInt64 operator-(CheckedInt64 a, CheckedInt64 b) {
    CheckedInt64 r;
    r.overflowed_ = a.overflowed_ || b.overflowed_ || __builtin_sub_overflow(a.value_, b.value_, &r.value_);
    return r;
  }
  friend CheckedInt64 operator*(CheckedInt64 a, CheckedInt64 b) {
    CheckedInt64 r;
    r.overflowed_ = a.overflowed_ || b.overflowed_ || __builtin_mul_overflow(a.value_, b.value_, &r.value_);
    return r;
  }
  CheckedInt64& operator+=(CheckedInt64 b) { return *this = *this + b; }
  CheckedInt64& operator-=(CheckedInt64 b) { return *this = *this - b; }
  CheckedInt64& operator*=(CheckedInt64 b) { return *this = *this * b; }

 private:
  int64_t value_ = 0;
  bool overflowed_ = false;
};

}  // namespace grpo

#endif  // GRPO_CORE_CHECKED_MATH_H_
