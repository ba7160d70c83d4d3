#include "store/export.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/strings.h"

namespace grpo::store {
namespace {

using grpo::v1::PromptRecord;
using grpo::v1::Trajectory;
using Json = nlohmann::ordered_json;

enum Drop { kAborted, kTruncated, kNoReward, kBelowMin, kNotCorrect, kTooLong, kNotBest, kDuplicate };

uint64_t Fnv1a(uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string InlineThink(const std::string& text) {
  size_t close = text.find("</think>");
  if (close == std::string::npos) return text;
  size_t open = text.find("<think>");
  if (open != std::string::npos && open < close) return text;
  return "<think>" + text;
}

// The assistant message of one model turn's text, reasoning handled as `reasoning` says (the
// first turn gets the inline <think> repair).
Json AssistantMessage(const std::string& text, Reasoning reasoning, bool first) {
  Json m = {{"role", "assistant"}};
  if (reasoning == Reasoning::kSplit) {
    auto [thought, content] = SplitThink(text);
    m["content"] = content;
    m["reasoning_content"] = thought;
  } else {
    m["content"] = first ? InlineThink(text) : text;
  }
  return m;
}

}  // namespace

absl::StatusOr<std::vector<nlohmann::ordered_json>> ToolUseMessages(const grpo::v1::Sample& sample,
                                                                    Reasoning reasoning) {
  const int spans = sample.environment_spans_size();
  if (sample.turn_texts_size() != 2 * spans + 1) {
    return absl::DataLossError("sample " + std::to_string(sample.sample_index()) + " has " + std::to_string(spans) +
                               " environment spans but " + std::to_string(sample.turn_texts_size()) +
                               " turn texts (expected " + std::to_string(2 * spans + 1) + ")");
  }
  std::vector<Json> messages;
  for (int k = 0; k < spans; ++k) {
    const grpo::v1::EnvironmentSpan& span = sample.environment_spans(k);
    std::string text = sample.turn_texts(2 * k);
    if (!span.call().empty() && text.ends_with(span.call())) text.resize(text.size() - span.call().size());
    const std::string id = "call_" + std::to_string(k);
    Json assistant = AssistantMessage(text, reasoning, k == 0);
    assistant["tool_calls"] = Json::array({Json{{"id", id},
                                               {"type", "function"},
                                               {"function", {{"name", span.tool()}, {"arguments", span.arguments()}}}}});
    messages.push_back(std::move(assistant));
    messages.push_back(Json{{"role", "tool"}, {"tool_call_id", id}, {"content", span.output()}});
  }
  const std::string& last = sample.turn_texts(2 * spans);
  if (!last.empty() || spans == 0) messages.push_back(AssistantMessage(last, reasoning, spans == 0));
  return messages;
}

absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name) {
  if (name == "openai") return ExportFormat::kOpenAI;
  if (name == "sharegpt") return ExportFormat::kShareGPT;
  if (name == "prompt-completion") return ExportFormat::kPromptCompletion;
  return absl::InvalidArgumentError("unknown export format '" + name + "' (openai, sharegpt, prompt-completion)");
}

std::pair<std::string, std::string> SplitThink(const std::string& text) {
  size_t close = text.find("</think>");
  if (close == std::string::npos) return {"", std::string(StripAsciiWhitespace(text))};
  size_t open = text.find("<think>");
  size_t start = 0;
  std::string before;
  if (open != std::string::npos && open < close) {
    start = open + 7;
    before = text.substr(0, open);
  }
  std::string reasoning = std::string(StripAsciiWhitespace(std::string_view(text).substr(start, close - start)));
  std::string rest = std::string(StripAsciiWhitespace(before + text.substr(close + 8)));
  return {reasoning, rest};
}

namespace {

class Exporter {
 public:
  Exporter(const ExportOptions& o, JsonlWriter* out, ExportStats* stats) : o_(o), out_(out), stats_(stats) {}

  // The first drop reason of a sample before group-level checks, or -1.
  int PerSampleDrop(const Trajectory& t, const PromptRecord& p) const {
    const auto finish = t.sample().finish_reason();
    if (finish == grpo::v1::FINISH_REASON_ABORTED) return kAborted;
    if (o_.drop_truncated && finish == grpo::v1::FINISH_REASON_LENGTH) return kTruncated;
    std::optional<double> reward = TotalReward(t);
    if (!reward && (o_.min_reward || o_.correct_only || o_.best_of_group)) return kNoReward;
    if (o_.min_reward && *reward < *o_.min_reward) return kBelowMin;
    if (o_.correct_only && !IsCorrect(t, o_.correctness)) return kNotCorrect;
    if (o_.max_tokens &&
        static_cast<uint64_t>(p.prompt_token_ids_size()) + t.sample().token_ids_size() > *o_.max_tokens) {
      return kTooLong;
    }
    return -1;
  }

