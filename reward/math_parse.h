// The math answer parser: normalized text -> an answer tree (sets, tuples, intervals, relations,
// text) whose scalars are expression trees in one node arena.
//
// Grammar (informal, loosest first): comma/`;`/"or"/"and" lists (a top-level list is an
// unordered set); relations (`=`, `<`, `\le`, `\ne`, `\in`, chains); `\cup` unions; sums
// (`+ - \pm \mp`); products (`* \cdot \times / \div`, implicit `2x`, mixed numbers
// `2\frac{1}{2}` and `2 1/2` mean 2 + 1/2); unary signs; powers (`^`, right-associative);
// postfix `!` and `%`; primaries: numbers (thousands separators, scientific `1.5e3`),
// variables (`x`, `x_1`, Greek letters), `\pi`, `e`, `\infty`, `\frac{a}{b}`/`\frac12`,
// `\sqrt[n]{x}`, functions (`\sin \cos \tan \ln \log \log_b \exp`, plain `sqrt(2)`, ...),
// `|x|`, `\binom{n}{k}`, groups `( ) [ ] { }`, tuples and intervals `(a, b]`, sets `\{a, b\}`.
// Letter runs of four or more ("Evelyn") make the whole answer a text answer.
//
// Bounds: input longer than Limits::kMaxAnswerBytes, nesting deeper than Limits::kMaxDepth or
// more than kMaxNodes nodes make the parse fail; the parser is linear in its input otherwise.
#ifndef GRPO_REWARD_MATH_PARSE_H_
#define GRPO_REWARD_MATH_PARSE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "reward/rational.h"

namespace grpo::reward {

enum class NodeKind : uint8_t {
  kNum,      // literal: q (exact) or v (inexact: too long for 128 bits)
  kVar,      // variable id
  kPi,
  kE,
  kInf,      // \infty
  kAdd, kSub, kMul, kDiv, kPow,  // a op b
  kNeg,      // -a
  kPm,       // a ± b (a == -1 for a unary ±); sign chosen per evaluation
  kRoot,     // a-th root... radicand a, index b (-1: square root)
  kFunc,     // fn id applied to a (b: log base or -1)
  kFact,     // a!
  kAbs,      // |a|
  kBinom,    // binom(a, b)
  kPercent,  // a%  (a / 100 in arithmetic)
  kTuple,    // kids, with brackets open/close
  kSet,      // kids (unordered)
  kUnion,    // kids (a ∪ b ∪ ...)
  kRel,      // kids, with rel_ops between consecutive kids
};

enum class Fn : uint8_t { kSin, kCos, kTan, kSec, kCsc, kCot, kAsin, kAcos, kAtan, kLn, kLog,
                          kExp, kFloor, kCeil };

// Relation operators between kRel kids.
enum class RelOp : uint8_t { kEq, kLt, kLe, kGt, kGe, kNe, kIn, kApprox };

struct Node {
  NodeKind kind = NodeKind::kNum;
  bool exact = true;      // kNum: q is the exact value
  bool int_literal = false;  // kNum written as a plain integer (for mixed numbers)
  char open = 0, close = 0;  // kTuple brackets
  uint8_t fn = 0;            // kFunc
  int a = -1, b = -1;
  int id = 0;                // kVar: variable id; kPm: index among ± nodes
  Rational q;
  long double v = 0;
  std::string literal;       // kNum when !exact: the digits as written (no separators)
  std::vector<int> kids;     // kTuple / kSet / kUnion / kRel
  std::vector<RelOp> ops;    // kRel
};

// A parsed answer: an arena of nodes and a root, or a text answer.
struct ParsedMath {
  static constexpr size_t kMaxNodes = 1024;
  std::vector<Node> nodes;
  int root = -1;
  bool is_text = false;  // a word answer; compare `text`
  std::string text;      // lower-cased, whitespace-free normalized text (always set)
  std::vector<std::string> var_names;  // by variable id
  int num_pm = 0;                      // number of kPm nodes
};

// Parses `raw` (normalized first with NormalizeMathAnswer). InvalidArgument when unparsable.
absl::StatusOr<ParsedMath> ParseMath(std::string_view raw);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_MATH_PARSE_H_
