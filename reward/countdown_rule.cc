#include "reward/countdown_rule.h"

#include <algorithm>
#include <cctype>

#include "reward/extract.h"

namespace grpo::reward {
namespace {

constexpr size_t kMaxExprBytes = 1024;
constexpr int kMaxDepth = 64;
constexpr size_t kMaxNumbers = 64;

class ExprParser {
 public:
  ExprParser(std::string_view s, std::vector<int64_t>* used) : s_(s), used_(used) {}

  absl::StatusOr<Rational> Parse() {
    auto v = Sum(0);
    if (!v.ok()) return v;
    Skip();
    if (p_ != s_.size())
      return absl::InvalidArgumentError("unexpected '" + std::string(1, s_[p_]) + "'");
    return v;
  }

 private:
  void Skip() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n')) ++p_;
  }
  // Reads an operator (ASCII, Unicode or LaTeX) and returns '+', '-', '*', '/' or 0.
  char Op() {
    Skip();
    if (p_ >= s_.size()) return 0;
    struct E { std::string_view text; char op; };
    static constexpr E kOps[] = {{"+", '+'}, {"-", '-'}, {"*", '*'}, {"/", '/'},
                                 {"\xc3\x97", '*'}, {"\xc3\xb7", '/'}, {"\xe2\x88\x92", '-'},
                                 {"\\times", '*'}, {"\\div", '/'}, {"\\cdot", '*'},
                                 {"x", '*'}};
    for (const E& e : kOps) {
      if (s_.substr(p_, e.text.size()) == e.text) {
        p_ += e.text.size();
        return e.op;
      }
    }
    return 0;
  }

  absl::StatusOr<Rational> Sum(int depth) {
    GRPO_ASSIGN_OR_RETURN(Rational left, Product(depth));
    while (true) {
      size_t save = p_;
      char op = Op();
      if (op != '+' && op != '-') {
        p_ = save;
        return left;
      }
      GRPO_ASSIGN_OR_RETURN(Rational right, Product(depth));
      auto r = op == '+' ? left.Add(right) : left.Sub(right);
      if (!r) return absl::OutOfRangeError("arithmetic overflow");
      left = *r;
    }
  }

  absl::StatusOr<Rational> Product(int depth) {
    GRPO_ASSIGN_OR_RETURN(Rational left, Atom(depth));
    while (true) {
      size_t save = p_;
      char op = Op();
      if (op != '*' && op != '/') {
        p_ = save;
        return left;
      }
      GRPO_ASSIGN_OR_RETURN(Rational right, Atom(depth));
      if (op == '/' && right.is_zero()) return absl::InvalidArgumentError("division by zero");
      auto r = op == '*' ? left.Mul(right) : left.Div(right);
      if (!r) return absl::OutOfRangeError("arithmetic overflow");
      left = *r;
    }
  }

  absl::StatusOr<Rational> Atom(int depth) {
    if (depth > kMaxDepth) return absl::InvalidArgumentError("nested too deeply");
    Skip();
    if (p_ >= s_.size()) return absl::InvalidArgumentError("unexpected end");
    char c = s_[p_];
    if (c == '(') {
      ++p_;
      GRPO_ASSIGN_OR_RETURN(Rational v, Sum(depth + 1));
      Skip();
      if (p_ >= s_.size() || s_[p_] != ')') return absl::InvalidArgumentError("missing )");
      ++p_;
      return v;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      int64_t v = 0;
      size_t digits = 0;
      while (p_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[p_]))) {
        if (++digits > 12) return absl::InvalidArgumentError("number too long");
        v = v * 10 + (s_[p_++] - '0');
      }
      if (used_->size() >= kMaxNumbers) return absl::InvalidArgumentError("too many numbers");
      used_->push_back(v);
      return Rational(v);
    }
    return absl::InvalidArgumentError(c == '-' ? "unary minus is not allowed"
                                            : "unexpected '" + std::string(1, c) + "'");
  }

  std::string_view s_;
  std::vector<int64_t>* used_;
  size_t p_ = 0;
};

