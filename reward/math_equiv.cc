#include "reward/math_equiv.h"

#include <cmath>
#include <optional>
#include <vector>

#include "reward/math_eval.h"

namespace grpo::reward {
namespace {

using namespace eval;

constexpr size_t kMaxSetSize = 64;

// An answer item: the structure above scalar expressions.
struct Item {
  enum Kind { kScalar, kTuple, kSet, kIntervals, kRel } kind = kScalar;
  int node = -1;
  unsigned pm_mask = 0;
  bool percent = false;
  char open = 0, close = 0;
  std::vector<Item> kids;        // tuple/set elements; intervals: 2-tuples
  std::vector<RelOp> ops;        // kRel
};

bool ContainsPm(const ParsedMath& m, int n, int depth) {
  if (n < 0 || depth > kMaxEvalDepth) return false;
  const Node& x = m.nodes[n];
  if (x.kind == NodeKind::kPm) return true;
  return ContainsPm(m, x.a, depth + 1) || ContainsPm(m, x.b, depth + 1);
}

bool IsVar(const ParsedMath& m, int n) { return n >= 0 && m.nodes[n].kind == NodeKind::kVar; }

RelOp Flip(RelOp op) {
  switch (op) {
    case RelOp::kLt: return RelOp::kGt;
    case RelOp::kGt: return RelOp::kLt;
    case RelOp::kLe: return RelOp::kGe;
    case RelOp::kGe: return RelOp::kLe;
    default: return op;
  }
}

std::optional<Item> ToItem(const ParsedMath& m, int n, int depth);

Item Interval(int lo, int hi, bool lo_closed, bool hi_closed) {
  Item t;
  t.kind = Item::kTuple;
  t.open = lo_closed ? '[' : '(';
  t.close = hi_closed ? ']' : ')';
  Item a, b;
  a.node = lo;
  b.node = hi;
  t.kids = {a, b};
  Item iv;
  iv.kind = Item::kIntervals;
  iv.kids.push_back(std::move(t));
  return iv;
}

// -inf / +inf endpoint nodes are encoded as -2 / -3.
constexpr int kNegInf = -2, kPosInf = -3;

// The variable id that "var = value" assigns, or -1.
int AssignedVar(const ParsedMath& m, int n) {
  const Node& x = m.nodes[n];
  if (x.kind != NodeKind::kRel || x.kids.size() != 2 || x.ops[0] != RelOp::kEq) return -1;
  return IsVar(m, x.kids[0]) ? m.nodes[x.kids[0]].id : -1;
}

// With keep_assignments, "x = 5" stays a relation (in "x = 1, y = 2" the names matter).
std::optional<Item> RelToItem(const ParsedMath& m, const Node& x, int depth,
                              bool keep_assignments = false) {
  const auto& k = x.kids;
  const auto& ops = x.ops;
  bool all_eq = true;
  for (RelOp op : ops) all_eq &= op == RelOp::kEq;
  // "x = 5" is 5, but "x = y" stays a relation (both sides are bare variables).
  bool both_vars = k.size() == 2 && IsVar(m, k.front()) && IsVar(m, k.back());
  bool strip = all_eq && !both_vars && !keep_assignments;
  if (strip && IsVar(m, k.front())) return ToItem(m, k.back(), depth + 1);
  if (strip && k.size() == 2 && IsVar(m, k.back())) return ToItem(m, k.front(), depth + 1);
  if (ops.size() == 1 && ops[0] == RelOp::kIn && IsVar(m, k[0])) return ToItem(m, k[1], depth + 1);
  if (ops.size() == 1 && ops[0] != RelOp::kEq && ops[0] != RelOp::kNe && ops[0] != RelOp::kIn &&
      ops[0] != RelOp::kApprox) {
    RelOp op = ops[0];
    int var = -1, bound = -1;
    if (IsVar(m, k[0])) {
      var = k[0];
      bound = k[1];
    } else if (IsVar(m, k[1])) {
      var = k[1];
      bound = k[0];
      op = Flip(op);
    }
    if (var >= 0) {
      switch (op) {
        case RelOp::kLt: return Interval(kNegInf, bound, false, false);
        case RelOp::kLe: return Interval(kNegInf, bound, false, true);
        case RelOp::kGt: return Interval(bound, kPosInf, false, false);
        case RelOp::kGe: return Interval(bound, kPosInf, true, false);
        default: break;
      }
    }
  }
  if (ops.size() == 2 && IsVar(m, k[1])) {
    RelOp a = ops[0], b = ops[1];
    bool up = (a == RelOp::kLt || a == RelOp::kLe) && (b == RelOp::kLt || b == RelOp::kLe);
    bool down = (a == RelOp::kGt || a == RelOp::kGe) && (b == RelOp::kGt || b == RelOp::kGe);
    if (up) return Interval(k[0], k[2], a == RelOp::kLe, b == RelOp::kLe);
    if (down) return Interval(k[2], k[0], b == RelOp::kGe, a == RelOp::kGe);
  }
  Item r;
  r.kind = Item::kRel;
  r.ops = ops;
  for (int c : k) {
    auto it = ToItem(m, c, depth + 1);
    if (!it) return std::nullopt;
    r.kids.push_back(std::move(*it));
  }
  return r;
}

std::optional<Item> ToItem(const ParsedMath& m, int n, int depth) {
  if (n < 0 || depth > 32) return std::nullopt;
  const Node& x = m.nodes[n];
  switch (x.kind) {
    case NodeKind::kSet: {
      Item s;
      s.kind = Item::kSet;
      if (x.kids.size() > kMaxSetSize) return std::nullopt;
      // "x = 1, y = 2" assigns different variables: keep the names ("x = 2, y = 1" differs).
      // "x = 1, x = 2" lists the values of one variable: {1, 2}.
      int first_var = -1;
      bool distinct_vars = false;
      for (int c : x.kids) {
        int v = AssignedVar(m, c);
        if (v < 0) continue;
        if (first_var < 0) first_var = v;
        distinct_vars |= v != first_var;
      }
      for (int c : x.kids) {
        auto it = distinct_vars && m.nodes[c].kind == NodeKind::kRel
                      ? RelToItem(m, m.nodes[c], depth + 1, /*keep_assignments=*/true)
                      : ToItem(m, c, depth + 1);
        if (!it) return std::nullopt;
        // A ± inside a set element contributes both values.
        if (it->kind == Item::kSet && m.nodes[c].kind != NodeKind::kSet) {
          for (auto& e : it->kids) s.kids.push_back(std::move(e));
        } else {
          s.kids.push_back(std::move(*it));
        }
      }
      return s;
    }
    case NodeKind::kTuple: {
      Item t;
      t.kind = Item::kTuple;
      t.open = x.open;
      t.close = x.close;
      if (x.kids.size() > kMaxSetSize) return std::nullopt;
      for (int c : x.kids) {
        auto it = ToItem(m, c, depth + 1);
        if (!it) return std::nullopt;
        t.kids.push_back(std::move(*it));
      }
      return t;
    }
    case NodeKind::kUnion: {
      Item u;
      u.kind = Item::kIntervals;
      for (int c : x.kids) {
        auto it = ToItem(m, c, depth + 1);
        if (!it) return std::nullopt;
        if (it->kind == Item::kIntervals) {
          for (auto& e : it->kids) u.kids.push_back(std::move(e));
        } else if (it->kind == Item::kTuple && it->kids.size() == 2) {
          u.kids.push_back(std::move(*it));
        } else {
          return std::nullopt;
        }
      }
      return u;
    }
    case NodeKind::kRel:
      return RelToItem(m, x, depth);
    default:
      break;
  }
  Item s;
  s.kind = Item::kScalar;
  s.node = n;
  if (x.kind == NodeKind::kPercent) {
    s.percent = true;
    s.node = x.a;
  }
  if (m.num_pm > 0 && ContainsPm(m, s.node, 0)) {
    Item set;
    set.kind = Item::kSet;
    for (unsigned mask = 0; mask < (1u << m.num_pm); ++mask) {
      Item v = s;
      v.pm_mask = mask;
      set.kids.push_back(v);
    }
    return set;
  }
  return s;
}

class Comparer {
 public:
  Comparer(const ParsedMath& g, const ParsedMath& p) : g_(g), p_(p) {
    // Shared variable slots by name.
    for (const auto& n : g.var_names) gslot_.push_back(Slot(n));
    for (const auto& n : p.var_names) pslot_.push_back(Slot(n));
  }

