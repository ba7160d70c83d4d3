// Normalization of a LaTeX / plain-text math answer before parsing.
//
// Removes what carries no value (`$`, `\(`/`\)`, `\left`/`\right`, spacing commands,
// `\displaystyle`, `^\circ`/`°`, `\%` -> `%`, trailing punctuation), unwraps `\text{...}`,
// `\mathrm{...}`, `\mbox{...}`, `\textbf{...}`, maps `\dfrac`/`\tfrac`/`\cfrac` to `\frac` and a
// few Unicode symbols (− × ÷ · ≤ ≥ ≠ π ∞ √) to their LaTeX commands, turns a lone decimal comma
// ("3,5" with not exactly three digits after the comma) into a point, and strips trailing unit
// words ("5 cm", "12 \text{ dollars}"). Linear time; the output is never longer than the input
// plus a constant factor of 2.
#ifndef GRPO_REWARD_MATH_NORMALIZE_H_
#define GRPO_REWARD_MATH_NORMALIZE_H_

#include <string>
#include <string_view>

namespace grpo::reward {

std::string NormalizeMathAnswer(std::string_view text);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_MATH_NORMALIZE_H_
