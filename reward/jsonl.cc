#include "reward/jsonl.h"

#include <algorithm>
#include <thread>
#include <cmath>
#include <cstdio>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/jsonl.h"
#include "core/thread_pool.h"

namespace grpo::reward {
namespace {

absl::Status GetString(const nlohmann::json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::Status();
  if (!it->is_string()) return absl::InvalidArgumentError(std::string("'") + key + "' must be a string");
  *out = it->get<std::string>();
  return absl::Status();
}

// The item an input object describes (see the header for the keys).
absl::StatusOr<JsonlItem> ItemFromObject(const nlohmann::json& j) {
  JsonlItem out;
  auto id = j.find("id");
  if (id != j.end() && !id->is_null()) {
    out.has_id = true;
    out.id = id->is_string() ? id->get<std::string>() : id->dump();
  }
  GRPO_RETURN_IF_ERROR(GetString(j, "completion", &out.item.completion));
  GRPO_RETURN_IF_ERROR(GetString(j, "answer", &out.item.answer));
  GRPO_RETURN_IF_ERROR(GetString(j, "prompt", &out.item.prompt));
  GRPO_RETURN_IF_ERROR(GetString(j, "task", &out.item.task));
  auto meta = j.find("meta");
  if (meta != j.end() && !meta->is_null()) {
    if (!meta->is_object()) return absl::InvalidArgumentError("'meta' must be an object");
    for (auto it = meta->begin(); it != meta->end(); ++it)
      out.item.meta[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return out;
}

nlohmann::json ResultObject(const JsonlItem& in, const ItemResult& result) {
  nlohmann::json j = nlohmann::json::object();
  if (in.has_id) j["id"] = in.id;
  if (result.reward) j["reward"] = *result.reward;
  nlohmann::json rules = nlohmann::json::object();
  for (const auto& r : result.rules) rules[r.rule] = r.error.empty() ? nlohmann::json(r.score) : nlohmann::json();
  j["rules"] = std::move(rules);
  if (!result.error.empty()) j["error"] = result.error;
  return j;
}

// The reason an item error is counted under: its text up to the first quote or colon
// ("unknown task 'x'" -> "error: unknown task", "accuracy: ..." -> "error: accuracy").
std::string ErrorReason(const std::string& error) {
  std::string head = error.substr(0, error.find_first_of(":'("));
  while (!head.empty() && head.back() == ' ') head.pop_back();
  return "error: " + head;
}

}  // namespace

absl::StatusOr<JsonlItem> ParseJsonlItem(std::string_view line) {
  GRPO_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonlLine(line));
  return ItemFromObject(j);
}

std::string FormatJsonlResult(const JsonlItem& in, const ItemResult& result) {
  return ResultObject(in, result).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<ScoreFileStats> ScoreJsonlFile(const RuleSet& rules, const std::string& input_path,
                                      const std::string& output_path, bool strict, int threads) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> in, JsonlReader::Open(input_path));
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> out, JsonlWriter::Open(output_path));
  ThreadPool pool(threads > 0 ? threads
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ScoreFileStats stats;
  constexpr size_t kChunk = 4096;
  std::vector<JsonlItem> items;
  std::vector<int64_t> item_lines;
  std::vector<ItemResult> results;
  JsonlRecord record;
  bool eof = false;
  while (!eof) {
    items.clear();
    item_lines.clear();
    while (items.size() < kChunk) {
      if (!in->Next(&record)) {
        eof = true;
        break;
      }
      ++stats.lines;
      absl::Status bad = record.status;
      if (bad.ok()) {
        absl::StatusOr<JsonlItem> item = ItemFromObject(record.value);
        if (item.ok()) {
          items.push_back(std::move(item).value());
          item_lines.push_back(record.line);
          continue;
        }
        bad = grpo::WithContext(item.status(), in->path() + ":" + std::to_string(record.line));
      }
      ++stats.bad_lines;
      stats.tally.Skip("bad line", std::string(bad.message()));
      // With --strict nothing is written: the output is only replaced by a complete run.
      if (strict) return absl::InvalidArgumentError(std::string(bad.message()) + " (--strict)");
      std::fprintf(stderr, "%s (skipped)\n", std::string(bad.message()).c_str());
    }
    results.assign(items.size(), ItemResult());
    pool.ParallelFor(static_cast<int64_t>(items.size()), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) results[i] = rules.Score(items[i].item);
    });
    for (size_t i = 0; i < items.size(); ++i) {
      GRPO_RETURN_IF_ERROR(out->Write(ResultObject(items[i], results[i])));
      if (results[i].reward) {
        ++stats.scored;
        stats.tally.Used();
      } else {
        ++stats.item_errors;
        stats.tally.Skip(ErrorReason(results[i].error),
                         in->path() + ":" + std::to_string(item_lines[i]) + ": " + results[i].error);
      }
    }
  }
  GRPO_RETURN_IF_ERROR(in->status());
  // Nothing scored: the output (all errors, or empty) does not replace what was there.
  GRPO_RETURN_IF_ERROR(stats.tally.RequireSome("lines"));
  GRPO_RETURN_IF_ERROR(out->Close());
  return stats;
}

}  // namespace grpo::reward
