// The math answer lexer (internal to the math parser, math_parse.cc).
//
// Turns normalized answer text into tokens on demand: numbers (with thousands separators
// "1,234,567" and exponents "1.5e3"), single-letter identifiers (letter runs of 2-3 split into
// letters; "or"/"and" are commas; runs of 4+ are words; plain "sqrt", "pi", "sin", ... are
// commands), LaTeX commands (operators and relations such as \cdot, \le, \pm, \cup mapped to
// their symbols), `\{`/`\}` set braces and single-character symbols. NextChar() takes one
// character for unbraced arguments (`\frac12`). Every call is O(length of the token).
#ifndef GRPO_REWARD_MATH_LEX_H_
#define GRPO_REWARD_MATH_LEX_H_

#include <cctype>
#include <cstdint>
#include <optional>
#include <string_view>

#include "reward/math_parse.h"

namespace grpo::reward::lex {

inline bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

enum class Tok : uint8_t {
  kEnd, kNum, kIdent, kWord, kCmd, kSym, kLSet, kRSet, kRel, kPm, kMp, kCup, kComma, kBad
};

struct Token {
  Tok kind = Tok::kEnd;
  char sym = 0;          // kSym: + - * / ^ _ ( ) [ ] { } ! | %
  RelOp rel = RelOp::kEq;  // kRel
  bool space_before = false;
  size_t begin = 0, end = 0;  // source span
  std::string_view text;      // kNum digits, kIdent letter, kCmd name, kWord
};

inline bool IsGreek(std::string_view n) {
  static constexpr const char* kGreek[] = {
      "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
      "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau",
      "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda",
      "Xi", "Sigma", "Phi", "Psi", "Omega"};
  for (const char* g : kGreek)
    if (n == g) return true;
  return false;
}

inline std::optional<Fn> FnByName(std::string_view n) {
  struct E { const char* name; Fn fn; };
  static constexpr E kFns[] = {
      {"sin", Fn::kSin}, {"cos", Fn::kCos}, {"tan", Fn::kTan}, {"sec", Fn::kSec},
      {"csc", Fn::kCsc}, {"cot", Fn::kCot}, {"arcsin", Fn::kAsin}, {"arccos", Fn::kAcos},
      {"arctan", Fn::kAtan}, {"ln", Fn::kLn}, {"log", Fn::kLog}, {"exp", Fn::kExp},
      {"lfloor", Fn::kFloor}, {"lceil", Fn::kCeil}};
  for (const E& e : kFns)
    if (n == e.name) return e.fn;
  return std::nullopt;
}

// Plain-text names models write without a backslash.
inline bool IsPlainName(std::string_view w) {
  return w == "sqrt" || w == "pi" || w == "sin" || w == "cos" || w == "tan" || w == "ln" ||
         w == "log" || w == "exp" || w == "infty" || w == "inf" || w == "arcsin" ||
         w == "arccos" || w == "arctan";
}

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  const Token& Peek() {
    if (!has_) {
      tok_ = Lex();
      has_ = true;
    }
    return tok_;
  }
  Token Next() {
    Peek();
    has_ = false;
    pos_ = tok_.end;
    return tok_;
  }
  // For unbraced \frac12 and \sqrt2: one character (a digit or letter) as a number/variable.
  std::optional<char> NextChar() {
    has_ = false;
    size_t p = pos_;
    while (p < s_.size() && s_[p] == ' ') ++p;
    if (p < s_.size() && (IsDigit(s_[p]) || IsLetter(s_[p]))) {
      pos_ = p + 1;
      return s_[p];
    }
    return std::nullopt;
  }
  size_t pos() const { return pos_; }
  std::string_view source() const { return s_; }

 private:
  Token Lex() {
    Token t;
    size_t p = pos_;
    while (p < s_.size() && std::isspace(static_cast<unsigned char>(s_[p]))) {
      ++p;
      t.space_before = true;
    }
    t.begin = p;
    if (p >= s_.size()) {
      t.kind = Tok::kEnd;
      t.end = p;
      return t;
    }
    char c = s_[p];
    if (IsDigit(c) || (c == '.' && p + 1 < s_.size() && IsDigit(s_[p + 1]))) return LexNumber(t, p);
    if (IsLetter(c)) {
      size_t q = p;
      while (q < s_.size() && IsLetter(s_[q])) ++q;
      std::string_view run = s_.substr(p, q - p);
      if (IsPlainName(run)) {
        t.kind = Tok::kCmd;
        t.text = run == "inf" ? std::string_view("infty") : run;
        t.end = q;
        return t;
      }
      if (run == "or" || run == "and") {
        t.kind = Tok::kComma;
        t.end = q;
        return t;
      }
      if (run.size() >= 4) {
        t.kind = Tok::kWord;
        t.text = run;
        t.end = q;
        return t;
      }
      t.kind = Tok::kIdent;
      t.text = s_.substr(p, 1);
      t.end = p + 1;
      return t;
    }
    if (c == '\\') {
      size_t q = p + 1;
      if (q < s_.size() && (s_[q] == '{' || s_[q] == '}')) {
        t.kind = s_[q] == '{' ? Tok::kLSet : Tok::kRSet;
        t.end = q + 1;
        return t;
      }
      while (q < s_.size() && IsLetter(s_[q])) ++q;
      std::string_view n = s_.substr(p + 1, q - p - 1);
      t.end = q;
      if (n.empty()) {
        t.kind = Tok::kBad;
        t.end = p + 1;
        return t;
      }
      return LexCommand(t, n);
    }
    t.end = p + 1;
    switch (c) {
      case '+': case '-': case '*': case '/': case '^': case '_': case '(': case ')':
      case '[': case ']': case '{': case '}': case '!': case '|': case '%':
        if (c == '!' && p + 1 < s_.size() && s_[p + 1] == '=') {
          t.kind = Tok::kRel;
          t.rel = RelOp::kNe;
          t.end = p + 2;
          return t;
        }
        t.kind = Tok::kSym;
        t.sym = c;
        return t;
      case ',': case ';':
        t.kind = Tok::kComma;
        return t;
      case '=':
        t.kind = Tok::kRel;
        t.rel = RelOp::kEq;
        if (p + 1 < s_.size() && s_[p + 1] == '=') t.end = p + 2;
        return t;
      case '<': case '>': {
        t.kind = Tok::kRel;
        bool eq = p + 1 < s_.size() && s_[p + 1] == '=';
        t.rel = c == '<' ? (eq ? RelOp::kLe : RelOp::kLt) : (eq ? RelOp::kGe : RelOp::kGt);
        if (eq) t.end = p + 2;
        return t;
      }
      default:
        t.kind = Tok::kBad;
        return t;
    }
  }

