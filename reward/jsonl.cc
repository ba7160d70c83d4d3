#include "reward/jsonl.h"

#include <algorithm>
#include <cerrno>
#include <thread>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"

namespace grpo::reward {
namespace {

Status GetString(const nlohmann::json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status();
  if (!it->is_string()) return Status::InvalidArgument(std::string("'") + key + "' must be a string");
  *out = it->get<std::string>();
  return Status();
}

}  // namespace

Result<JsonlItem> ParseJsonlItem(std::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded()) return Status::InvalidArgument("not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("not a JSON object");
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
    if (!meta->is_object()) return Status::InvalidArgument("'meta' must be an object");
    for (auto it = meta->begin(); it != meta->end(); ++it)
      out.item.meta[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return out;
}

std::string FormatJsonlResult(const JsonlItem& in, const ItemResult& result) {
  nlohmann::json j = nlohmann::json::object();
  if (in.has_id) j["id"] = in.id;
  if (result.reward) j["reward"] = *result.reward;
  nlohmann::json rules = nlohmann::json::object();
  for (const auto& r : result.rules) rules[r.rule] = r.error.empty() ? nlohmann::json(r.score) : nlohmann::json();
  j["rules"] = std::move(rules);
  if (!result.error.empty()) j["error"] = result.error;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<ScoreFileStats> ScoreJsonlFile(const RuleSet& rules, const std::string& input_path,
                                      const std::string& output_path, bool strict, int threads) {
  std::ifstream in(input_path, std::ios::binary);
  if (!in) return Status::FromErrno("open " + input_path, errno);
  std::FILE* out = std::fopen(output_path.c_str(), "wb");
  if (!out) return Status::FromErrno("open " + output_path, errno);
  ThreadPool pool(threads > 0 ? threads
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ScoreFileStats stats;
  constexpr size_t kChunk = 4096;
  std::vector<JsonlItem> items;
  std::vector<ItemResult> results;
  std::string line;
  size_t line_no = 0;
  bool eof = false;
  Status failure;
  while (!eof && failure.ok()) {
    items.clear();
    while (items.size() < kChunk) {
      if (!std::getline(in, line)) {
        eof = true;
        break;
      }
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      bool blank = line.find_first_not_of(" \t") == std::string::npos;
      if (blank) continue;
      ++stats.lines;
      Result<JsonlItem> item = ParseJsonlItem(line);
      if (!item.ok()) {
        ++stats.bad_lines;
        std::string msg = input_path + ":" + std::to_string(line_no) + ": " + item.status().message();
        if (strict) {
          failure = Status::InvalidArgument(msg + " (--strict)");
          break;
        }
        std::fprintf(stderr, "%s (skipped)\n", msg.c_str());
        continue;
      }
      items.push_back(std::move(item).value());
    }
    results.assign(items.size(), ItemResult());
    pool.ParallelFor(static_cast<int64_t>(items.size()), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) results[i] = rules.Score(items[i].item);
    });
    for (size_t i = 0; i < items.size(); ++i) {
      std::string s = FormatJsonlResult(items[i], results[i]);
      s.push_back('\n');
      std::fwrite(s.data(), 1, s.size(), out);
      if (results[i].reward) ++stats.scored;
      else ++stats.item_errors;
    }
  }
  bool write_error = std::ferror(out) != 0;
  if (std::fclose(out) != 0 || write_error) return Status::IoError("write " + output_path + " failed");
  if (!failure.ok()) return failure;
  if (in.bad()) return Status::IoError("read " + input_path + " failed");
  return stats;
}

}  // namespace grpo::reward
