// Evaluation of parsed math expressions (internal to math_equiv.cc).
//
// A Value is exact (a 128-bit Rational) while every step is rational and fits, and becomes a
// long double otherwise (irrational functions, overflowing rationals); `ok` is false when there
// is no value (division by zero, 0^-1, a domain error, an overflow to infinity from finite
// inputs, a set or tuple used as a number). Evaluation recurses at most kMaxEvalDepth levels.
#ifndef GRPO_REWARD_MATH_EVAL_H_
#define GRPO_REWARD_MATH_EVAL_H_

#include <cmath>
#include <optional>
#include <vector>

#include "reward/math_parse.h"
#include "reward/rational.h"

namespace grpo::reward::eval {

inline constexpr int kMaxEvalDepth = 200;

struct Value {
  bool ok = false;
  bool exact = false;
  Rational q;
  long double v = 0;

  long double ld() const { return exact ? q.ToLongDouble() : v; }
  static Value Exact(const Rational& r) {
    Value x;
    x.ok = x.exact = true;
    x.q = r;
    x.v = r.ToLongDouble();
    return x;
  }
  static Value Approx(long double d) {
    Value x;
    x.ok = !std::isnan(d);
    x.v = d;
    return x;
  }
};

// Evaluates node trees; variables are read from `vars` through `slot` (var id -> slot).
class Evaluator {
 public:
  Evaluator(const ParsedMath& m, const std::vector<int>& slot, const Value* vars,
            unsigned pm_mask)
      : m_(m), slot_(slot), vars_(vars), pm_mask_(pm_mask) {}

  Value Eval(int n, int depth = 0) {
    if (n < 0 || depth > kMaxEvalDepth) return {};
    const Node& x = m_.nodes[n];
    switch (x.kind) {
      case NodeKind::kNum:
        if (!x.exact && std::isinf(x.v)) return {};  // a literal beyond long double
        return x.exact ? Value::Exact(x.q) : Value::Approx(x.v);
      case NodeKind::kVar:
        if (!vars_) return {};
        return vars_[slot_[x.id]];
      case NodeKind::kPi:
        return Value::Approx(3.141592653589793238462643383279502884L);
      case NodeKind::kE:
        return Value::Approx(2.718281828459045235360287471352662498L);
      case NodeKind::kInf:
        return Value::Approx(INFINITY);
      case NodeKind::kNeg: {
        Value a = Eval(x.a, depth + 1);
        if (!a.ok) return a;
        if (a.exact)
          if (auto r = a.q.Neg()) return Value::Exact(*r);
        return Value::Approx(-a.ld());
      }
      case NodeKind::kAdd: case NodeKind::kSub: case NodeKind::kMul: case NodeKind::kDiv:
        return Binary(x.kind, Eval(x.a, depth + 1), Eval(x.b, depth + 1));
      case NodeKind::kPm: {
        Value a = Eval(x.a, depth + 1), b = Eval(x.b, depth + 1);
        bool minus = (pm_mask_ >> x.id) & 1;
        return Binary(minus ? NodeKind::kSub : NodeKind::kAdd, a, b);
      }
      case NodeKind::kPercent: {
        Value a = Eval(x.a, depth + 1);
        return Binary(NodeKind::kDiv, a, Value::Exact(Rational(100)));
      }
      case NodeKind::kPow:
        return Pow(Eval(x.a, depth + 1), Eval(x.b, depth + 1));
      case NodeKind::kRoot: {
        Value a = Eval(x.a, depth + 1);
        Value k = x.b >= 0 ? Eval(x.b, depth + 1) : Value::Exact(Rational(2));
        if (!a.ok || !k.ok) return {};
        if (k.exact && k.q.is_integer() && k.q.num() >= 2 && k.q.num() <= 64) {
          int ki = static_cast<int>(k.q.num());
          if (a.exact)
            if (auto r = a.q.Root(ki)) return Value::Exact(*r);
          long double v = a.ld();
          if (v < 0) {
            if (ki % 2 == 0) return {};
            return Value::Approx(-std::pow(-v, 1.0L / ki));
          }
          return Value::Approx(std::pow(v, 1.0L / ki));
        }
        long double kv = k.ld();
        if (kv == 0) return {};
        return Value::Approx(std::pow(a.ld(), 1.0L / kv));
      }
      case NodeKind::kFunc:
        return Func(static_cast<Fn>(x.fn), Eval(x.a, depth + 1),
                    x.b >= 0 ? Eval(x.b, depth + 1) : Value());
      case NodeKind::kFact: {
        Value a = Eval(x.a, depth + 1);
        if (!a.ok || !a.exact || !a.q.is_integer() || a.q.num() < 0 || a.q.num() > 170) return {};
        int n_int = static_cast<int>(a.q.num());
        Rational r(1);
        for (int i = 2; i <= n_int; ++i) {
          auto m = r.Mul(Rational(i));
          if (!m) return Value::Approx(std::tgamma(static_cast<long double>(n_int) + 1));
          r = *m;
        }
        return Value::Exact(r);
      }
      case NodeKind::kAbs: {
        Value a = Eval(x.a, depth + 1);
        if (!a.ok) return a;
        if (a.exact && a.q.sign() < 0)
          if (auto r = a.q.Neg()) return Value::Exact(*r);
        if (a.exact) return a;
        return Value::Approx(std::fabs(a.v));
      }
      case NodeKind::kBinom: {
        Value a = Eval(x.a, depth + 1), b = Eval(x.b, depth + 1);
        if (!a.ok || !b.ok || !a.exact || !b.exact || !a.q.is_integer() || !b.q.is_integer())
          return {};
        i128 n_i = a.q.num(), k_i = b.q.num();
        if (n_i < 0 || k_i < 0 || k_i > n_i) return Value::Exact(Rational(0));
        if (n_i - k_i < k_i) k_i = n_i - k_i;
        if (k_i > 200) return {};
        Rational r(1);
        for (i128 i = 1; i <= k_i; ++i) {
          auto num = Rational::Make(n_i - k_i + i, i);
          auto m = num ? r.Mul(*num) : std::nullopt;
          if (!m) return {};
          r = *m;
        }
        return Value::Exact(r);
      }
      default:
        return {};  // sets, tuples, relations have no scalar value
    }
  }

