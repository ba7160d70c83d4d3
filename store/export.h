// Distillation / SFT export of a run's trajectories as JSON Lines, streamed from the store.
//
// Formats (one JSON object per kept sample):
//   openai:            {"messages":[{"role":"user","content":P},{"role":"assistant","content":C}]}
//                      (TRL SFTTrainer's conversational format, LLaMA-Factory's "openai" style)
//   sharegpt:          {"conversations":[{"from":"human","value":P},{"from":"gpt","value":C}]}
//   prompt-completion: {"prompt":P,"completion":C}   (TRL's prompt-completion format)
// P is the PromptRecord's prompt_text, C the sample's text. A multi-turn sample (tool use: it has
// environment_spans) is written by openai as the whole conversation (ToolUseMessages); sharegpt
// and prompt-completion keep its whole text (tool results inline) as C. With Reasoning::kSplit the
// <think>...</think> block is taken out of C and written beside it: "reasoning_content" on the
// assistant message (openai), "reasoning" on the gpt turn (sharegpt) or top-level
// (prompt-completion). With kInline C keeps its <think> block; a completion whose template put
// the opening <think> in the prompt (C contains "</think>" but no "<think>" before it) gets it
// prepended so the block is whole. With_metadata adds "metadata":{run, step, prompt_index,
// sample_index, group_id, dataset, dataset_row_id, reward, correct}.
//
// A sample is kept when it passes, in this order (the first failing check is its drop reason):
//   aborted           finish_reason ABORTED (never a finished answer; always dropped)
//   truncated         finish_reason LENGTH, with drop_truncated
//   no_reward         the reward service reported an error, when any reward filter is on
//   below_min_reward  total reward < min_reward
//   not_correct       with correct_only: IsCorrect(sample, correctness) is false
//   too_long          prompt tokens + completion tokens > max_tokens
//   not_best_of_group with best_of_group: not the highest total reward among its group's
//                     samples that passed the checks above (ties: lowest sample_index)
//   duplicate         with dedupe: same prompt text and completion text as a sample already
//                     kept (64-bit hash; the set of hashes is the only state that grows)
// Output order is key order (step, prompt, sample), so an export is deterministic.
#ifndef GRPO_STORE_EXPORT_H_
#define GRPO_STORE_EXPORT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/jsonl.h"
#include "core/status.h"
#include "store/query.h"
#include "store/trajectory_store.h"

namespace grpo::store {

enum class ExportFormat { kOpenAI, kShareGPT, kPromptCompletion };
enum class Reasoning { kInline, kSplit };

// "openai", "sharegpt", "prompt-completion".
absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name);

struct ExportOptions {
  ExportFormat format = ExportFormat::kOpenAI;
  std::string run;                       // empty: the store's only run
  std::optional<uint64_t> first_step;    // inclusive
  std::optional<uint64_t> last_step;     // inclusive
  std::optional<double> min_reward;
  bool correct_only = false;
  CorrectnessSpec correctness;
  bool best_of_group = false;
  bool dedupe = false;
  std::optional<uint64_t> max_tokens;
  bool drop_truncated = false;
  Reasoning reasoning = Reasoning::kInline;
  bool with_metadata = false;
};

// The drop reasons, in evaluation order (names as in the header comment).
inline constexpr const char* kDropReasons[] = {"aborted",  "truncated", "no_reward",         "below_min_reward",
                                               "not_correct", "too_long", "not_best_of_group", "duplicate"};
inline constexpr int kNumDropReasons = 8;

struct ExportStats {
  uint64_t total = 0;           // samples in the exported step range (from step summaries)
  uint64_t scanned = 0;
  uint64_t kept = 0;
  uint64_t bytes_in = 0;        // serialized size of the scanned trajectories
  uint64_t bytes_out = 0;       // JSONL bytes written
  uint64_t dropped[kNumDropReasons] = {};
  double seconds = 0;
};

// Streams the export to `out` (the caller Closes it, which puts the file in place). `progress`,
// when set, is called after each group.
absl::Status Export(const TrajectoryStore& store, const ExportOptions& options, JsonlWriter* out, ExportStats* stats,
              const std::function<void(const ExportStats&)>& progress = {});

// The OpenAI chat messages after the user's of a multi-turn sample: for every environment span,
// an assistant message with the model's turn (its tool call taken out of the text when the text
// ends with it) and "tool_calls":[{"id":"call_K","type":"function","function":{"name":TOOL,
// "arguments":ARGUMENTS}}], then {"role":"tool","tool_call_id":"call_K","content":OUTPUT}; then
// the last model turn as an assistant message (left out when empty). Reasoning applies to every
// assistant message (kInline repairs the first one's <think>). DataLoss when turn_texts does not
// have 2 * spans + 1 entries.
absl::StatusOr<std::vector<nlohmann::ordered_json>> ToolUseMessages(const grpo::v1::Sample& sample,
                                                                    Reasoning reasoning);

// Splits a completion into (reasoning, rest) at its <think>...</think> block; reasoning is empty
// when there is no "</think>". Both parts are trimmed of surrounding whitespace.
std::pair<std::string, std::string> SplitThink(const std::string& text);

}  // namespace grpo::store

#endif  // GRPO_STORE_EXPORT_H_