  absl::Status Group(const PromptRecord& p, std::span<const Trajectory> group) {
    std::vector<int> drop(group.size());
    int best = -1;
    for (size_t i = 0; i < group.size(); ++i) {
      ++stats_->scanned;
      stats_->bytes_in += group[i].ByteSizeLong();
      drop[i] = PerSampleDrop(group[i], p);
      if (drop[i] >= 0 || !o_.best_of_group) continue;
      double r = *TotalReward(group[i]);
      if (best < 0 || r > *TotalReward(group[best])) best = static_cast<int>(i);  // ties keep the lower index
    }
    for (size_t i = 0; i < group.size(); ++i) {
      if (drop[i] < 0 && o_.best_of_group && static_cast<int>(i) != best) drop[i] = kNotBest;
      if (drop[i] < 0 && o_.dedupe) {
        uint64_t h = Fnv1a(Fnv1a(0xcbf29ce484222325ull, p.prompt_text()) ^ 0x9e3779b97f4a7c15ull, group[i].sample().text());
        if (!seen_.insert(h).second) drop[i] = kDuplicate;
      }
      if (drop[i] >= 0) {
        ++stats_->dropped[drop[i]];
        continue;
      }
      GRPO_RETURN_IF_ERROR(Write(p, group[i]));
    }
    return absl::OkStatus();
  }

  absl::Status Write(const PromptRecord& p, const Trajectory& t) {
    std::string content, reasoning;
    if (o_.reasoning == Reasoning::kSplit) {
      std::tie(reasoning, content) = SplitThink(t.sample().text());
    } else {
      content = InlineThink(t.sample().text());
    }
    const bool split = o_.reasoning == Reasoning::kSplit;
    Json line;
    switch (o_.format) {
      case ExportFormat::kOpenAI: {
        if (t.sample().environment_spans_size() > 0) {
          GRPO_ASSIGN_OR_RETURN(std::vector<Json> turns, ToolUseMessages(t.sample(), o_.reasoning));
          line["messages"] = Json::array({Json{{"role", "user"}, {"content", p.prompt_text()}}});
          for (Json& m : turns) line["messages"].push_back(std::move(m));
          break;
        }
        Json assistant = {{"role", "assistant"}, {"content", content}};
        if (split) assistant["reasoning_content"] = reasoning;
        line["messages"] = Json::array({Json{{"role", "user"}, {"content", p.prompt_text()}}, assistant});
        break;
      }
      case ExportFormat::kShareGPT: {
        Json gpt = {{"from", "gpt"}, {"value", content}};
        if (split) gpt["reasoning"] = reasoning;
        line["conversations"] = Json::array({Json{{"from", "human"}, {"value", p.prompt_text()}}, gpt});
        break;
      }
      case ExportFormat::kPromptCompletion:
        line["prompt"] = p.prompt_text();
        line["completion"] = content;
        if (split) line["reasoning"] = reasoning;
        break;
    }
    if (o_.with_metadata) {
      std::optional<double> reward = TotalReward(t);
      line["metadata"] = Json{{"run", t.run_name()},
                              {"step", t.step()},
                              {"prompt_index", t.prompt_index()},
                              {"sample_index", t.sample_index()},
                              {"group_id", t.group_id()},
                              {"dataset", p.dataset()},
                              {"dataset_row_id", t.dataset_row_id()},
                              {"reward", reward ? Json(*reward) : Json(nullptr)},
                              {"correct", IsCorrect(t, o_.correctness)}};
    }
    const uint64_t before = out_->bytes_written();
    GRPO_RETURN_IF_ERROR(out_->Write(line));
    stats_->bytes_out += out_->bytes_written() - before;
    ++stats_->kept;
    return absl::OkStatus();
  }

 private:
  const ExportOptions& o_;
  JsonlWriter* out_;
  ExportStats* stats_;
  std::unordered_set<uint64_t> seen_;
};

}  // namespace

absl::Status Export(const TrajectoryStore& store, const ExportOptions& options, JsonlWriter* out, ExportStats* stats,
              const std::function<void(const ExportStats&)>& progress) {
  *stats = ExportStats();
  const auto start = std::chrono::steady_clock::now();
  GRPO_ASSIGN_OR_RETURN(RunInfo run, store.GetRun(options.run));
  const std::string& name = run.metadata.run_name();
  GRPO_ASSIGN_OR_RETURN(auto steps, store.ListSteps(name, options.first_step, options.last_step));
  for (const auto& s : steps) stats->total += s.num_samples();
  SampleQuery range;
  range.first_step = options.first_step;
  range.last_step = options.last_step;
  Exporter exporter(options, out, stats);
  absl::Status failure;
  GRPO_RETURN_IF_ERROR(store.ScanGroups(name, range, [&](const PromptRecord& p, std::span<const Trajectory> g) {
    failure = exporter.Group(p, g);
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress) progress(*stats);
    return failure.ok();
  }));
  GRPO_RETURN_IF_ERROR(failure);
  stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

}  // namespace grpo::store
