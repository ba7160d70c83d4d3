// Environments for multi-turn tool use in the rollout engine (rollout/engine.h, GroupRequest::
// environment). A sample generates until its decoded text comes to contain the environment's
// call marker (call_end(), e.g. "</tool_call>"); the engine then hands the text so far to Call,
// tokenizes the returned ToolResult::text(), appends those ids to the sample (logprob 0, masked out
// of the loss) and lets the sample go on generating from its kept KV cache.
//
// Contract:
//  - Call runs on one of the engine's tool-call threads (EngineOptions::tool_call_threads; with
//    0, on its loop thread between two steps): the calling sample waits for it while the others
//    go on decoding. Calls of one environment may run concurrently, so an Environment must be
//    thread-safe, and bounded by its own deadline.
//  - A call the tool cannot run (malformed, failing, too slow) is not an error of Call: its
//    ToolResult says what went wrong in `output`, as a tool would tell a model. A non-OK status
//    means the environment itself failed; the engine then aborts that sample.
//  - The engine makes every text of a ToolResult valid UTF-8 (invalid bytes become U+FFFD) before
//    tokenizing it, so a tool may answer with arbitrary bytes.
//  - The ids the learner trains on are exactly the ids generated and appended (token in, token
//    out): an appended text is tokenized once, on its own, and never re-tokenized with its
//    neighbours.
#ifndef GRPO_ROLLOUT_ENVIRONMENT_H_
#define GRPO_ROLLOUT_ENVIRONMENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace grpo {

// One tool call as the environment saw and answered it.
struct ToolResult {
  std::string tool;       // the tool's name ("calculator", "python")
  std::string call;       // the call as the model wrote it, markers included (a suffix of its text)
  std::string arguments;  // the call's arguments as a JSON object text (OpenAI function.arguments)
  std::string output;     // what the tool answered (OpenAI "tool" message content)
  // What is appended to the sample is result_start + output + result_end. The markers are
  // tokenized with the tokenizer's added/special tokens recognized, the output (untrusted) as
  // plain text, so a tool cannot inject "<|im_end|>" and the like.
  std::string result_start, result_end;
  std::string text() const { return result_start + output + result_end; }
  bool operator==(const ToolResult&) const = default;
};

// The tokens an environment appended to a sample: completion tokens [first_token, first_token +
// num_tokens), produced by tokenizing result.text() (cut to the request's max_tool_output_tokens
// and to what is left of the sample's max_new_tokens).
struct EnvironmentSpan {
  int64_t first_token = 0;
  int64_t num_tokens = 0;
  ToolResult result;
  bool operator==(const EnvironmentSpan&) const = default;
};

// 1 for every completion token the model generated, 0 for the tokens of `spans`: the per-token
// loss mask of a multi-turn sample. InvalidArgument for a span outside [0, num_tokens) or spans
// out of order or overlapping.
absl::StatusOr<std::vector<uint8_t>> GeneratedTokenMask(int64_t num_tokens, const std::vector<EnvironmentSpan>& spans);

class Environment {
 public:
  virtual ~Environment() = default;
  // The text that ends a tool call; nonempty.
  virtual const std::string& call_end() const = 0;
  // Runs the call that ends `completion` (the sample's decoded text so far, which ends with
  // call_end()). See the contract above for errors.
  virtual absl::StatusOr<ToolResult> Call(const std::string& completion) = 0;
};

// The markers of a tagged tool: a call is call_start BODY call_end, its answer result_start
// OUTPUT result_end.
struct ToolTags {
  std::string call_start = "<tool_call>";
  std::string call_end = "</tool_call>";
  std::string result_start = "<tool_result>";
  std::string result_end = "</tool_result>";
  bool operator==(const ToolTags&) const = default;
};

// What a tagged tool does with a call's body: the output text (errors included), never failing
// for bad input.
using ToolFunction = std::function<std::string(const std::string& body)>;

// A tagged tool `name` over `run`: Call finds the last call_start before the closing marker (a
// call without one answers "error: no <call_start> before <call_end>"), passes the body, and
// wraps the output. `arguments` is {"<argument_name>": body} as JSON.
std::unique_ptr<Environment> MakeTaggedTool(std::string name, std::string argument_name, ToolTags tags,
                                            ToolFunction run);

// The built-in calculator: integer arithmetic over + - * / %, unary minus and parentheses
// (division truncates toward zero, as C does). The output is the value in decimal, or
// "error: ..." (a syntax error, division by zero, a result beyond 64 bits).
std::string Calculate(const std::string& expression);
// The calculator as a tagged tool named "calculator" with argument "expression".
std::unique_ptr<Environment> MakeCalculatorEnvironment(ToolTags tags = {});

}  // namespace grpo

#endif  // GRPO_ROLLOUT_ENVIRONMENT_H_
