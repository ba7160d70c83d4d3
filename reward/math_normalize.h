// Normalization of a LaTeX / plain-text math answer before parsing.
//
// Removes what carries no value (`$`, `\(`/`\)`, `\left`/`\right`, spacing commands,
// `\displaystyle`, `^\circ`/`°`, `\%` -> `%`, trailing punctuation), unwraps `\text{...}`,
// `\mathrm{...}`, `\mbox{...}`, `\textbf{...}`, maps `\dfrac`/`\tfrac`/`\cfrac` to `\frac` and a
// few Unicode symbols (− × ÷ · ≤ ≥ ≠ π ∞ √) to their LaTeX commands, turns a lone decimal comma
// ("3,5" with not exactly three digits after the comma) into a point, and strips trailing unit
// words ("5 cm", "12 \text{ dollars}").
// A number followed by plain words written in text mode (`\text`, `\textbf`, `\textit`,
// `\textrm`, `\textnormal`, `\textup`, `\emph`, `\mbox`, `\hbox`, `\mathrm`) at the end of
// the answer loses the words: `12 \text{ apples}` and `\text{12 red apples}` become "12". Kept
// (the answer stays unequal to the bare number) when a word could change the value or add one:
// scale and fraction words (thousand, dozen, half, tenths, percent), number words, "pi", "or",
// "and", "to", "plus", "minus", "squared", "negative", "below", "than", "about", ... (the list is
// IsValueWord in math_normalize.cc), a word of one letter (left to the unit list: "5 \text{ m}"),
// more than six words, or words outside text mode ("12 apples" keeps "apples" unless it is a unit).
// Linear time; the output is never longer than the input plus a constant factor of 2.
#ifndef GRPO_REWARD_MATH_NORMALIZE_H_
#define GRPO_REWARD_MATH_NORMALIZE_H_

#include <string>
#include <string_view>

namespace grpo::reward {

std::string NormalizeMathAnswer(std::string_view text);

}  // namespace grpo::reward

#endif  // GRPO_REWARD_MATH_NORMALIZE_H_
