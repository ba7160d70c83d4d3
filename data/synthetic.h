// Synthetic tasks for runs that need no download, each instance with its gold answer.
//
//  - Countdown: numbers and a target reachable by combining all the numbers with + - * /
//    (each used exactly once; every intermediate value a positive integer), solvable by
//    construction: a random expression is built first and its value becomes the target.
//    Example.solution holds that expression; Example.meta {"nums": [...], "target": n}.
//  - Arithmetic: a multi-step integer expression ("(23 + 17) * 3 - 48 / 6") to evaluate; exact
//    division only; the answer is the value (as text). Example.solution holds the expression.
// Generation is deterministic given the SplitMix64 state (data/sampler.h).
#ifndef GRPO_DATA_SYNTHETIC_H_
#define GRPO_DATA_SYNTHETIC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "data/example.h"
#include "data/sampler.h"

namespace grpo::data {

struct CountdownOptions {
  int min_numbers = 3;  // difficulty: how many numbers must be combined
  int max_numbers = 4;
  int64_t min_number = 1;  // range of each number
  int64_t max_number = 100;
  int64_t min_target = 1;  // range of the target
  int64_t max_target = 1000;
  std::string ops = "+-*/";  // allowed operations
  int max_attempts = 10000;  // expressions tried before giving up (then ResourceExhausted)
};

struct ArithmeticOptions {
  int min_steps = 2;  // difficulty: operations in the expression
  int max_steps = 4;
  int64_t min_operand = 1;
  int64_t max_operand = 100;
  std::string ops = "+-*/";
  bool allow_negative = false;  // intermediate and final values may be negative
  int64_t max_abs_value = 1000000;  // bound on every intermediate value
  int max_attempts = 10000;
};

// Errors: InvalidArgument for inconsistent options, ResourceExhausted when no instance was found
// within max_attempts (e.g. a target range no expression reaches).
absl::Status Validate(const CountdownOptions& o);
absl::Status Validate(const ArithmeticOptions& o);
absl::StatusOr<Example> GenerateCountdown(SplitMix64& rng, const CountdownOptions& options);
absl::StatusOr<Example> GenerateArithmetic(SplitMix64& rng, const ArithmeticOptions& options);

// The JSON Lines row written by `grpo data gen` (readable back with the countdown or generic
// dataset formats): {"task", "question", "answer", "solution", and "nums"/"target" for Countdown}.
nlohmann::json ExampleToRow(const Example& example);

}  // namespace grpo::data

#endif  // GRPO_DATA_SYNTHETIC_H_
