#include "reward/math_parse.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "reward/math_lex.h"
#include "reward/math_normalize.h"
#include "reward/rule.h"

namespace grpo::reward {
namespace {

using namespace lex;

class Parser {
 public:
  Parser(std::string_view s, ParsedMath* out) : lex_(s), out_(out) {}

  int ParseTop() {
    int r = ParseList(Tok::kEnd, 0);
    if (r >= 0 && lex_.Peek().kind != Tok::kEnd) return Fail("unexpected trailing input");
    return r;
  }
  const std::string& error() const { return error_; }
  bool saw_word() const { return saw_word_; }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) { ++p->depth_; }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };

  int Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return -1;
  }

  int NewNode(NodeKind kind, int a = -1, int b = -1) {
    if (out_->nodes.size() >= ParsedMath::kMaxNodes) return Fail("expression too large");
    Node n;
    n.kind = kind;
    n.a = a;
    n.b = b;
    out_->nodes.push_back(std::move(n));
    return static_cast<int>(out_->nodes.size() - 1);
  }

  bool DepthOk() { return depth_ <= Limits::kMaxDepth; }

  // item (, item)*; several items make a kSet (a top-level list is unordered).
  int ParseList(Tok until, char until_sym) {
    DepthGuard g(this);
    if (!DepthOk()) return Fail("nesting too deep");
    std::vector<int> items;
    while (true) {
      int it = ParseRelation();
      if (it < 0) return -1;
      items.push_back(it);
      if (lex_.Peek().kind != Tok::kComma) break;
      lex_.Next();
    }
    (void)until;
    (void)until_sym;
    if (items.size() == 1) return items[0];
    int s = NewNode(NodeKind::kSet);
    if (s < 0) return -1;
    out_->nodes[s].kids = std::move(items);
    return s;
  }

  int ParseRelation() {
    int first = ParseUnion();
    if (first < 0) return -1;
    if (lex_.Peek().kind != Tok::kRel) return first;
    std::vector<int> kids{first};
    std::vector<RelOp> ops;
    while (lex_.Peek().kind == Tok::kRel) {
      ops.push_back(lex_.Next().rel);
      int k = ParseUnion();
      if (k < 0) return -1;
      kids.push_back(k);
      if (kids.size() > 8) return Fail("relation chain too long");
    }
    int r = NewNode(NodeKind::kRel);
    if (r < 0) return -1;
    out_->nodes[r].kids = std::move(kids);
    out_->nodes[r].ops = std::move(ops);
    return r;
  }

  int ParseUnion() {
    int first = ParseSum();
    if (first < 0) return -1;
    if (lex_.Peek().kind != Tok::kCup) return first;
    std::vector<int> kids{first};
    while (lex_.Peek().kind == Tok::kCup) {
      lex_.Next();
      int k = ParseSum();
      if (k < 0) return -1;
      kids.push_back(k);
    }
    int u = NewNode(NodeKind::kUnion);
    if (u < 0) return -1;
    out_->nodes[u].kids = std::move(kids);
    return u;
  }

  int MakePm(int a, int b, bool minus_first) {
    // a ∓ b == a ± (-b) as a set.
    if (minus_first) {
      b = NewNode(NodeKind::kNeg, b);
      if (b < 0) return -1;
    }
    int n = NewNode(NodeKind::kPm, a, b);
    if (n < 0) return -1;
    out_->nodes[n].id = out_->num_pm++;
    if (out_->num_pm > 3) return Fail("too many \\pm");
    return n;
  }

  int ParseSum() {
    DepthGuard g(this);
    if (!DepthOk()) return Fail("nesting too deep");
    int left = ParseProduct();
    if (left < 0) return -1;
    while (true) {
      const Token& t = lex_.Peek();
      if (t.kind == Tok::kSym && (t.sym == '+' || t.sym == '-')) {
        char op = lex_.Next().sym;
        int right = ParseProduct();
        if (right < 0) return -1;
        left = NewNode(op == '+' ? NodeKind::kAdd : NodeKind::kSub, left, right);
      } else if (t.kind == Tok::kPm || t.kind == Tok::kMp) {
        bool mp = lex_.Next().kind == Tok::kMp;
        int right = ParseProduct();
        if (right < 0) return -1;
        left = MakePm(left, right, mp);
      } else {
        return left;
      }
      if (left < 0) return -1;
    }
  }

  bool StartsPrimary(const Token& t) {
    switch (t.kind) {
      case Tok::kNum: case Tok::kIdent: case Tok::kLSet: return true;
      case Tok::kCmd: return true;
      case Tok::kSym: return t.sym == '(' || t.sym == '{' || t.sym == '[';
      default: return false;
    }
  }

  bool IsIntLiteral(int n) const {
    const Node& x = out_->nodes[n];
    return x.kind == NodeKind::kNum && x.int_literal;
  }

  int ParseProduct() {
    DepthGuard g(this);
    if (!DepthOk()) return Fail("nesting too deep");
    int left = ParseUnary();
    if (left < 0) return -1;
    int factors = 1;
    while (true) {
      const Token& t = lex_.Peek();
      if (t.kind == Tok::kSym && (t.sym == '*' || t.sym == '/')) {
        char op = lex_.Next().sym;
        int right = ParseUnary();
        if (right < 0) return -1;
        left = NewNode(op == '*' ? NodeKind::kMul : NodeKind::kDiv, left, right);
      } else if (StartsPrimary(t)) {
        // Mixed numbers: 2\frac{1}{2} and "2 1/2" are 2 + 1/2.
        bool mixed_candidate = factors == 1 && IsIntLiteral(left);
        bool space_num = t.kind == Tok::kNum && t.space_before;
        if (t.kind == Tok::kSym && t.sym == '[') return left;  // "x [" is not a product
        int right = ParseUnary();
        if (right < 0) return -1;
        const Node& r = out_->nodes[right];
        bool frac_mixed = r.kind == NodeKind::kDiv && IsIntLiteral(r.a) && IsIntLiteral(r.b) &&
                          frac_literal_ == right;
        if (mixed_candidate && frac_mixed) {
          left = NewNode(NodeKind::kAdd, left, right);
        } else if (mixed_candidate && space_num && IsIntLiteral(right) &&
                   lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '/') {
          lex_.Next();
          int den = ParseUnary();
          if (den < 0) return -1;
          if (!IsIntLiteral(den)) return Fail("malformed mixed number");
          int frac = NewNode(NodeKind::kDiv, right, den);
          if (frac < 0) return -1;
          left = NewNode(NodeKind::kAdd, left, frac);
        } else {
          left = NewNode(NodeKind::kMul, left, right);
        }
      } else {
        return left;
      }
      if (left < 0) return -1;
      ++factors;
    }
  }

  int ParseUnary() {
    DepthGuard g(this);
    if (!DepthOk()) return Fail("nesting too deep");
    const Token& t = lex_.Peek();
    if (t.kind == Tok::kSym && (t.sym == '-' || t.sym == '+')) {
      bool neg = lex_.Next().sym == '-';
      int x = ParseUnary();
      if (x < 0) return -1;
      return neg ? NewNode(NodeKind::kNeg, x) : x;
    }
    if (t.kind == Tok::kPm || t.kind == Tok::kMp) {
      lex_.Next();
      int x = ParseUnary();
      if (x < 0) return -1;
      int zero = NewNode(NodeKind::kNum);
      if (zero < 0) return -1;
      return MakePm(zero, x, false);
    }
    return ParsePower();
  }

  // The argument of ^, \frac, \sqrt, _: a braced group, or a single token.
  int ParseArg(bool single_char) {
    const Token& t = lex_.Peek();
    if (t.kind == Tok::kSym && t.sym == '{') {
      lex_.Next();
      int x = ParseSum();
      if (x < 0) return -1;
      if (!(lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '}')) return Fail("missing }");
      lex_.Next();
      return x;
    }
    if (single_char && t.kind == Tok::kNum && t.text.size() > 1) {
      auto c = lex_.NextChar();
      if (!c) return Fail("bad argument");
      if (IsDigit(*c)) return NumberNode(std::string(1, *c));
      if (*c == 'e') return NewNode(NodeKind::kE);
      return VarNode(std::string(1, *c));
    }
    return ParsePostfix();
  }

  int ParsePower() {
    DepthGuard g(this);
    if (!DepthOk()) return Fail("nesting too deep");
    int base = ParsePostfix();
    if (base < 0) return -1;
    const Token& t = lex_.Peek();
    if (t.kind == Tok::kSym && t.sym == '^') {
      lex_.Next();
      int e;
      const Token& u = lex_.Peek();
      if (u.kind == Tok::kSym && (u.sym == '-' || u.sym == '+')) {
        e = ParseUnary();
      } else if (u.kind == Tok::kSym && u.sym == '{') {
        e = ParseArg(false);
      } else {
        e = ParsePower();
      }
      if (e < 0) return -1;
      int p = NewNode(NodeKind::kPow, base, e);
      if (p < 0) return -1;
      // Postfix after a braced exponent: x^{2}!
      return p;
    }
    return base;
  }

  int ParsePostfix() {
    DepthGuard g(this);
    if (!DepthOk()) return Fail("nesting too deep");
    int x = ParsePrimary();
    if (x < 0) return -1;
    while (true) {
      const Token& t = lex_.Peek();
      if (t.kind == Tok::kSym && t.sym == '!') {
        lex_.Next();
        x = NewNode(NodeKind::kFact, x);
      } else if (t.kind == Tok::kSym && t.sym == '%') {
        lex_.Next();
        x = NewNode(NodeKind::kPercent, x);
      } else {
        return x;
      }
      if (x < 0) return -1;
    }
  }

  int NumberNode(const std::string& digits) {
    int n = NewNode(NodeKind::kNum);
    if (n < 0) return -1;
    Node& x = out_->nodes[n];
    std::string clean;
    clean.reserve(digits.size());
    bool has_point_or_exp = false;
    for (char c : digits) {
      if (c != ',') clean.push_back(c);
      if (c == '.' || c == 'e' || c == 'E') has_point_or_exp = true;
    }
    x.int_literal = !has_point_or_exp;
    if (auto q = Rational::FromDecimal(clean)) {
      x.q = *q;
      x.exact = true;
    } else {
      x.exact = false;
      x.v = std::strtold(clean.c_str(), nullptr);
      x.literal = clean;
    }
    return n;
  }

  int VarNode(std::string name) {
    int id = -1;
    for (size_t i = 0; i < out_->var_names.size(); ++i)
      if (out_->var_names[i] == name) id = static_cast<int>(i);
    if (id < 0) {
      if (out_->var_names.size() >= 16) return Fail("too many variables");
      id = static_cast<int>(out_->var_names.size());
      out_->var_names.push_back(std::move(name));
    }
    int n = NewNode(NodeKind::kVar);
    if (n < 0) return -1;
    out_->nodes[n].id = id;
    return n;
  }

  // Subscript text after '_' (for variable names): {..} raw or one char.
  std::optional<std::string> Subscript() {
    const Token& t = lex_.Peek();
    if (t.kind == Tok::kSym && t.sym == '{') {
      size_t b = t.end;
      std::string_view src = lex_.source();
      size_t e = b;
      while (e < src.size() && src[e] != '}' && src[e] != '{' && e - b < 16) ++e;
      if (e >= src.size() || src[e] != '}') return std::nullopt;
      // Skip tokens up to the closing brace.
      while (lex_.Peek().kind != Tok::kEnd && lex_.pos() < e) lex_.Next();
      if (!(lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '}')) return std::nullopt;
      lex_.Next();
      std::string sub;
      for (char c : src.substr(b, e - b))
        if (c != ' ') sub.push_back(c);
      return sub;
    }
    auto c = lex_.NextChar();
    if (!c) return std::nullopt;
    return std::string(1, *c);
  }

  // ( ... ) or [ ... ] with mixed ends allowed (intervals); one element is a group.
  int ParseBracketed(char open) {
    std::vector<int> items;
    while (true) {
      int it = ParseRelation();
      if (it < 0) return -1;
      items.push_back(it);
      if (lex_.Peek().kind != Tok::kComma) break;
      lex_.Next();
    }
    const Token& t = lex_.Peek();
    if (!(t.kind == Tok::kSym && (t.sym == ')' || t.sym == ']'))) return Fail("missing )");
    char close = lex_.Next().sym;
    if (items.size() == 1 && ((open == '(' && close == ')') || (open == '[' && close == ']')))
      return items[0];
    int n = NewNode(NodeKind::kTuple);
    if (n < 0) return -1;
    out_->nodes[n].kids = std::move(items);
    out_->nodes[n].open = open;
    out_->nodes[n].close = close;
    return n;
  }

  int ParsePrimary() {
    DepthGuard g(this);
    if (!DepthOk()) return Fail("nesting too deep");
    Token t = lex_.Next();
    switch (t.kind) {
      case Tok::kNum:
        return NumberNode(std::string(t.text));
      case Tok::kIdent: {
        std::string name(t.text);
        if (name == "e" && !(lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '_'))
          return NewNode(NodeKind::kE);
        if (lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '_') {
          lex_.Next();
          auto sub = Subscript();
          if (!sub) return Fail("bad subscript");
          name += "_" + *sub;
        }
        return VarNode(std::move(name));
      }
      case Tok::kWord:
        saw_word_ = true;
        return Fail("word");
      case Tok::kLSet: {
        std::vector<int> items;
        if (lex_.Peek().kind != Tok::kRSet) {
          while (true) {
            int it = ParseRelation();
            if (it < 0) return -1;
            items.push_back(it);
            if (lex_.Peek().kind != Tok::kComma) break;
            lex_.Next();
          }
        }
        if (lex_.Next().kind != Tok::kRSet) return Fail("missing \\}");
        int n = NewNode(NodeKind::kSet);
        if (n < 0) return -1;
        out_->nodes[n].kids = std::move(items);
        return n;
      }
      case Tok::kSym:
        if (t.sym == '(' || t.sym == '[') return ParseBracketed(t.sym);
        if (t.sym == '{') {
          int x = ParseList(Tok::kSym, '}');
          if (x < 0) return -1;
          if (!(lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '}')) return Fail("missing }");
          lex_.Next();
          return x;
        }
        if (t.sym == '|') {
          int x = ParseSum();
          if (x < 0) return -1;
          if (!(lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '|')) return Fail("missing |");
          lex_.Next();
          return NewNode(NodeKind::kAbs, x);
        }
        return Fail(std::string("unexpected '") + t.sym + "'");
      case Tok::kCmd:
        return ParseCommand(t.text);
      case Tok::kEnd:
        return Fail("unexpected end");
      default:
        return Fail("unexpected token");
    }
  }

  int ParseCommand(std::string_view n) {
    if (n == "frac") {
      int a = ParseArg(true);
      if (a < 0) return -1;
      int b = ParseArg(true);
      if (b < 0) return -1;
      int d = NewNode(NodeKind::kDiv, a, b);
      frac_literal_ = d;
      return d;
    }
    if (n == "sqrt") {
      int index = -1;
      if (lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '[') {
        lex_.Next();
        index = ParseSum();
        if (index < 0) return -1;
        if (!(lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == ']')) return Fail("missing ]");
        lex_.Next();
      }
      int a = ParseArg(true);
      if (a < 0) return -1;
      return NewNode(NodeKind::kRoot, a, index);
    }
    if (n == "binom" || n == "dbinom" || n == "tbinom") {
      int a = ParseArg(true);
      if (a < 0) return -1;
      int b = ParseArg(true);
      if (b < 0) return -1;
      return NewNode(NodeKind::kBinom, a, b);
    }
    if (n == "pi") return NewNode(NodeKind::kPi);
    if (n == "infty" || n == "infin") return NewNode(NodeKind::kInf);
    if (n == "emptyset" || n == "varnothing") return NewNode(NodeKind::kSet);
    if (IsGreek(n)) return VarNode(std::string(n));
    if (auto fn = FnByName(n)) {
      int base = -1;
      if (*fn == Fn::kLog && lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '_') {
        lex_.Next();
        base = ParseArg(true);
        if (base < 0) return -1;
      }
      int arg;
      if (*fn == Fn::kFloor || *fn == Fn::kCeil) {
        arg = ParseSum();
        if (arg < 0) return -1;
        if (!(lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == ')'))
          return Fail("missing \\rfloor");
        lex_.Next();
      } else {
        // sin^2 x: power of the function value.
        int power = -1;
        if (lex_.Peek().kind == Tok::kSym && lex_.Peek().sym == '^') {
          lex_.Next();
          power = ParseArg(true);
          if (power < 0) return -1;
        }
        arg = ParsePower();
        if (arg < 0) return -1;
        int f = NewNode(NodeKind::kFunc, arg, base);
        if (f < 0) return -1;
        out_->nodes[f].fn = static_cast<uint8_t>(*fn);
        return power >= 0 ? NewNode(NodeKind::kPow, f, power) : f;
      }
      int f = NewNode(NodeKind::kFunc, arg, base);
      if (f < 0) return -1;
      out_->nodes[f].fn = static_cast<uint8_t>(*fn);
      return f;
    }
    return Fail("unknown command \\" + std::string(n));
  }

  Lexer lex_;
  ParsedMath* out_;
  int depth_ = 0;
  int frac_literal_ = -1;  // the last node made by \frac (for mixed numbers)
  bool saw_word_ = false;
  std::string error_;
};

std::string CompactText(std::string_view s) {
  std::string t;
  t.reserve(s.size());
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '{' || c == '}') continue;
    t.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return t;
}

}  // namespace

absl::StatusOr<ParsedMath> ParseMath(std::string_view raw) {
  if (raw.size() > Limits::kMaxAnswerBytes)
    return absl::InvalidArgumentError("answer longer than " +
                                   std::to_string(Limits::kMaxAnswerBytes) + " bytes");
  std::string norm = NormalizeMathAnswer(raw);
  ParsedMath out;
  out.text = CompactText(norm);
  if (norm.empty()) return absl::InvalidArgumentError("empty answer");
  out.nodes.reserve(16);
  Parser p(norm, &out);
  int root = p.ParseTop();
  if (root < 0) {
    if (p.saw_word()) {
      out.nodes.clear();
      out.var_names.clear();
      out.is_text = true;
      out.root = -1;
      return out;
    }
    return absl::InvalidArgumentError("cannot parse '" + std::string(raw.substr(0, 80)) + "': " +
                                   p.error());
  }
  out.root = root;
  return out;
}

}  // namespace grpo::reward
