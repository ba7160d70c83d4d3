#include "reward/rule_set.h"

#include <cmath>

#include "reward/countdown_rule.h"
#include "reward/format_rule.h"
#include "reward/math_rule.h"
#include "reward/code_rule.h"
#include "reward/plugin_host.h"
#include "reward/shaping_rules.h"
#include "reward/text_rules.h"

namespace grpo::reward {
namespace {

const std::vector<std::string> kCommonKeys = {"type", "name", "weight", "tasks"};

struct TypeKeys {
  const char* type;
  std::vector<std::string> keys;
};

const std::vector<TypeKeys>& AllTypeKeys() {
  static const std::vector<TypeKeys> kTypes = {
      {"math", {"extract"}},
      {"format", {"mode", "think_prefilled"}},
      {"countdown", {"format_score"}},
      {"choice", {"letters", "extract"}},
      {"exact", {"case_sensitive", "extract", "methods"}},
      {"regex", {"pattern", "full_match", "compare_group"}},
      {"length", {"max_length", "cache_length", "unit"}},
      {"repetition", {"ngram_size", "max_penalty"}},
      {"cosine", {"extract", "min_value_wrong", "max_value_wrong", "min_value_correct",
                  "max_value_correct", "max_len", "unit"}},
      {"code", {"language", "python", "mode", "timeout_ms", "total_timeout_ms", "memory_mb",
                 "max_processes", "isolation", "compiler", "compile_timeout_ms", "compile_memory_mb"}},
      {"plugin", {"path", "config", "timeout_ms", "workers", "memory_mb", "isolation"}},
  };
  return kTypes;
}

absl::StatusOr<std::vector<ExtractMethod>> Methods(const Config& c, const char* key) {
  GRPO_ASSIGN_OR_RETURN(auto names, c.GetStringListOr(key, {}));
  if (names.empty()) return DefaultExtractMethods();
  auto m = ParseExtractMethods(names);
  if (!m.ok()) return c.Error(key, std::string(m.status().message()));
  return m;
}

template <typename T>
absl::StatusOr<T> Wrap(const Config& c, const char* key, absl::StatusOr<T> r) {
  if (!r.ok()) return c.Error(key, std::string(r.status().message()));
  return r;
}

absl::Status Check(const Config& c, const char* key, bool ok, const char* what) {
  return ok ? absl::Status() : c.Error(key, what);
}

std::string JoinPath(const std::string& dir, const std::string& p) {
  if (p.empty() || p[0] == '/' || dir.empty()) return p;
  return dir + "/" + p;
}

}  // namespace

const std::vector<std::string>& BuiltinRuleTypes() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& t : AllTypeKeys())
      if (std::string(t.type) != "plugin") v.push_back(t.type);
    return v;
  }();
  return kNames;
}