// Every integer (optionally negative) in `s`, e.g. "[3, 7, 25]" -> {3, 7, 25}.
absl::StatusOr<std::vector<int64_t>> IntegersIn(std::string_view s, std::string_view what) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < s.size();) {
    bool neg = s[i] == '-' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]));
    if (neg || std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (neg) ++i;
      int64_t v = 0;
      size_t digits = 0;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        if (++digits > 12) return absl::InvalidArgumentError(std::string(what) + ": number too long");
        v = v * 10 + (s[i++] - '0');
      }
      if (i < s.size() && s[i] == '.')
        return absl::InvalidArgumentError(std::string(what) + ": not an integer");
      out.push_back(neg ? -v : v);
      if (out.size() > kMaxNumbers) return absl::InvalidArgumentError(std::string(what) + ": too many");
    } else {
      ++i;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Rational> EvalCountdownExpression(std::string_view expr, std::vector<int64_t>* used) {
  if (expr.size() > kMaxExprBytes) return absl::InvalidArgumentError("equation too long");
  used->clear();
  return ExprParser(expr, used).Parse();
}

std::string CountdownRule::Describe() const {
  return "1 if the <answer> equation uses each number once with + - * / and hits the target, " +
         std::to_string(options_.format_score) + " if an equation is there but wrong, else 0";
}

absl::StatusOr<RuleOutput> CountdownRule::Score(const RewardItem& item) const {
  auto nums_it = item.meta.find("numbers");
  if (nums_it == item.meta.end()) nums_it = item.meta.find("nums");
  if (nums_it == item.meta.end())
    return absl::InvalidArgumentError("countdown: meta 'numbers' is required");
  GRPO_ASSIGN_OR_RETURN(std::vector<int64_t> numbers, IntegersIn(nums_it->second, "numbers"));
  if (numbers.empty()) return absl::InvalidArgumentError("countdown: meta 'numbers' has no integer");
  auto target_it = item.meta.find("target");
  std::string target_text = target_it != item.meta.end() ? target_it->second : item.answer;
  GRPO_ASSIGN_OR_RETURN(std::vector<int64_t> target_v, IntegersIn(target_text, "target"));
  if (target_v.size() != 1)
    return absl::InvalidArgumentError("countdown: target must be one integer, got '" +
                                   target_text.substr(0, 32) + "'");
  Rational target(target_v[0]);

  RuleOutput out;
  std::optional<std::string> eq =
      ExtractAnswer(item.completion, {ExtractMethod::kAnswerTag, ExtractMethod::kBoxed});
  if (!eq) {
    out.detail = "no equation found";
    return out;
  }
  std::string_view expr = *eq;
  size_t eqpos = expr.find('=');
  std::optional<Rational> rhs;
  if (eqpos != std::string_view::npos) {
    std::vector<int64_t> ignore;
    auto r = EvalCountdownExpression(expr.substr(eqpos + 1), &ignore);
    if (!r.ok() || ignore.size() != 1) {
      out.score = options_.format_score;
      out.detail = "malformed right-hand side";
      return out;
    }
    rhs = *r;
    expr = expr.substr(0, eqpos);
  }
  std::vector<int64_t> used;
  absl::StatusOr<Rational> value = EvalCountdownExpression(expr, &used);
  out.score = options_.format_score;
  if (!value.ok()) {
    out.detail = "invalid equation: " + std::string(value.status().message());
    return out;
  }
  std::vector<int64_t> a = used, b = numbers;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a != b) {
    out.detail = "numbers not used exactly once";
    return out;
  }
  if (!(*value == target) || (rhs && !(*rhs == target))) {
    out.detail = "equation gives " + value->ToString() + ", target " + target.ToString();
    return out;
  }
  out.score = 1.0;
  out.detail = "correct";
  return out;
}

}  // namespace grpo::reward