 private:
  static Value Binary(NodeKind k, const Value& a, const Value& b) {
    if (!a.ok || !b.ok) return {};
    if (a.exact && b.exact) {
      std::optional<Rational> r;
      switch (k) {
        case NodeKind::kAdd: r = a.q.Add(b.q); break;
        case NodeKind::kSub: r = a.q.Sub(b.q); break;
        case NodeKind::kMul: r = a.q.Mul(b.q); break;
        default:
          if (b.q.is_zero()) return {};
          r = a.q.Div(b.q);
          break;
      }
      if (r) return Value::Exact(*r);
    }
    long double x = a.ld(), y = b.ld();
    long double r;
    switch (k) {
      case NodeKind::kAdd: r = x + y; break;
      case NodeKind::kSub: r = x - y; break;
      case NodeKind::kMul: r = x * y; break;
      default:
        if (y == 0) return {};
        r = x / y;
        break;
    }
    return Finite(r, x, y);
  }

  // An infinite result from finite operands is an overflow: no value (only \infty is infinite).
  static Value Finite(long double r, long double x, long double y) {
    if (std::isinf(r) && !std::isinf(x) && !std::isinf(y)) return {};
    return Value::Approx(r);
  }

  static Value Pow(const Value& a, const Value& b) {
    if (!a.ok || !b.ok) return {};
    if (a.exact && b.exact) {
      if (b.q.is_integer()) {
        if (b.q.num() >= -4096 && b.q.num() <= 4096) {
          if (auto r = a.q.Pow(static_cast<int64_t>(b.q.num()))) return Value::Exact(*r);
        }
      } else if (b.q.den() <= 64 && b.q.num() >= -4096 && b.q.num() <= 4096) {
        if (auto root = a.q.Root(static_cast<int>(b.q.den())))
          if (auto r = root->Pow(static_cast<int64_t>(b.q.num()))) return Value::Exact(*r);
      }
    }
    long double x = a.ld(), y = b.ld();
    if (x == 0 && y < 0) return {};
    if (x < 0 && b.exact && !b.q.is_integer()) {
      // Odd roots of negatives: (-8)^(1/3) = -2.
      if (b.q.den() % 2 == 1) {
        long double r = std::pow(-x, y);
        return Value::Approx(b.q.num() % 2 == 0 ? r : -r);
      }
      return {};
    }
    return Finite(std::pow(x, y), x, y);
  }

  static Value Func(Fn f, const Value& a, const Value& base) {
    if (!a.ok) return {};
    long double x = a.ld();
    switch (f) {
      case Fn::kSin: return Value::Approx(std::sin(x));
      case Fn::kCos: return Value::Approx(std::cos(x));
      case Fn::kTan: return Value::Approx(std::tan(x));
      case Fn::kSec: return Value::Approx(1 / std::cos(x));
      case Fn::kCsc: return Value::Approx(1 / std::sin(x));
      case Fn::kCot: return Value::Approx(std::cos(x) / std::sin(x));
      case Fn::kAsin: return Value::Approx(std::asin(x));
      case Fn::kAcos: return Value::Approx(std::acos(x));
      case Fn::kAtan: return Value::Approx(std::atan(x));
      case Fn::kLn: return x > 0 ? Value::Approx(std::log(x)) : Value();
      case Fn::kLog: {
        if (x <= 0) return {};
        if (base.ok) {
          long double b = base.ld();
          if (b <= 0 || b == 1) return {};
          return Value::Approx(std::log(x) / std::log(b));
        }
        return Value::Approx(std::log10(x));
      }
      case Fn::kExp: return Finite(std::exp(x), x, 0);
      case Fn::kFloor:
      case Fn::kCeil: {
        if (a.exact) {
          i128 n = a.q.num(), d = a.q.den();
          i128 fl = n / d - ((n % d != 0 && n < 0) ? 1 : 0);
          if (f == Fn::kCeil && n % d != 0) fl += 1;
          return Value::Exact(*Rational::Make(fl, 1));
        }
        return Value::Approx(f == Fn::kFloor ? std::floor(x) : std::ceil(x));
      }
    }
    return {};
  }

  const ParsedMath& m_;
  const std::vector<int>& slot_;
  const Value* vars_;
  unsigned pm_mask_;
};

inline bool NumEq(const Value& a, const Value& b, long double rel_tol) {
  if (!a.ok || !b.ok) return false;
  if (a.exact && b.exact) return a.q == b.q;
  long double x = a.ld(), y = b.ld();
  if (std::isnan(x) || std::isnan(y)) return false;
  if (std::isinf(x) || std::isinf(y)) return x == y;
  long double diff = std::fabs(x - y);
  long double scale = std::fmax(std::fabs(x), std::fabs(y));
  return diff <= rel_tol * scale || diff <= 1e-15L;
}


}  // namespace grpo::reward::eval

#endif  // GRPO_REWARD_MATH_EVAL_H_