absl::StatusOr<std::unique_ptr<Rule>> MakeRule(const std::string& type, const Config& e,
                                       const RuleSetOptions& options) {
  if (type == "math") {
    MathRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.extract, Methods(e, "extract"));
    return std::unique_ptr<Rule>(new MathRule(o));
  }
  if (type == "format") {
    FormatRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(std::string mode, e.GetStringOr("mode", "strict"));
    GRPO_ASSIGN_OR_RETURN(o.mode, Wrap(e, "mode", ParseFormatMode(mode)));
    GRPO_ASSIGN_OR_RETURN(o.think_prefilled, e.GetBoolOr("think_prefilled", false));
    return std::unique_ptr<Rule>(new FormatRule(o));
  }
  if (type == "countdown") {
    CountdownRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.format_score, e.GetDoubleOr("format_score", 0.0));
    GRPO_RETURN_IF_ERROR(Check(e, "format_score", std::isfinite(o.format_score), "must be finite"));
    return std::unique_ptr<Rule>(new CountdownRule(o));
  }
  if (type == "choice") {
    ChoiceRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.letters, e.GetStringOr("letters", "ABCDE"));
    bool upper = !o.letters.empty();
    for (char c : o.letters) upper &= c >= 'A' && c <= 'Z';
    GRPO_RETURN_IF_ERROR(Check(e, "letters", upper, "must be upper-case letters A-Z"));
    GRPO_ASSIGN_OR_RETURN(o.extract, Methods(e, "extract"));
    return std::unique_ptr<Rule>(new ChoiceRule(o));
  }
  if (type == "exact") {
    ExactRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.case_sensitive, e.GetBoolOr("case_sensitive", false));
    GRPO_ASSIGN_OR_RETURN(o.extract, e.GetBoolOr("extract", true));
    GRPO_ASSIGN_OR_RETURN(o.methods, Methods(e, "methods"));
    return std::unique_ptr<Rule>(new ExactRule(o));
  }
  if (type == "regex") {
    RegexRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.pattern, e.GetString("pattern"));
    GRPO_ASSIGN_OR_RETURN(o.full_match, e.GetBoolOr("full_match", false));
    GRPO_ASSIGN_OR_RETURN(int64_t g, e.GetIntOr("compare_group", 0));
    GRPO_RETURN_IF_ERROR(Check(e, "compare_group", g >= 0 && g <= 16, "must be in [0, 16]"));
    o.compare_group = static_cast<int>(g);
    GRPO_ASSIGN_OR_RETURN(auto r, Wrap(e, "pattern", RegexRule::Create(o)));
    return std::unique_ptr<Rule>(std::move(r));
  }
  if (type == "length") {
    LengthRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.max_length, e.GetDoubleOr("max_length", 4096));
    GRPO_ASSIGN_OR_RETURN(o.cache_length, e.GetDoubleOr("cache_length", 512));
    GRPO_RETURN_IF_ERROR(Check(e, "max_length", o.max_length > 0 && std::isfinite(o.max_length), "must be > 0"));
    GRPO_RETURN_IF_ERROR(Check(e, "cache_length", o.cache_length > 0 && o.cache_length <= o.max_length,
                               "must be in (0, max_length]"));
    GRPO_ASSIGN_OR_RETURN(std::string unit, e.GetStringOr("unit", "bytes"));
    GRPO_ASSIGN_OR_RETURN(o.unit, Wrap(e, "unit", ParseLengthUnit(unit)));
    return std::unique_ptr<Rule>(new LengthRule(o));
  }
  if (type == "repetition") {
    RepetitionRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(int64_t n, e.GetIntOr("ngram_size", 3));
    GRPO_RETURN_IF_ERROR(Check(e, "ngram_size", n >= 1 && n <= 32, "must be in [1, 32]"));
    o.ngram_size = static_cast<int>(n);
    GRPO_ASSIGN_OR_RETURN(o.max_penalty, e.GetDoubleOr("max_penalty", -1.0));
    GRPO_RETURN_IF_ERROR(Check(e, "max_penalty", o.max_penalty <= 0 && std::isfinite(o.max_penalty),
                               "must be <= 0"));
    return std::unique_ptr<Rule>(new RepetitionRule(o));
  }
  if (type == "cosine") {
    CosineRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.math.extract, Methods(e, "extract"));
    GRPO_ASSIGN_OR_RETURN(o.min_value_wrong, e.GetDoubleOr("min_value_wrong", o.min_value_wrong));
    GRPO_ASSIGN_OR_RETURN(o.max_value_wrong, e.GetDoubleOr("max_value_wrong", o.max_value_wrong));
    GRPO_ASSIGN_OR_RETURN(o.min_value_correct, e.GetDoubleOr("min_value_correct", o.min_value_correct));
    GRPO_ASSIGN_OR_RETURN(o.max_value_correct, e.GetDoubleOr("max_value_correct", o.max_value_correct));
    GRPO_ASSIGN_OR_RETURN(o.max_len, e.GetDoubleOr("max_len", o.max_len));
    GRPO_RETURN_IF_ERROR(Check(e, "max_len", o.max_len > 0 && std::isfinite(o.max_len), "must be > 0"));
    GRPO_ASSIGN_OR_RETURN(std::string unit, e.GetStringOr("unit", "bytes"));
    GRPO_ASSIGN_OR_RETURN(o.unit, Wrap(e, "unit", ParseLengthUnit(unit)));
    return std::unique_ptr<Rule>(new CosineRule(o));
  }
  if (type == "code") {
    CodeRuleOptions o;
    GRPO_ASSIGN_OR_RETURN(o.language, e.GetStringOr("language", o.language));
    GRPO_ASSIGN_OR_RETURN(o.python, e.GetStringOr("python", o.python));
    GRPO_ASSIGN_OR_RETURN(std::string mode, e.GetStringOr("mode", "fraction"));
    GRPO_RETURN_IF_ERROR(Check(e, "mode", mode == "fraction" || mode == "all", "must be fraction or all"));
    o.all_or_nothing = mode == "all";
    GRPO_ASSIGN_OR_RETURN(int64_t t, e.GetIntOr("timeout_ms", 2000));
    GRPO_ASSIGN_OR_RETURN(int64_t total, e.GetIntOr("total_timeout_ms", 20000));
    GRPO_ASSIGN_OR_RETURN(int64_t m, e.GetIntOr("memory_mb", o.memory_mb));
    GRPO_ASSIGN_OR_RETURN(int64_t p, e.GetIntOr("max_processes", o.max_processes));
    GRPO_RETURN_IF_ERROR(Check(e, "timeout_ms", t > 0 && t <= 600000, "must be in (0, 600000]"));
    GRPO_RETURN_IF_ERROR(Check(e, "total_timeout_ms", total > 0 && total <= 3600000, "must be in (0, 3600000]"));
    GRPO_RETURN_IF_ERROR(Check(e, "memory_mb", m >= 16 && m <= (1 << 20), "must be in [16, 1048576]"));
    GRPO_RETURN_IF_ERROR(Check(e, "max_processes", p >= 1 && p <= 4096, "must be in [1, 4096]"));
    GRPO_ASSIGN_OR_RETURN(o.compiler, e.GetStringOr("compiler", o.compiler));
    GRPO_ASSIGN_OR_RETURN(int64_t ct, e.GetIntOr("compile_timeout_ms", 20000));
    GRPO_ASSIGN_OR_RETURN(int64_t cm, e.GetIntOr("compile_memory_mb", o.compile_memory_mb));
    GRPO_RETURN_IF_ERROR(Check(e, "compile_timeout_ms", ct > 0 && ct <= 600000, "must be in (0, 600000]"));
    GRPO_RETURN_IF_ERROR(Check(e, "compile_memory_mb", cm >= 64 && cm <= (1 << 20), "must be in [64, 1048576]"));
    o.compile_timeout = absl::Milliseconds(ct);
    o.compile_memory_mb = static_cast<int>(cm);
    o.test_timeout = absl::Milliseconds(t);
    o.total_timeout = absl::Milliseconds(total);
    o.memory_mb = static_cast<int>(m);
    o.max_processes = static_cast<int>(p);
    GRPO_ASSIGN_OR_RETURN(std::string isolation, e.GetStringOr("isolation", "namespaces"));
    GRPO_ASSIGN_OR_RETURN(o.isolation, Wrap(e, "isolation", sandbox::ParseIsolation(isolation)));
    GRPO_ASSIGN_OR_RETURN(auto r, Wrap(e, "language", CodeRule::Create(std::move(o))));
    return std::unique_ptr<Rule>(std::move(r));
  }
  if (type == "plugin") {
    PluginOptions o;
    GRPO_ASSIGN_OR_RETURN(std::string path, e.GetString("path"));
    o.path = JoinPath(options.base_dir, path);
    if (e.Has("config")) {
      GRPO_ASSIGN_OR_RETURN(Config sub, e.Sub("config"));
      o.config_json = sub.json().dump();
    }
    GRPO_ASSIGN_OR_RETURN(int64_t t, e.GetIntOr("timeout_ms", 1000));
    GRPO_ASSIGN_OR_RETURN(int64_t w, e.GetIntOr("workers", 2));
    GRPO_ASSIGN_OR_RETURN(int64_t m, e.GetIntOr("memory_mb", 1024));
    GRPO_RETURN_IF_ERROR(Check(e, "timeout_ms", t > 0 && t <= 600000, "must be in (0, 600000]"));
    GRPO_RETURN_IF_ERROR(Check(e, "workers", w > 0 && w <= 256, "must be in [1, 256]"));
    GRPO_RETURN_IF_ERROR(Check(e, "memory_mb", m >= 16 && m <= (1 << 20), "must be in [16, 1048576]"));
    o.timeout = absl::Milliseconds(t);
    o.workers = static_cast<int>(w);
    o.memory_mb = static_cast<int>(m);
    o.worker_argv = options.plugin_worker_argv.empty() ? SelfWorkerArgv() : options.plugin_worker_argv;
    GRPO_ASSIGN_OR_RETURN(std::string isolation, e.GetStringOr("isolation", "namespaces"));
    GRPO_ASSIGN_OR_RETURN(o.sandbox.isolation, Wrap(e, "isolation", sandbox::ParseIsolation(isolation)));
    GRPO_ASSIGN_OR_RETURN(auto r, Wrap(e, "path", PluginRule::Create(std::move(o))));
    return std::unique_ptr<Rule>(std::move(r));
  }
  std::string known;
  for (const auto& t : AllTypeKeys()) known += (known.empty() ? "" : ", ") + std::string(t.type);
  return e.Error("type", "unknown rule type '" + type + "' (known: " + known + ")");
}

