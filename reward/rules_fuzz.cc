// libFuzzer target: every built-in rule on arbitrary items. Built with clang, ASan and UBSan by
// tools/fuzz_smoke.sh. The input is split at NUL bytes into completion, answer, meta "numbers",
// meta "target", meta "completion_tokens". Properties: no crash or sanitizer report, every
// Score returns within 2 s, and every score is finite and within the rule's documented range.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reward/countdown_rule.h"
#include "reward/format_rule.h"
#include "reward/math_rule.h"
#include "reward/shaping_rules.h"
#include "reward/text_rules.h"

namespace {

using namespace grpo::reward;

struct Bounded {
  std::unique_ptr<Rule> rule;
  double lo, hi;
};

std::vector<Bounded>& Rules() {
  static std::vector<Bounded>* rules = [] {
    auto* v = new std::vector<Bounded>;
    v->push_back({std::make_unique<MathRule>(), 0, 1});
    for (FormatMode m : {FormatMode::kStrict, FormatMode::kLenient, FormatMode::kTagCount})
      for (bool pre : {false, true}) v->push_back({std::make_unique<FormatRule>(FormatRuleOptions{m, pre}), 0, 1});
    v->push_back({std::make_unique<CountdownRule>(CountdownRuleOptions{0.1}), 0, 1});
    v->push_back({std::make_unique<ChoiceRule>(), 0, 1});
    v->push_back({std::make_unique<ExactRule>(), 0, 1});
    v->push_back({std::move(RegexRule::Create({"(a+)+b|\\d{3,}", false, 0})).value(), 0, 1});
    v->push_back({std::make_unique<LengthRule>(LengthRuleOptions{100, 20, LengthUnit::kBytes}), -1, 0});
    v->push_back({std::make_unique<LengthRule>(LengthRuleOptions{100, 20, LengthUnit::kTokens}), -1, 0});
    v->push_back({std::make_unique<RepetitionRule>(RepetitionRuleOptions{3, -1.0}), -1, 0});
    CosineRuleOptions co;
    co.max_len = 64;
    v->push_back({std::make_unique<CosineRule>(co), -0.5, 1});
    return v;
  }();
  return *rules;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t p = 0;
  while (parts.size() < 4) {
    size_t q = in.find('\0', p);
    if (q == std::string_view::npos) break;
    parts.emplace_back(in.substr(p, q - p));
    p = q + 1;
  }
  parts.emplace_back(in.substr(p));
  parts.resize(5);
  RewardItem item;
  item.completion = parts[0];
  item.answer = parts[1];
  if (!parts[2].empty()) item.meta["numbers"] = parts[2];
  if (!parts[3].empty()) item.meta["target"] = parts[3];
  if (!parts[4].empty()) item.meta["completion_tokens"] = parts[4];
  for (const Bounded& b : Rules()) {
    auto start = std::chrono::steady_clock::now();
    auto r = b.rule->Score(item);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start).count();
    if (ms > 2000) {
      std::fprintf(stderr, "rule %s took %lld ms\n", std::string(b.rule->type()).c_str(),
                   static_cast<long long>(ms));
      std::abort();
    }
    if (r.ok() && (!std::isfinite(r->score) || r->score < b.lo - 1e-12 || r->score > b.hi + 1e-12)) {
      std::fprintf(stderr, "rule %s scored %g outside [%g, %g]\n",
                   std::string(b.rule->type()).c_str(), r->score, b.lo, b.hi);
      std::abort();
    }
  }
  return 0;
}