  bool Items(const Item& a, const Item& b, int depth = 0) {
    if (depth > 16 || ++steps_ > 20000) return false;
    if (a.kind == Item::kSet && a.kids.size() == 1 && b.kind != Item::kSet)
      return Items(a.kids[0], b, depth + 1);
    if (b.kind == Item::kSet && b.kids.size() == 1 && a.kind != Item::kSet)
      return Items(a, b.kids[0], depth + 1);
    if (a.kind == Item::kIntervals && b.kind == Item::kTuple && b.kids.size() == 2)
      return a.kids.size() == 1 && Items(a.kids[0], b, depth + 1);
    if (b.kind == Item::kIntervals && a.kind == Item::kTuple && a.kids.size() == 2)
      return b.kids.size() == 1 && Items(a, b.kids[0], depth + 1);
    if (a.kind != b.kind) return false;
    switch (a.kind) {
      case Item::kScalar:
        return Scalars(a, b);
      case Item::kTuple:
        if (a.kids.size() != b.kids.size()) return false;
        if (a.kids.size() == 2 && (a.open != b.open || a.close != b.close)) return false;
        for (size_t i = 0; i < a.kids.size(); ++i)
          if (!Items(a.kids[i], b.kids[i], depth + 1)) return false;
        return true;
      case Item::kSet:
      case Item::kIntervals:
        return SetEq(a.kids, b.kids, depth);
      case Item::kRel: {
        if (a.kids.size() != b.kids.size() || a.ops != b.ops) {
          // a = b  vs  b = a;  a < b  vs  b > a.
          if (a.kids.size() != 2 || b.kids.size() != 2 || a.ops.size() != 1 ||
              b.ops.size() != 1 || Flip(a.ops[0]) != b.ops[0])
            return false;
          return Items(a.kids[0], b.kids[1], depth + 1) && Items(a.kids[1], b.kids[0], depth + 1);
        }
        bool same = true;
        for (size_t i = 0; i < a.kids.size() && same; ++i)
          same = Items(a.kids[i], b.kids[i], depth + 1);
        if (same) return true;
        if (a.kids.size() == 2 && (a.ops[0] == RelOp::kEq || a.ops[0] == RelOp::kNe))
          return Items(a.kids[0], b.kids[1], depth + 1) && Items(a.kids[1], b.kids[0], depth + 1);
        return false;
      }
    }
    return false;
  }