absl::StatusOr<RuleSet> RuleSet::FromConfig(const Config& config, const RuleSetOptions& options) {
  GRPO_RETURN_IF_ERROR(config.CheckKnownKeys({"rules"}));
  GRPO_ASSIGN_OR_RETURN(std::vector<Config> entries, config.SubList("rules"));
  if (entries.empty()) return config.Error("rules", "no rules configured");
  RuleSet set;
  for (const Config& e : entries) {
    ConfiguredRule r;
    GRPO_ASSIGN_OR_RETURN(r.type, e.GetString("type"));
    std::vector<std::string> allowed = kCommonKeys;
    bool known_type = false;
    for (const auto& t : AllTypeKeys()) {
      if (r.type == t.type) {
        allowed.insert(allowed.end(), t.keys.begin(), t.keys.end());
        known_type = true;
      }
    }
    if (known_type) {
      allowed.push_back("config");  // plugin's mapping; admits its nested keys
      if (r.type != "plugin") allowed.pop_back();
      GRPO_RETURN_IF_ERROR(e.CheckKnownKeys(allowed));
    }
    GRPO_ASSIGN_OR_RETURN(r.name, e.GetStringOr("name", r.type));
    GRPO_ASSIGN_OR_RETURN(r.weight, e.GetDoubleOr("weight", 1.0));
    GRPO_RETURN_IF_ERROR(Check(e, "weight", std::isfinite(r.weight) && std::fabs(r.weight) <= kMaxRuleWeight,
                               "must be a finite number in [-1e6, 1e6]"));
    GRPO_ASSIGN_OR_RETURN(r.tasks, e.GetStringListOr("tasks", {}));
    for (const auto& other : set.rules_)
      if (other.name == r.name) return e.Error("name", "duplicate rule name '" + r.name + "'");
    GRPO_ASSIGN_OR_RETURN(std::unique_ptr<Rule> rule, MakeRule(r.type, e, options));
    r.rule = std::move(rule);
    for (const auto& t : r.tasks) {
      bool seen = false;
      for (const auto& k : set.known_tasks_) seen |= k == t;
      if (!seen) set.known_tasks_.push_back(t);
    }
    set.rules_.push_back(std::move(r));
  }
  return set;
}

