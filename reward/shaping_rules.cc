#include "reward/shaping_rules.h"

#include <algorithm>
#include <cctype>
#include <unordered_set>
#include <vector>

namespace grpo::reward {

std::string LengthRule::Describe() const {
  return "DAPO overlong shaping: 0 up to " + std::to_string(options_.max_length - options_.cache_length) +
         ", linear to -1 at " + std::to_string(options_.max_length) + ", -1 beyond";
}

absl::StatusOr<RuleOutput> LengthRule::Score(const RewardItem& item) const {
  GRPO_ASSIGN_OR_RETURN(double len, CompletionLength(item, options_.unit));
  double soft = options_.max_length - options_.cache_length;
  RuleOutput out;
  if (len <= soft) {
    out.score = 0.0;
  } else if (len <= options_.max_length) {
    out.score = (soft - len) / options_.cache_length;
  } else {
    out.score = -1.0;
  }
  return out;
}

std::string RepetitionRule::Describe() const {
  return std::to_string(options_.ngram_size) + "-gram repetition penalty down to " +
         std::to_string(options_.max_penalty);
}

absl::StatusOr<RuleOutput> RepetitionRule::Score(const RewardItem& item) const {
  constexpr size_t kMaxWords = 1000000;
  std::vector<uint64_t> words;
  const std::string& s = item.completion;
  for (size_t i = 0; i < s.size() && words.size() < kMaxWords;) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i >= s.size()) break;
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the lower-cased word
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) {
      h ^= static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(s[i++])));
      h *= 1099511628211ull;
    }
    words.push_back(h);
  }
  RuleOutput out;
  size_t n = static_cast<size_t>(options_.ngram_size);
  if (words.size() < n) return out;
  size_t total = words.size() - n + 1;
  std::unordered_set<uint64_t> unique;
  unique.reserve(total);
  for (size_t i = 0; i < total; ++i) {
    uint64_t h = 0;
    for (size_t j = 0; j < n; ++j) h = (h ^ words[i + j]) * 0x9E3779B97F4A7C15ull + j;
    unique.insert(h);
  }
  double scaling = 1.0 - static_cast<double>(unique.size()) / static_cast<double>(total);
  out.score = scaling * options_.max_penalty;
  out.detail = std::to_string(unique.size()) + " unique of " + std::to_string(total) + " n-grams";
  return out;
}

}  // namespace grpo::reward
