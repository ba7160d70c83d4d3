// Rational: exact fractions with 128-bit numerator and denominator and checked arithmetic.
//
// Always normalized: gcd(num, den) == 1 and den > 0 (zero is 0/1). Every operation that would
// overflow 128 bits returns false (or an empty optional) instead of a wrong value, so callers
// fall back to floating point or give up; nothing here loops longer than O(log) of its inputs.
#ifndef GRPO_REWARD_RATIONAL_H_
#define GRPO_REWARD_RATIONAL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace grpo::reward {

using i128 = __int128;

class Rational {
 public:
  Rational() = default;
  explicit Rational(int64_t n) : num_(n), den_(1) {}
  // n/d normalized; nullopt when d == 0 or normalization overflows.
  static std::optional<Rational> Make(i128 n, i128 d);
  // Parses "[-]digits[.digits][e[+-]digits]" exactly; nullopt when malformed or out of range.
  static std::optional<Rational> FromDecimal(std::string_view text);

  i128 num() const { return num_; }
  i128 den() const { return den_; }
  bool is_integer() const { return den_ == 1; }
  bool is_zero() const { return num_ == 0; }
  int sign() const { return num_ > 0 ? 1 : (num_ < 0 ? -1 : 0); }
  long double ToLongDouble() const;
  std::string ToString() const;  // "n" or "n/d"

  // Checked arithmetic: nullopt on overflow (or division by zero).
  std::optional<Rational> Add(const Rational& o) const;
  std::optional<Rational> Sub(const Rational& o) const;
  std::optional<Rational> Mul(const Rational& o) const;
  std::optional<Rational> Div(const Rational& o) const;
  std::optional<Rational> Neg() const;
  // this^e for an integer exponent |e| <= 4096; nullopt on overflow, 0^negative, or big e.
  std::optional<Rational> Pow(int64_t e) const;
  // Exact k-th root (k in [2, 64]) when this is a perfect k-th power of a rational.
  std::optional<Rational> Root(int k) const;

  bool operator==(const Rational& o) const { return num_ == o.num_ && den_ == o.den_; }
  // Three-way comparison; nullopt when the cross products overflow.
  std::optional<int> Compare(const Rational& o) const;

 private:
  i128 num_ = 0;
  i128 den_ = 1;
};

// Checked 128-bit helpers (false on overflow).
bool CheckedAdd(i128 a, i128 b, i128* out);
bool CheckedMul(i128 a, i128 b, i128* out);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_RATIONAL_H_