absl::StatusOr<RuleSet> RuleSet::LoadFile(const std::string& path, RuleSetOptions options) {
  GRPO_ASSIGN_OR_RETURN(Config c, Config::LoadFile(path));
  if (options.base_dir.empty()) {
    size_t slash = path.rfind('/');
    options.base_dir = slash == std::string::npos ? "" : path.substr(0, slash);
  }
  return FromConfig(c, options);
}

absl::StatusOr<RuleSet> RuleSet::Single(const std::string& type) {
  if (type == "plugin" || type == "regex")
    return absl::InvalidArgumentError("rule '" + type + "' needs settings: use --rules FILE");
  nlohmann::json tree = {{"rules", nlohmann::json::array({{{"type", type}}})}};
  GRPO_ASSIGN_OR_RETURN(Config c, Config::FromJson(tree, "--rule " + type));
  return FromConfig(c, RuleSetOptions{});
}

ItemResult RuleSet::Score(const RewardItem& item) const {
  ItemResult out;
  if (!item.task.empty()) {
    bool known = false;
    for (const auto& t : known_tasks_) known |= t == item.task;
    bool any_all = false;
    for (const auto& r : rules_) any_all |= r.tasks.empty();
    if (!known && !any_all) {
      out.error = "unknown task '" + item.task + "'";
      return out;
    }
  }
  double total = 0;
  std::string first_error;
  for (const auto& r : rules_) {
    bool applies = r.tasks.empty();
    for (const auto& t : r.tasks) applies |= t == item.task;
    if (!applies) continue;
    RuleResult rr;
    rr.rule = r.name;
    rr.weight = r.weight;
    absl::StatusOr<RuleOutput> s = r.rule->Score(item);
    if (!s.ok()) {
      rr.error = s.status().ToString();
      if (first_error.empty()) first_error = r.name + ": " + rr.error;
    } else if (!std::isfinite(s->score)) {
      rr.error = "non-finite score";
      if (first_error.empty()) first_error = r.name + ": " + rr.error;
    } else {
      rr.score = s->score;
      rr.detail = std::move(s->detail);
      total += r.weight * s->score;
    }
    out.rules.push_back(std::move(rr));
  }
  if (out.rules.empty()) {
    out.error = "no rule applies to task '" + item.task + "'";
  } else if (!first_error.empty()) {
    out.error = first_error;
  } else if (!std::isfinite(total)) {
    // Scores are finite and weights bounded, yet a plugin's huge score times a weight can
    // overflow: an error for this item, never a reward of inf (JSON null) counted as scored.
    out.error = "reward is not finite (the sum of weight x score overflows)";
  } else {
    out.reward = total;
  }
  return out;
}

}  // namespace grpo::reward
