// Column addition, the task of the nano R1-Zero recipe, and the unreliable-teacher corpus its
// base model is pretrained on.
//
// Task: "a+b" with a, b uniform in [0, 10^digits); the gold answer is the sum. The worked
// solution is the column-by-column trace, least significant column first, each column written
// as "x+y=s" or "x+y+1=s" when a carry comes in, columns separated by ",":
//   47+38 -> "7+8=15,4+3+1=8" -> 85;      5+95 -> "5+5=10,0+9+1=10" -> 100.
// Operands have exactly `digits` columns (leading zeros in the trace, not in the question).
//
// Split: every pair (a, b) belongs to the held-out split or the training split by a fixed hash
// of (a, b, digits), so held-out questions never occur in training prompts or in the corpus.
//
// Unreliable teacher: a pretraining document is a prompt followed by a completion written in one
// of three styles, drawn with the given probabilities:
//   careful: "<think>TRACE</think><answer>SUM</answer>"          (the correct answer)
//   guess:   "<think>guess</think><answer>R</answer>"            (R uniform in [0, 2*10^digits))
//   plain:   "the answer is R"                                   (R uniform, no tags)
//   tool:    "<think><tool_call>a+b</tool_call><tool_result>SUM</tool_result></think><answer>SUM</answer>"
//            (a calculator call and its result, with the markers of ToolMarkers; for the
//            tool-use recipe, whose rollouts run the call, rollout/environment.h)
// so the corpus has the task and the answer format but answers that are mostly unreliable: a
// model trained on it answers correctly about as often as the careful style is chosen. RL with
// format + correctness rewards can learn to prefer the careful style.
#ifndef GRPO_DATA_ADDITION_H_
#define GRPO_DATA_ADDITION_H_

#include <cstdint>
#include <string>

#include "core/status.h"
#include "data/example.h"
#include "data/sampler.h"

namespace grpo::data {

enum class AdditionSplit { kTrain, kHeldOut };

struct AdditionOptions {
  int digits = 2;                 // 1..9
  double held_out_fraction = 0.1;  // [0, 1)
};

// The markers of the `tool` style (those of the calculator environment the recipe uses).
struct ToolMarkers {
  std::string call_start = "<tool_call>";
  std::string call_end = "</tool_call>";
  std::string result_start = "<tool_result>";
  std::string result_end = "</tool_result>";
};

struct TeacherMix {
  double careful = 0.4;
  double guess = 0.3;
  double plain = 0.3;
  double tool = 0.0;
  ToolMarkers markers;
};

absl::Status Validate(const AdditionOptions& options);
absl::Status Validate(const TeacherMix& mix);

bool IsHeldOut(int64_t a, int64_t b, const AdditionOptions& options);

// The column trace of a + b with `digits` columns (see above).
std::string ColumnAdditionTrace(int64_t a, int64_t b, int digits);

// An instance from `split` (task "addition", question "a+b", answer the sum, solution the trace).
Example GenerateAddition(SplitMix64& rng, const AdditionOptions& options, AdditionSplit split);

// A completion of `example` in a style drawn from `mix` (see above).
std::string TeacherCompletion(SplitMix64& rng, const Example& example, const AdditionOptions& options,
                              const TeacherMix& mix);

}  // namespace grpo::data

#endif  // GRPO_DATA_ADDITION_H_
