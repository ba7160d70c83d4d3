#include "rollout/environment.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace grpo {

absl::StatusOr<std::vector<uint8_t>> GeneratedTokenMask(int64_t num_tokens, const std::vector<EnvironmentSpan>& spans) {
  std::vector<uint8_t> mask(num_tokens, 1);
  int64_t end = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const EnvironmentSpan& s = spans[i];
    if (s.first_token < end || s.num_tokens < 0 || s.first_token + s.num_tokens > num_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("environment span ", i, " [", s.first_token, ", +", s.num_tokens,
                                                     ") is out of order or outside the ", num_tokens,
                                                     " completion tokens"));
    }
    std::fill(mask.begin() + s.first_token, mask.begin() + s.first_token + s.num_tokens, 0);
    end = s.first_token + s.num_tokens;
  }
  return mask;
}

namespace {

// Recursive descent over expr := term (('+'|'-') term)*, term := unary (('*'|'/'|'%') unary)*,
// unary := '-' unary | '(' expr ')' | digits. Errors leave `error` set and the value 0.
class Calculator {
 public:
  explicit Calculator(const std::string& s) : s_(s) {}

  std::string Run() {
    const int64_t v = Expr(0);
    Skip();
    if (error_.empty() && i_ != s_.size()) Fail(Unexpected());
    return error_.empty() ? std::to_string(v) : "error: " + error_;
  }

 private:
  static constexpr int kMaxDepth = 64;

  void Skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool Eat(char c) {
    Skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  int64_t Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return 0;
  }
  // The character at i_, named without cutting a multi-byte one.
  std::string Unexpected() const {
    const unsigned char c = static_cast<unsigned char>(s_[i_]);
    return c < 0x80 ? absl::StrCat("unexpected '", s_.substr(i_, 1), "'") : "unexpected non-ASCII character";
  }
  int64_t Checked(bool overflowed, int64_t v) { return overflowed ? Fail("result beyond 64 bits") : v; }

  int64_t Expr(int depth) {
    int64_t v = Term(depth);
    while (error_.empty()) {
      int64_t r = 0;
      if (Eat('+')) {
        const int64_t t = Term(depth);
        const bool over = __builtin_add_overflow(v, t, &r);
        v = Checked(over, r);
      } else if (Eat('-')) {
        const int64_t t = Term(depth);
        const bool over = __builtin_sub_overflow(v, t, &r);
        v = Checked(over, r);
      } else {
        break;
      }
    }
    return v;
  }

  int64_t Term(int depth) {
    int64_t v = Unary(depth);
    while (error_.empty()) {
      int64_t r = 0;
      if (Eat('*')) {
        const int64_t t = Unary(depth);
        const bool over = __builtin_mul_overflow(v, t, &r);
        v = Checked(over, r);
      } else if (const bool div = Eat('/'); div || Eat('%')) {
        const int64_t t = Unary(depth);
        if (!error_.empty()) break;
        if (t == 0) return Fail("division by zero");
        if (v == std::numeric_limits<int64_t>::min() && t == -1) return Fail("result beyond 64 bits");
        v = div ? v / t : v % t;
      } else {
        break;
      }
    }
    return v;
  }

  int64_t Unary(int depth) {
    if (depth > kMaxDepth) return Fail("nested too deeply");
    if (Eat('-')) {
      const int64_t v = Unary(depth + 1);
      return v == std::numeric_limits<int64_t>::min() ? Fail("result beyond 64 bits") : -v;
    }
    if (Eat('(')) {
      const int64_t v = Expr(depth + 1);
      if (!Eat(')')) return Fail("missing ')'");
      return v;
    }
    Skip();
    if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      return Fail(i_ >= s_.size() ? "unexpected end of expression" : Unexpected());
    }
    int64_t v = 0;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s_[i_] - '0', &v)) {
        return Fail("number beyond 64 bits");
      }
      ++i_;
    }
    return v;
  }

  const std::string& s_;
  size_t i_ = 0;
  std::string error_;
};

class TaggedTool : public Environment {
 public:
  TaggedTool(std::string name, std::string argument_name, ToolTags tags, ToolFunction run)
      : name_(std::move(name)), argument_(std::move(argument_name)), tags_(std::move(tags)), run_(std::move(run)) {}

  const std::string& call_end() const override { return tags_.call_end; }

  absl::StatusOr<ToolResult> Call(const std::string& completion) override {
    const size_t end = completion.rfind(tags_.call_end);
    if (end == std::string::npos) {
      return absl::InvalidArgumentError("the completion does not contain the call marker '" + tags_.call_end + "'");
    }
    ToolResult r;
    r.tool = name_;
    const size_t start = completion.rfind(tags_.call_start, end);
    if (start == std::string::npos) {
      r.call = completion.substr(end);
      r.output = "error: no " + tags_.call_start + " before " + tags_.call_end;
    } else {
      r.call = completion.substr(start);
      const size_t body_at = start + tags_.call_start.size();
      const std::string body = completion.substr(body_at, end - body_at);
      r.arguments = nlohmann::json{{argument_, body}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      r.output = run_(body);
    }
    if (r.arguments.empty()) r.arguments = "{}";
    r.result_start = tags_.result_start;
    r.result_end = tags_.result_end;
    return r;
  }

 private:
  const std::string name_, argument_;
  const ToolTags tags_;
  const ToolFunction run_;
};

}  // namespace

std::string Calculate(const std::string& expression) { return Calculator(expression).Run(); }

std::unique_ptr<Environment> MakeTaggedTool(std::string name, std::string argument_name, ToolTags tags,
                                            ToolFunction run) {
  return std::make_unique<TaggedTool>(std::move(name), std::move(argument_name), std::move(tags), std::move(run));
}

std::unique_ptr<Environment> MakeCalculatorEnvironment(ToolTags tags) {
  return MakeTaggedTool("calculator", "expression", std::move(tags), Calculate);
}

}  // namespace grpo