 private:
  int Slot(const std::string& name) {
    for (size_t i = 0; i < names_.size(); ++i)
      if (names_[i] == name) return static_cast<int>(i);
    names_.push_back(name);
    return static_cast<int>(names_.size() - 1);
  }

  bool SetEq(const std::vector<Item>& a, const std::vector<Item>& b, int depth) {
    if (a.empty() || b.empty()) return a.empty() && b.empty();
    std::vector<char> b_hit(b.size(), 0);
    for (const Item& x : a) {
      bool found = false;
      for (size_t j = 0; j < b.size(); ++j) {
        if (Items(x, b[j], depth + 1)) {
          found = true;
          b_hit[j] = 1;
        }
      }
      if (!found) return false;
    }
    for (char h : b_hit)
      if (!h) return false;
    return true;
  }

  // Endpoint nodes may be the ±infinity markers.
  Value EvalNode(const ParsedMath& m, const std::vector<int>& slot, int node, unsigned mask,
                 const Value* vars) {
    if (node == kNegInf) return Value::Approx(-INFINITY);
    if (node == kPosInf) return Value::Approx(INFINITY);
    return Evaluator(m, slot, vars, mask).Eval(node);
  }

  bool HasVars(const ParsedMath& m, int node, int depth = 0) {
    if (node < 0 || depth > kMaxEvalDepth) return false;
    const Node& x = m.nodes[node];
    if (x.kind == NodeKind::kVar) return true;
    return HasVars(m, x.a, depth + 1) || HasVars(m, x.b, depth + 1);
  }

