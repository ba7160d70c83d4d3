#include "reward/math_rule.h"

#include <cmath>
#include <cstdlib>

#include "reward/math_equiv.h"
#include "reward/math_parse.h"

namespace grpo::reward {
namespace {

// Groups of completions share a gold answer: keep the last parsed one per thread.
struct GoldCache {
  std::string key;
  std::optional<ParsedMath> parsed;
  absl::Status error;
};

const GoldCache& ParseGold(const std::string& gold) {
  thread_local GoldCache cache;
  thread_local bool valid = false;
  if (valid && cache.key == gold) return cache;
  cache.key = gold;
  cache.parsed.reset();
  cache.error = absl::Status();
  absl::StatusOr<ParsedMath> r = ParseMath(gold);
  if (r.ok()) r = [&]() -> absl::StatusOr<ParsedMath> {
      absl::Status st = CheckGoldStructure(*r);
      if (!st.ok()) return st;
      return std::move(r).value();
    }();
  if (r.ok()) {
    cache.parsed = std::move(r).value();
  } else {
    cache.error = r.status();
  }
  valid = true;
  return cache;
}

}  // namespace

std::string MathRule::Describe() const {
  std::string m;
  for (ExtractMethod e : options_.extract) m += (m.empty() ? "" : ",") + std::string(ExtractMethodName(e));
  return "1 if the final answer (" + m + ") is mathematically equivalent to the gold answer, else 0";
}

absl::StatusOr<bool> MathRule::Correct(const RewardItem& item, std::string* detail) const {
  if (item.answer.empty()) return absl::InvalidArgumentError("math: empty gold answer");
  const GoldCache& gold = ParseGold(item.answer);
  if (!gold.parsed) return grpo::WithContext(gold.error, "math: gold answer");
  std::optional<std::string> pred = ExtractAnswer(item.completion, options_.extract);
  if (!pred) {
    *detail = "no final answer found";
    return false;
  }
  std::string why;
  bool eq = MathEquivalentParsed(*gold.parsed, *pred, &why);
  *detail = "extracted '" + pred->substr(0, 64) + "': " + why;
  return eq;
}

absl::StatusOr<RuleOutput> MathRule::Score(const RewardItem& item) const {
  RuleOutput out;
  GRPO_ASSIGN_OR_RETURN(bool ok, Correct(item, &out.detail));
  out.score = ok ? 1.0 : 0.0;
  return out;
}

absl::StatusOr<LengthUnit> ParseLengthUnit(const std::string& name) {
  if (name == "bytes" || name == "chars") return LengthUnit::kBytes;
  if (name == "tokens") return LengthUnit::kTokens;
  return absl::InvalidArgumentError("unknown length unit '" + name + "' (expected bytes or tokens)");
}

absl::StatusOr<double> CompletionLength(const RewardItem& item, LengthUnit unit) {
  if (unit == LengthUnit::kBytes) return static_cast<double>(item.completion.size());
  auto it = item.meta.find("completion_tokens");
  if (it == item.meta.end())
    return absl::InvalidArgumentError("meta 'completion_tokens' is required (length unit tokens)");
  const char* s = it->second.c_str();
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v < 0)
    return absl::InvalidArgumentError("meta 'completion_tokens' is not a non-negative integer: '" +
                                   it->second.substr(0, 32) + "'");
  return static_cast<double>(v);
}

std::string CosineRule::Describe() const {
  return "cosine length scaling of correctness: correct " + std::to_string(options_.max_value_correct) +
         " (short) to " + std::to_string(options_.min_value_correct) + " (max_len " +
         std::to_string(options_.max_len) + "), wrong " + std::to_string(options_.min_value_wrong) +
         " (short) to " + std::to_string(options_.max_value_wrong);
}

absl::StatusOr<RuleOutput> CosineRule::Score(const RewardItem& item) const {
  RuleOutput out;
  GRPO_ASSIGN_OR_RETURN(bool correct, math_.Correct(item, &out.detail));
  GRPO_ASSIGN_OR_RETURN(double len, CompletionLength(item, options_.unit));
  double progress = std::min(len / options_.max_len, 1.0);
  double c = std::cos(progress * M_PI);
  double lo = correct ? options_.min_value_correct : options_.max_value_wrong;
  double hi = correct ? options_.max_value_correct : options_.min_value_wrong;
  out.score = lo + 0.5 * (hi - lo) * (1.0 + c);
  return out;
}

}  // namespace grpo::reward
