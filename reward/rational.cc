#include "reward/rational.h"

#include <cmath>

namespace grpo::reward {
namespace {

constexpr i128 kMax = static_cast<i128>((~static_cast<unsigned __int128>(0)) >> 1);
constexpr i128 kMin = -kMax - 1;

i128 Abs(i128 v) { return v < 0 ? -v : v; }  // callers keep v > kMin

i128 Gcd(i128 a, i128 b) {
  a = Abs(a);
  b = Abs(b);
  while (b != 0) {
    i128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

}  // namespace

bool CheckedAdd(i128 a, i128 b, i128* out) { return !__builtin_add_overflow(a, b, out); }
bool CheckedMul(i128 a, i128 b, i128* out) { return !__builtin_mul_overflow(a, b, out); }

std::optional<Rational> Rational::Make(i128 n, i128 d) {
  if (d == 0 || n == kMin || d == kMin) return std::nullopt;
  if (d < 0) {
    n = -n;
    d = -d;
  }
  i128 g = Gcd(n, d);
  if (g > 1) {
    n /= g;
    d /= g;
  }
  Rational r;
  r.num_ = n;
  r.den_ = n == 0 ? 1 : d;
  return r;
}

std::optional<Rational> Rational::FromDecimal(std::string_view s) {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  i128 n = 0;
  int frac_digits = 0;
  bool any = false, dot = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.' && !dot) {
      dot = true;
      continue;
    }
    if (c < '0' || c > '9') break;
    any = true;
    if (!CheckedMul(n, 10, &n) || !CheckedAdd(n, c - '0', &n)) return std::nullopt;
    if (dot) ++frac_digits;
  }
  if (!any) return std::nullopt;
  int64_t exp = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool eneg = false;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) eneg = s[i++] == '-';
    bool edig = false;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      edig = true;
      exp = exp * 10 + (s[i] - '0');
      if (exp > 100) return std::nullopt;
    }
    if (!edig) return std::nullopt;
    if (eneg) exp = -exp;
  }
  if (i != s.size()) return std::nullopt;
  exp -= frac_digits;
  if (exp > 60 || exp < -60) return std::nullopt;
  i128 d = 1;
  for (int64_t k = 0; k < (exp < 0 ? -exp : exp); ++k) {
    if (exp > 0) {
      if (!CheckedMul(n, 10, &n)) return std::nullopt;
    } else if (!CheckedMul(d, 10, &d)) {
      return std::nullopt;
    }
  }
  return Make(neg ? -n : n, d);
}

long double Rational::ToLongDouble() const {
  return static_cast<long double>(num_) / static_cast<long double>(den_);
}

namespace {
std::string I128ToString(i128 v) {
  if (v == 0) return "0";
  bool neg = v < 0;
  unsigned __int128 u = neg ? static_cast<unsigned __int128>(-(v + 1)) + 1 : v;
  std::string s;
  while (u > 0) {
    s.push_back(static_cast<char>('0' + static_cast<int>(u % 10)));
    u /= 10;
  }
  if (neg) s.push_back('-');
  return std::string(s.rbegin(), s.rend());
}
}  // namespace

std::string Rational::ToString() const {
  return den_ == 1 ? I128ToString(num_) : I128ToString(num_) + "/" + I128ToString(den_);
}

std::optional<Rational> Rational::Add(const Rational& o) const {
  i128 g = Gcd(den_, o.den_);
  i128 a, b, n, d;
  if (!CheckedMul(num_, o.den_ / g, &a) || !CheckedMul(o.num_, den_ / g, &b) ||
      !CheckedAdd(a, b, &n) || !CheckedMul(den_ / g, o.den_, &d))
    return std::nullopt;
  return Make(n, d);
}

std::optional<Rational> Rational::Neg() const {
  if (num_ == kMin) return std::nullopt;
  Rational r = *this;
  r.num_ = -num_;
  return r;
}

std::optional<Rational> Rational::Sub(const Rational& o) const {
  auto n = o.Neg();
  if (!n) return std::nullopt;
  return Add(*n);
}

std::optional<Rational> Rational::Mul(const Rational& o) const {
  i128 g1 = Gcd(num_, o.den_), g2 = Gcd(o.num_, den_);
  if (g1 == 0) g1 = 1;
  if (g2 == 0) g2 = 1;
  i128 n, d;
  if (!CheckedMul(num_ / g1, o.num_ / g2, &n) || !CheckedMul(den_ / g2, o.den_ / g1, &d))
    return std::nullopt;
  return Make(n, d);
}

std::optional<Rational> Rational::Div(const Rational& o) const {
  if (o.num_ == 0) return std::nullopt;
  auto inv = Make(o.den_, o.num_);
  if (!inv) return std::nullopt;
  return Mul(*inv);
}

std::optional<Rational> Rational::Pow(int64_t e) const {
  if (e > 4096 || e < -4096) return std::nullopt;
  if (e < 0) {
    if (num_ == 0) return std::nullopt;
    auto inv = Make(den_, num_);
    if (!inv) return std::nullopt;
    return inv->Pow(-e);
  }
  Rational result(1), base = *this;
  while (e > 0) {
    if (e & 1) {
      auto r = result.Mul(base);
      if (!r) return std::nullopt;
      result = *r;
    }
    e >>= 1;
    if (e > 0) {
      auto b = base.Mul(base);
      if (!b) return std::nullopt;
      base = *b;
    }
  }
  return result;
}

namespace {
// Exact integer k-th root of v >= 0, or -1.
i128 IntRoot(i128 v, int k) {
  if (v < 2) return v;
  long double guess = std::pow(static_cast<long double>(v), 1.0L / k);
  i128 g = static_cast<i128>(std::llround(guess));
  for (i128 c = (g > 2 ? g - 2 : 0); c <= g + 2; ++c) {
    i128 p = 1;
    bool ok = true;
    for (int i = 0; i < k && ok; ++i) ok = CheckedMul(p, c, &p) && p <= v;
    if (ok && p == v) return c;
  }
  return -1;
}
}  // namespace

std::optional<Rational> Rational::Root(int k) const {
  if (k < 2 || k > 64) return std::nullopt;
  if (num_ < 0 && k % 2 == 0) return std::nullopt;
  if (num_ >= (static_cast<i128>(1) << 100) || den_ >= (static_cast<i128>(1) << 100) ||
      num_ <= -(static_cast<i128>(1) << 100))
    return std::nullopt;  // llround's range; such roots are rare in answers
  i128 n = IntRoot(Abs(num_), k), d = IntRoot(den_, k);
  if (n < 0 || d < 0) return std::nullopt;
  return Make(num_ < 0 ? -n : n, d);
}

std::optional<int> Rational::Compare(const Rational& o) const {
  i128 a, b;
  if (!CheckedMul(num_, o.den_, &a) || !CheckedMul(o.num_, den_, &b)) return std::nullopt;
  return a < b ? -1 : (a > b ? 1 : 0);
}

}  // namespace grpo::reward