  bool Scalars(const Item& a, const Item& b) {
    // Literal integers beyond 128 bits: compare the digits.
    if (a.node >= 0 && b.node >= 0) {
      const Node& x = g_.nodes[a.node];
      const Node& y = p_.nodes[b.node];
      if (x.kind == NodeKind::kNum && y.kind == NodeKind::kNum && (!x.exact || !y.exact) &&
          a.percent == b.percent)
        return !x.exact && !y.exact && x.literal == y.literal;
    }
    bool vars = (a.node >= 0 && HasVars(g_, a.node)) || (b.node >= 0 && HasVars(p_, b.node));
    auto eq_at = [&](const Value* pt, bool* both_undefined) {
      Value x = EvalNode(g_, gslot_, a.node, a.pm_mask, pt);
      Value y = EvalNode(p_, pslot_, b.node, b.pm_mask, pt);
      *both_undefined = !x.ok && !y.ok;
      if (!x.ok || !y.ok) return false;
      long double tol = vars ? 1e-8L : 1e-9L;
      if (NumEq(x, y, tol)) return true;
      Value hundred = Value::Exact(Rational(100));
      if (a.percent && NumEq(Div(x, hundred), y, tol)) return true;
      if (b.percent && NumEq(x, Div(y, hundred), tol)) return true;
      return false;
    };
    bool undef = false;
    if (!vars) return eq_at(nullptr, &undef);
    // Points in units of 1/10000, exact rationals: polynomial and rational expressions are
    // compared exactly at each point; irrational parts fall back to the tolerance.
    static constexpr int kPoints[6][4] = {
        {7361, 14142, 22913, 5417},   {19093, 6271, 11179, 27183},
        {23571, 18327, 9133, 13109},  {12207, 29411, 16561, 8123},
        {-8812, 17077, -14421, 21203}, {-16307, -6953, 6619, -22501}};
    Value pt[32];
    int defined = 0;
    for (int t = 0; t < 6; ++t) {
      for (size_t v = 0; v < names_.size() && v < 32; ++v)
        pt[v] = Value::Exact(*Rational::Make(kPoints[t][v % 4] + 1730 * static_cast<int>(v / 4), 10000));
      bool both_undef = false;
      bool eq = eq_at(pt, &both_undef);
      if (both_undef) continue;
      if (!eq) return false;
      ++defined;
    }
    return defined >= 3;
  }

  static Value Div(const Value& x, const Value& y) {
    if (x.exact && y.exact)
      if (auto r = x.q.Div(y.q)) return Value::Exact(*r);
    return Value::Approx(x.ld() / y.ld());
  }

  const ParsedMath& g_;
  const ParsedMath& p_;
  std::vector<std::string> names_;
  std::vector<int> gslot_, pslot_;
  int steps_ = 0;
};

}  // namespace

bool MathEquivalentParsed(const ParsedMath& gold, std::string_view pred, std::string* detail) {
  absl::StatusOr<ParsedMath> p = ParseMath(pred);
  if (!p.ok()) {
    if (detail) *detail = "prediction unparsable: " + std::string(p.status().message());
    return false;
  }
  if (gold.is_text || p->is_text) {
    bool eq = gold.text == p->text;
    if (detail) *detail = eq ? "text match" : "text differs";
    return eq;
  }
  auto gi = ToItem(gold, gold.root, 0);
  auto pi = ToItem(*p, p->root, 0);
  if (!gi || !pi) {
    if (detail) *detail = "answer structure not comparable";
    return false;
  }
  Comparer c(gold, *p);
  bool eq = c.Items(*gi, *pi);
  if (detail) *detail = eq ? "equivalent" : "not equivalent";
  return eq;
}

namespace {

bool NodeHasVars(const ParsedMath& m, int n, int depth = 0) {
  if (n < 0 || depth > kMaxEvalDepth) return false;
  const Node& x = m.nodes[n];
  if (x.kind == NodeKind::kVar) return true;
  return NodeHasVars(m, x.a, depth + 1) || NodeHasVars(m, x.b, depth + 1);
}

// Every variable-free scalar of a gold answer must have a value (no 1/0, no sets in sums).
bool ScalarsEvaluate(const ParsedMath& m, const Item& it, int depth = 0) {
  if (depth > 32) return false;
  if (it.kind == Item::kScalar) {
    if (it.node < 0 || NodeHasVars(m, it.node)) return true;
    static const std::vector<int> kNoSlots;
    return Evaluator(m, kNoSlots, nullptr, it.pm_mask).Eval(it.node).ok;
  }
  for (const Item& k : it.kids)
    if (!ScalarsEvaluate(m, k, depth + 1)) return false;
  return true;
}

}  // namespace

absl::Status CheckGoldStructure(const ParsedMath& gold) {
  if (gold.is_text) return absl::Status();
  auto item = ToItem(gold, gold.root, 0);
  if (!item) return absl::InvalidArgumentError("gold answer: structure not supported");
  if (!ScalarsEvaluate(gold, *item))
    return absl::InvalidArgumentError("gold answer: a value cannot be evaluated");
  return absl::Status();
}

absl::StatusOr<bool> MathEquivalent(std::string_view gold, std::string_view pred, std::string* detail) {
  absl::StatusOr<ParsedMath> g = ParseMath(gold);
  if (!g.ok()) return grpo::WithContext(g.status(), "gold answer");
  GRPO_RETURN_IF_ERROR(CheckGoldStructure(*g));
  return MathEquivalentParsed(*g, pred, detail);
}

}  // namespace grpo::reward