  Token LexNumber(Token t, size_t p) {
    size_t q = p;
    size_t int_digits = 0;
    while (q < s_.size() && IsDigit(s_[q])) ++q, ++int_digits;
    // Thousands separators: 1,234,567 (groups of exactly three digits).
    if (int_digits >= 1 && int_digits <= 3) {
      while (q + 3 < s_.size() + 0 && s_[q] == ',' && IsDigit(s_[q + 1]) && IsDigit(s_[q + 2]) &&
             IsDigit(s_[q + 3]) && (q + 4 >= s_.size() || !IsDigit(s_[q + 4]))) {
        q += 4;
        t.kind = Tok::kNum;
      }
    }
    if (q < s_.size() && s_[q] == '.' && q + 1 < s_.size() && IsDigit(s_[q + 1])) {
      ++q;
      while (q < s_.size() && IsDigit(s_[q])) ++q;
    }
    if (q + 1 < s_.size() && (s_[q] == 'e' || s_[q] == 'E')) {
      size_t r = q + 1;
      if (r < s_.size() && (s_[r] == '+' || s_[r] == '-')) ++r;
      if (r < s_.size() && IsDigit(s_[r])) {
        while (r < s_.size() && IsDigit(s_[r])) ++r;
        q = r;
      }
    }
    t.kind = Tok::kNum;
    t.text = s_.substr(p, q - p);
    t.end = q;
    return t;
  }

  Token LexCommand(Token t, std::string_view n) {
    struct E { const char* name; Tok kind; char sym; RelOp rel; };
    static constexpr E kCmds[] = {
        {"cdot", Tok::kSym, '*', RelOp::kEq},   {"times", Tok::kSym, '*', RelOp::kEq},
        {"ast", Tok::kSym, '*', RelOp::kEq},    {"div", Tok::kSym, '/', RelOp::kEq},
        {"le", Tok::kRel, 0, RelOp::kLe},       {"leq", Tok::kRel, 0, RelOp::kLe},
        {"leqslant", Tok::kRel, 0, RelOp::kLe}, {"ge", Tok::kRel, 0, RelOp::kGe},
        {"geq", Tok::kRel, 0, RelOp::kGe},      {"geqslant", Tok::kRel, 0, RelOp::kGe},
        {"lt", Tok::kRel, 0, RelOp::kLt},       {"gt", Tok::kRel, 0, RelOp::kGt},
        {"ne", Tok::kRel, 0, RelOp::kNe},       {"neq", Tok::kRel, 0, RelOp::kNe},
        {"in", Tok::kRel, 0, RelOp::kIn},       {"approx", Tok::kRel, 0, RelOp::kApprox},
        {"pm", Tok::kPm, 0, RelOp::kEq},        {"mp", Tok::kMp, 0, RelOp::kEq},
        {"cup", Tok::kCup, 0, RelOp::kEq},      {"lbrace", Tok::kLSet, 0, RelOp::kEq},
        {"rbrace", Tok::kRSet, 0, RelOp::kEq},  {"langle", Tok::kSym, '(', RelOp::kEq},
        {"rangle", Tok::kSym, ')', RelOp::kEq}, {"lvert", Tok::kSym, '|', RelOp::kEq},
        {"rvert", Tok::kSym, '|', RelOp::kEq},  {"vert", Tok::kSym, '|', RelOp::kEq},
        {"rfloor", Tok::kSym, ')', RelOp::kEq}, {"rceil", Tok::kSym, ')', RelOp::kEq},
        {"colon", Tok::kBad, 0, RelOp::kEq}};
    for (const E& e : kCmds) {
      if (n == e.name) {
        t.kind = e.kind;
        t.sym = e.sym;
        t.rel = e.rel;
        return t;
      }
    }
    t.kind = Tok::kCmd;
    t.text = n;
    return t;
  }

  std::string_view s_;
  size_t pos_ = 0;
  bool has_ = false;
  Token tok_;
};


}  // namespace grpo::reward::lex

#endif  // GRPO_REWARD_MATH_LEX_H_
