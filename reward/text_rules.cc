#include "reward/text_rules.h"

#include <re2/re2.h>

#include <cctype>

#include "core/strings.h"

namespace grpo::reward {
namespace {

std::string Collapse(std::string_view s, bool case_sensitive) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(case_sensitive ? c : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

}  // namespace

char ChoiceLetter(std::string_view text, std::string_view letters) {
  std::string_view s = StripAsciiWhitespace(text);
  // Peel decorations: $, \text{, \textbf{, \mathrm{, (, [, {, **.
  for (int round = 0; round < 8; ++round) {
    bool changed = false;
    for (std::string_view pre : {"$", "\\text{", "\\textbf{", "\\mathrm{", "(", "[", "{", "*",
                                 "Option ", "option ", "OPTION "}) {
      if (s.substr(0, pre.size()) == pre) {
        s = StripAsciiWhitespace(s.substr(pre.size()));
        changed = true;
      }
    }
    if (!changed) break;
  }
  if (s.empty()) return 0;
  char c = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  if (letters.find(c) == std::string_view::npos) return 0;
  if (s[0] != c) return 0;  // lower-case letters are words, not options
  if (s.size() > 1 && std::isalnum(static_cast<unsigned char>(s[1]))) return 0;
  return c;
}

std::string ChoiceRule::Describe() const {
  return "1 if the chosen option letter (" + options_.letters + ") equals the gold letter, else 0";
}

absl::StatusOr<RuleOutput> ChoiceRule::Score(const RewardItem& item) const {
  char gold = ChoiceLetter(item.answer, options_.letters);
  if (gold == 0)
    return absl::InvalidArgumentError("choice: gold answer '" + item.answer.substr(0, 32) +
                                   "' is not one of " + options_.letters);
  RuleOutput out;
  auto pred = ExtractAnswer(item.completion, options_.extract);
  if (!pred) {
    out.detail = "no final answer found";
    return out;
  }
  char p = ChoiceLetter(*pred, options_.letters);
  out.score = p == gold ? 1.0 : 0.0;
  out.detail = p ? std::string("chose ") + p + ", expected " + gold : "no option letter";
  return out;
}

std::string ExactRule::Describe() const {
  return std::string("1 if the ") + (options_.extract ? "final answer" : "completion") +
         " equals the gold answer (" + (options_.case_sensitive ? "case-sensitive" : "any case") +
         ", whitespace collapsed), else 0";
}

absl::StatusOr<RuleOutput> ExactRule::Score(const RewardItem& item) const {
  std::string gold = Collapse(item.answer, options_.case_sensitive);
  if (gold.empty()) return absl::InvalidArgumentError("exact: empty gold answer");
  RuleOutput out;
  std::string pred;
  if (options_.extract) {
    auto e = ExtractAnswer(item.completion, options_.methods);
    if (!e) {
      out.detail = "no final answer found";
      return out;
    }
    pred = Collapse(*e, options_.case_sensitive);
  } else {
    if (item.completion.size() > gold.size() * 4 + 1024) return out;  // cannot collapse to equal
    pred = Collapse(item.completion, options_.case_sensitive);
  }
  out.score = pred == gold ? 1.0 : 0.0;
  return out;
}

absl::StatusOr<std::unique_ptr<RegexRule>> RegexRule::Create(RegexRuleOptions options) {
  if (options.pattern.empty()) return absl::InvalidArgumentError("regex: empty pattern");
  RE2::Options o;
  o.set_log_errors(false);
  o.set_max_mem(8 << 20);
  auto re = std::make_unique<RE2>(options.pattern, o);
  if (!re->ok()) return absl::InvalidArgumentError("regex: bad pattern: " + re->error());
  if (options.compare_group < 0 || options.compare_group > re->NumberOfCapturingGroups())
    return absl::InvalidArgumentError("regex: compare_group " + std::to_string(options.compare_group) +
                                   " but the pattern has " +
                                   std::to_string(re->NumberOfCapturingGroups()) + " groups");
  return std::unique_ptr<RegexRule>(new RegexRule(std::move(options), std::move(re)));
}

RegexRule::RegexRule(RegexRuleOptions options, std::unique_ptr<re2::RE2> re)
    : options_(std::move(options)), re_(std::move(re)) {}
RegexRule::~RegexRule() = default;

std::string RegexRule::Describe() const {
  return "1 if /" + options_.pattern + "/ " + (options_.full_match ? "matches the whole" : "occurs in the") +
         " completion" + (options_.compare_group ? " and its group equals the gold answer" : "") +
         ", else 0";
}

absl::StatusOr<RuleOutput> RegexRule::Score(const RewardItem& item) const {
  if (options_.compare_group > 0 && StripAsciiWhitespace(item.answer).empty())
    return absl::InvalidArgumentError("regex: empty gold answer (compare_group is set)");
  re2::StringPiece text(item.completion.data(),
                        std::min(item.completion.size(), Limits::kMaxCompletionBytes));
  int n = options_.compare_group + 1;
  std::vector<re2::StringPiece> groups(n);
  bool m = re_->Match(text, 0, text.size(), options_.full_match ? RE2::ANCHOR_BOTH : RE2::UNANCHORED,
                      groups.data(), n);
  RuleOutput out;
  if (m && options_.compare_group > 0) {
    re2::StringPiece g = groups[options_.compare_group];
    m = StripAsciiWhitespace(std::string_view(g.data(), g.size())) == StripAsciiWhitespace(item.answer);
  }
  out.score = m ? 1.0 : 0.0;
  return out;
}

}  // namespace grpo::reward
