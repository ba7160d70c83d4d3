#include "reward/format_rule.h"

#include <cctype>

namespace grpo::reward {
namespace {

constexpr std::string_view kTags[4] = {"<think>", "</think>", "<answer>", "</answer>"};

size_t Count(std::string_view s, std::string_view needle, size_t cap = 2) {
  size_t n = 0, p = 0;
  while (n < cap && (p = s.find(needle, p)) != std::string_view::npos) {
    ++n;
    p += needle.size();
  }
  return n;
}

bool AllSpace(std::string_view s) {
  for (char c : s)
    if (!std::isspace(static_cast<unsigned char>(c))) return false;
  return true;
}

bool HasNoTag(std::string_view s) {
  for (auto t : kTags)
    if (s.find(t) != std::string_view::npos) return false;
  return true;
}

bool Strict(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  constexpr std::string_view kHead = "<think>\n", kMid = "\n</think>\n<answer>\n",
                             kTail = "\n</answer>";
  if (s.substr(0, kHead.size()) != kHead) return false;
  size_t mid = s.find(kMid, kHead.size());
  if (mid == std::string_view::npos) return false;
  size_t ans_begin = mid + kMid.size();
  if (s.size() < ans_begin + kTail.size()) return false;
  size_t ans_end = s.size() - kTail.size();
  if (s.substr(ans_end) != kTail) return false;
  return HasNoTag(s.substr(kHead.size(), mid - kHead.size())) &&
         HasNoTag(s.substr(ans_begin, ans_end - ans_begin));
}

bool Lenient(std::string_view s) {
  size_t pos[4];
  for (int i = 0; i < 4; ++i) {
    if (Count(s, kTags[i]) != 1) return false;
    pos[i] = s.find(kTags[i]);
  }
  if (!(pos[0] < pos[1] && pos[1] < pos[2] && pos[2] < pos[3])) return false;
  // "</think>" contains no "<think>" and "</answer>" no "<answer>", so find() is unambiguous.
  return AllSpace(s.substr(0, pos[0])) &&
         AllSpace(s.substr(pos[1] + kTags[1].size(), pos[2] - pos[1] - kTags[1].size())) &&
         AllSpace(s.substr(pos[3] + kTags[3].size()));
}

double TagCount(std::string_view s) {
  double score = 0;
  for (std::string_view t : {"<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>"})
    if (Count(s, t) == 1) score += 0.25;
  return score;
}

}  // namespace

absl::StatusOr<FormatMode> ParseFormatMode(const std::string& name) {
  if (name == "strict") return FormatMode::kStrict;
  if (name == "lenient") return FormatMode::kLenient;
  if (name == "tag_count") return FormatMode::kTagCount;
  return absl::InvalidArgumentError("unknown format mode '" + name +
                                 "' (expected strict, lenient or tag_count)");
}

std::string FormatRule::Describe() const {
  switch (options_.mode) {
    case FormatMode::kStrict: return "1 if <think>\\n..\\n</think>\\n<answer>\\n..\\n</answer> exactly, else 0";
    case FormatMode::kLenient: return "1 if one each of <think></think><answer></answer> in order, else 0";
    case FormatMode::kTagCount: return "0.25 per R1 tag (with its newlines) present exactly once";
  }
  return "";
}

absl::StatusOr<RuleOutput> FormatRule::Score(const RewardItem& item) const {
  std::string buf;
  std::string_view s = item.completion;
  if (options_.think_prefilled) {
    buf.reserve(s.size() + 7);
    buf = "<think>";
    buf += s;
    s = buf;
  }
  RuleOutput out;
  switch (options_.mode) {
    case FormatMode::kStrict: out.score = Strict(s) ? 1.0 : 0.0; break;
    case FormatMode::kLenient: out.score = Lenient(s) ? 1.0 : 0.0; break;
    case FormatMode::kTagCount: out.score = TagCount(s); break;
  }
  return out;
}

}  // namespace grpo::reward
