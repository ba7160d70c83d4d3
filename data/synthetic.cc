#include "data/synthetic.h"

#include <algorithm>

#include "data/dataset.h"

namespace grpo::data {
namespace {

// A partial expression: its value, text and the precedence of its top operator (3 = atom).
struct Term {
  int64_t value;
  std::string text;
  int precedence;
};

int Precedence(char op) { return (op == '+' || op == '-') ? 1 : 2; }

// Applies `op`; false when the result is not allowed (inexact division, out of bounds, ...).
bool Apply(char op, int64_t a, int64_t b, bool allow_negative, int64_t bound, int64_t* out) {
  __int128 r;
  switch (op) {
    case '+': r = static_cast<__int128>(a) + b; break;
    case '-': r = static_cast<__int128>(a) - b; break;
    case '*': r = static_cast<__int128>(a) * b; break;
    case '/':
      if (b == 0 || a % b != 0) return false;
      r = a / b;
      break;
    default: return false;
  }
  if (r > bound || r < -bound) return false;
  if (!allow_negative && r <= 0) return false;
  *out = static_cast<int64_t>(r);
  return true;
}

// Text of `l op r` with only the parentheses precedence requires (`minimal`), or with every
// compound operand parenthesized.
std::string Combine(const Term& l, char op, const Term& r, bool minimal) {
  const int p = Precedence(op);
  const bool left_paren = minimal ? l.precedence < p : l.precedence < 3;
  const bool right_paren =
      minimal ? (r.precedence < p || (r.precedence == p && (op == '-' || op == '/'))) : r.precedence < 3;
  auto wrap = [](const std::string& s, bool paren) { return paren ? "(" + s + ")" : s; };
  return wrap(l.text, left_paren) + " " + op + " " + wrap(r.text, right_paren);
}

// Combines the terms pairwise in random order until one remains; false if an operation failed.
bool BuildExpression(SplitMix64& rng, std::vector<Term> terms, const std::string& ops, bool allow_negative,
                     int64_t bound, bool minimal, Term* out) {
  while (terms.size() > 1) {
    const size_t i = rng.Below(terms.size());
    size_t j = rng.Below(terms.size() - 1);
    if (j >= i) ++j;
    const char op = ops[rng.Below(ops.size())];
    int64_t v;
    if (!Apply(op, terms[i].value, terms[j].value, allow_negative, bound, &v)) return false;
    Term t{v, Combine(terms[i], op, terms[j], minimal), Precedence(op)};
    const size_t hi = std::max(i, j), lo = std::min(i, j);
    terms.erase(terms.begin() + hi);
    terms[lo] = std::move(t);
  }
  *out = terms[0];
  return true;
}

absl::Status CheckOps(const std::string& ops) {
  if (ops.empty()) return absl::InvalidArgumentError("no operations allowed");
  for (char c : ops) {
    if (c != '+' && c != '-' && c != '*' && c != '/') {
      return absl::InvalidArgumentError(std::string("unknown operation '") + c + "' (use + - * /)");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Validate(const CountdownOptions& o) {
  GRPO_RETURN_IF_ERROR(grpo::WithContext(CheckOps(o.ops), "countdown"));
  if (o.min_numbers < 2 || o.max_numbers < o.min_numbers || o.max_numbers > 8) {
    return absl::InvalidArgumentError("countdown: numbers per instance must satisfy 2 <= min <= max <= 8");
  }
  if (o.min_number < 1 || o.max_number < o.min_number || o.max_number > 1000000) {
    return absl::InvalidArgumentError("countdown: number range must satisfy 1 <= min <= max <= 1000000");
  }
  if (o.min_target < 1 || o.max_target < o.min_target) {
    return absl::InvalidArgumentError("countdown: target range must satisfy 1 <= min <= max");
  }
  if (o.max_attempts < 1) return absl::InvalidArgumentError("countdown: max_attempts must be positive");
  return absl::OkStatus();
}

absl::Status Validate(const ArithmeticOptions& o) {
  GRPO_RETURN_IF_ERROR(grpo::WithContext(CheckOps(o.ops), "arithmetic"));
  if (o.min_steps < 1 || o.max_steps < o.min_steps || o.max_steps > 32) {
    return absl::InvalidArgumentError("arithmetic: steps must satisfy 1 <= min <= max <= 32");
  }
  if (o.max_operand < o.min_operand || o.min_operand < -1000000000 || o.max_operand > 1000000000) {
    return absl::InvalidArgumentError("arithmetic: operand range must satisfy min <= max within +-1e9");
  }
  if (!o.allow_negative && o.min_operand < 1) {
    return absl::InvalidArgumentError("arithmetic: min_operand must be >= 1 unless negatives are allowed");
  }
  if (o.max_abs_value < 1 || o.max_attempts < 1) {
    return absl::InvalidArgumentError("arithmetic: max_abs_value and max_attempts must be positive");
  }
  return absl::OkStatus();
}

absl::StatusOr<Example> GenerateCountdown(SplitMix64& rng, const CountdownOptions& o) {
  GRPO_RETURN_IF_ERROR(Validate(o));
  for (int attempt = 0; attempt < o.max_attempts; ++attempt) {
    const int k = static_cast<int>(rng.Range(o.min_numbers, o.max_numbers));
    std::vector<Term> terms;
    std::vector<int64_t> nums;
    for (int i = 0; i < k; ++i) {
      const int64_t n = rng.Range(o.min_number, o.max_number);
      nums.push_back(n);
      terms.push_back({n, std::to_string(n), 3});
    }
    Term result;
    if (!BuildExpression(rng, terms, o.ops, /*allow_negative=*/false, INT64_C(1) << 40, /*minimal=*/false,
                         &result)) {
      continue;
    }
    if (result.value < o.min_target || result.value > o.max_target) continue;
    Example e;
    e.task = "countdown";
    e.question = CountdownQuestion(nums, result.value);
    e.answer = std::to_string(result.value);
    e.solution = result.text;
    e.meta = nlohmann::json{{"nums", nums}, {"target", result.value}};
    std::string list = "[";
    for (size_t i = 0; i < nums.size(); ++i) list += (i ? ", " : "") + std::to_string(nums[i]);
    e.fields = {{"question", e.question}, {"answer", e.answer}, {"nums", list + "]"}, {"target", e.answer}};
    return e;
  }
  return absl::ResourceExhaustedError("countdown: no instance within " + std::to_string(o.max_attempts) +
                                   " attempts; widen the target range");
}

absl::StatusOr<Example> GenerateArithmetic(SplitMix64& rng, const ArithmeticOptions& o) {
  GRPO_RETURN_IF_ERROR(Validate(o));
  for (int attempt = 0; attempt < o.max_attempts; ++attempt) {
    const int steps = static_cast<int>(rng.Range(o.min_steps, o.max_steps));
    std::vector<Term> terms;
    for (int i = 0; i <= steps; ++i) {
      const int64_t n = rng.Range(o.min_operand, o.max_operand);
      terms.push_back({n, n < 0 ? "(" + std::to_string(n) + ")" : std::to_string(n), 3});
    }
    Term result;
    if (!BuildExpression(rng, terms, o.ops, o.allow_negative, o.max_abs_value, /*minimal=*/true, &result)) {
      continue;
    }
    Example e;
    e.task = "arithmetic";
    e.question = "Compute the value of " + result.text + ".";
    e.answer = std::to_string(result.value);
    e.solution = result.text;
    e.meta = nlohmann::json{{"expression", result.text}, {"steps", steps}};
    e.fields = {{"question", e.question}, {"answer", e.answer}, {"expression", result.text}};
    return e;
  }
  return absl::ResourceExhaustedError("arithmetic: no instance within " + std::to_string(o.max_attempts) +
                                   " attempts; relax the options");
}

nlohmann::json ExampleToRow(const Example& e) {
  nlohmann::json row = {{"task", e.task}, {"question", e.question}, {"answer", e.answer}, {"solution", e.solution}};
  if (e.task == "countdown") {
    row["nums"] = e.meta.value("nums", nlohmann::json::array());
    row["target"] = e.meta.value("target", 0);
  }
  if (e.task == "arithmetic") row["expression"] = e.solution;
  return row;
}

}  // namespace grpo::data
