// Math answer equivalence: is a predicted answer the same mathematical object as the gold one?
//
// Both answers are parsed with ParseMath, then compared structurally:
//  - Scalars: variable-free expressions are evaluated exactly (128-bit rationals) when every
//    step is rational (so 1/2 == 0.5 == \frac{2}{4} == 50\%-of-1, and 0.3333 != 1/3); with
//    irrationals (\sqrt, \pi, e, logs) they are evaluated in long double and compared with a
//    relative tolerance of 1e-9. Expressions with variables are evaluated at six fixed
//    pseudo-random rational points (exactly while every step is rational, else with relative
//    tolerance 1e-8); points where both sides are undefined are
//    skipped, at least three must be defined on both sides, and a point where only one side is
//    defined makes them different. Integers too long for 128 bits compare digit by digit.
//  - Percent: "50%" equals 50 and 0.5 (a percent sign on either side may be dropped or mean /100).
//  - `x = 5` and `5 = x` equal 5; `x \in S` equals S; `\pm` expands to a set of values.
//  - Unordered sets (`\{..\}` and top-level comma lists): every element of each side equals an
//    element of the other. Ordered tuples: same length, element by element.
//  - Intervals: a two-element bracketed pair `(a, b]` is an interval when compared with an
//    interval; brackets must match exactly; unions (`\cup`) compare as sets of intervals;
//    inequalities in one variable (`x > 2`, `1 < x \le 3`, `x \ge 2`) equal their interval.
//  - Text answers (a run of four or more letters) compare as lower-cased text without spaces.
// A gold answer that cannot be parsed is an error (the data is broken); a prediction that cannot
// be parsed is simply not equivalent.
#ifndef GRPO_REWARD_MATH_EQUIV_H_
#define GRPO_REWARD_MATH_EQUIV_H_

#include <string>
#include <string_view>

#include "core/status.h"
#include "reward/math_parse.h"

namespace grpo::reward {

// True when `pred` is equivalent to `gold`; InvalidArgument when `gold` is unparsable.
// `detail` (optional) receives a short explanation.
absl::StatusOr<bool> MathEquivalent(std::string_view gold, std::string_view pred,
                            std::string* detail = nullptr);

// OK when a parsed gold answer has a structure the comparison supports.
absl::Status CheckGoldStructure(const ParsedMath& gold);

// The same with a gold answer parsed once (e.g. reused across a group of completions).
bool MathEquivalentParsed(const ParsedMath& gold, std::string_view pred,
                          std::string* detail = nullptr);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_MATH_EQUIV_H_
