#include "store/inspect.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <map>
#include <vector>

#include "proto/sample_text.h"

namespace grpo::store {
namespace {

using Json = nlohmann::ordered_json;
using grpo::v1::StepSummary;
using grpo::v1::Trajectory;

std::string Rfc3339(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "";
  std::time_t t = static_cast<std::time_t>(ts.seconds());
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Json StepJson(const StepSummary& s) {
  Json j = {{"step", s.step()},
            {"num_samples", s.num_samples()},
            {"num_prompts", s.num_prompts()},
            {"reward_mean", s.reward_mean()},
            {"reward_std", s.reward_std()},
            {"accuracy", s.accuracy()},
            {"pass_at_g", s.pass_at_g()},
            {"response_len_mean", s.response_len_mean()},
            {"num_truncated", s.num_truncated()},
            {"num_aborted", s.num_aborted()},
            {"num_reward_errors", s.num_reward_errors()},
            {"num_zero_std_groups", s.num_zero_std_groups()},
            {"weight_version", s.weight_version()}};
  Json rules = Json::object();
  std::map<std::string, double> sorted(s.rule_means().begin(), s.rule_means().end());
  for (const auto& [k, v] : sorted) rules[k] = v;
  j["rule_means"] = rules;
  Json metrics = Json::object();
  std::map<std::string, double> m(s.metrics().begin(), s.metrics().end());
  for (const auto& [k, v] : m) metrics[k] = v;
  j["metrics"] = metrics;
  j["finished_at"] = Rfc3339(s.finished_at());
  return j;
}

Json RunJson(const RunInfo& r) {
  const auto& m = r.metadata;
  return Json{{"run_name", m.run_name()},
              {"created_at", Rfc3339(m.created_at())},
              {"model_path", m.model().path()},
              {"model_type", m.model().model_type()},
              {"model_config_sha256", m.model().config_sha256()},
              {"tokenizer_path", m.tokenizer().path()},
              {"tokenizer_sha256", m.tokenizer().tokenizer_sha256()},
              {"code_version", m.code_version()},
              {"seed", m.seed()},
              {"num_steps", r.num_steps},
              {"last_step", r.last_step ? Json(*r.last_step) : Json(nullptr)},
              {"num_samples", r.num_samples}};
}

Json SampleJson(const Trajectory& t, const CorrectnessSpec& spec) {
  std::optional<double> reward = TotalReward(t);
  Json rules = Json::array();
  for (const auto& r : t.reward().rules()) {
    rules.push_back(Json{{"rule", r.rule()}, {"score", r.score()}, {"weight", r.weight()}, {"error", r.error()},
                         {"detail", r.detail()}});
  }
  Json versions = Json::array();
  for (const auto& v : t.sample().weight_versions()) {
    versions.push_back(Json{{"version", v.version()}, {"first_token", v.first_token()}});
  }
  return Json{{"sample_index", t.sample_index()},
              {"num_tokens", t.sample().token_ids_size()},
              {"finish_reason", FinishReasonText(t.sample().finish_reason())},
              {"reward", reward ? Json(*reward) : Json(nullptr)},
              {"reward_error", t.reward().error()},
              {"correct", IsCorrect(t, spec)},
              {"advantage", t.advantage()},
              {"rules", rules},
              {"weight_versions", versions},
              {"seed", t.sample().seed()},
              {"has_raw_logprobs", t.sample().raw_logprobs_size() > 0},
              {"has_routing", t.sample().has_routing()},
              {"generated_at", Rfc3339(t.generated_at())},
              {"text", t.sample().text()}};
}

}  // namespace

absl::StatusOr<Json> Inspect(const TrajectoryStore& store, const InspectRequest& req) {
  if (!req.step && (req.prompt || req.sample)) return absl::InvalidArgumentError("--prompt and --sample need --step");
  if (req.sample && !req.prompt) return absl::InvalidArgumentError("--sample needs --prompt");
  const SampleQuery& f = req.filter;
  if (f.min_reward || f.max_reward || f.rule || f.weight_version) {
    GRPO_ASSIGN_OR_RETURN(RunInfo run, store.GetRun(req.run.value_or("")));
    SampleQuery q = f;
    if (req.step) q.first_step = q.last_step = req.step;
    q.prompt_index = req.prompt;
    Json matches = Json::array();
    uint64_t count = 0;
    GRPO_RETURN_IF_ERROR(store.ScanSamples(run.metadata.run_name(), q, [&](const Trajectory& t) {
      if (++count > req.limit) return false;
      std::optional<double> reward = TotalReward(t);
      matches.push_back(Json{{"step", t.step()},
                             {"prompt_index", t.prompt_index()},
                             {"sample_index", t.sample_index()},
                             {"reward", reward ? Json(*reward) : Json(nullptr)},
                             {"correct", IsCorrect(t, req.correctness)},
                             {"num_tokens", t.sample().token_ids_size()},
                             {"finish_reason", FinishReasonText(t.sample().finish_reason())},
                             {"text", t.sample().text()}});
      return true;
    }));
    return Json{{"view", "query"}, {"run", run.metadata.run_name()}, {"limit", req.limit},
                {"truncated", count > req.limit}, {"samples", matches}};
  }
  if (!req.run && !req.step) {
    GRPO_ASSIGN_OR_RETURN(auto runs, store.ListRuns());
    Json list = Json::array();
    for (const auto& r : runs) list.push_back(RunJson(r));
    return Json{{"view", "runs"}, {"store", store.dir()}, {"runs", list}};
  }
  GRPO_ASSIGN_OR_RETURN(RunInfo run, store.GetRun(req.run.value_or("")));
  const std::string& name = run.metadata.run_name();
  if (!req.step) {
    GRPO_ASSIGN_OR_RETURN(auto steps, store.ListSteps(name));
    Json list = Json::array();
    for (const auto& s : steps) list.push_back(StepJson(s));
    Json r = RunJson(run);
    r["recipe_yaml"] = run.metadata.recipe_yaml();
    return Json{{"view", "run"}, {"store", store.dir()}, {"run", r}, {"steps", list}};
  }
  SampleQuery q;
  q.first_step = q.last_step = req.step;
  q.prompt_index = req.prompt;
  if (!req.prompt) {
    auto summaries = store.ListSteps(name, req.step, req.step);
    if (!summaries.ok()) return summaries.status();
    if (summaries->empty()) {
      return absl::NotFoundError("run '" + name + "' has no step " + std::to_string(*req.step));
    }
    Json groups = Json::array();
    uint32_t k_used = req.k;
    GRPO_RETURN_IF_ERROR(store.ScanGroups(name, q, [&](const grpo::v1::PromptRecord& p, const auto& g) {
      GroupStats s = SummarizeGroup(g, req.correctness);
      uint32_t k = req.k ? req.k : s.num_samples;
      k_used = k;
      groups.push_back(Json{{"prompt_index", p.prompt_index()},
                            {"group_id", p.group_id()},
                            {"num_samples", s.num_samples},
                            {"num_scored", s.num_scored},
                            {"num_correct", s.num_correct},
                            {"pass_at_1", PassAtK(s.num_scored, s.num_correct, 1)},
                            {"pass_at_k", PassAtK(s.num_scored, s.num_correct, k)},
                            {"reward_mean", s.reward_mean},
                            {"reward_std", s.reward_std},
                            {"best_sample_index", s.best_sample_index},
                            {"response_len_mean", s.response_len_mean},
                            {"dataset_row_id", p.dataset_row_id()},
                            {"prompt_text", p.prompt_text()}});
      return true;
    }));
    return Json{{"view", "step"}, {"run", name}, {"step", *req.step}, {"k", k_used},
                {"summary", StepJson(summaries->front())}, {"groups", groups}};
  }
  GRPO_ASSIGN_OR_RETURN(auto prompt, store.GetPrompt(name, *req.step, *req.prompt));
  Json samples = Json::array();
  if (req.sample) {
    GRPO_ASSIGN_OR_RETURN(auto t, store.GetSample(name, *req.step, *req.prompt, *req.sample));
    samples.push_back(SampleJson(t, req.correctness));
  } else {
    GRPO_RETURN_IF_ERROR(store.ScanSamples(name, q, [&](const Trajectory& t) {
      samples.push_back(SampleJson(t, req.correctness));
      return true;
    }));
  }
  Json p = {{"prompt_text", prompt.prompt_text()}, {"answer", prompt.answer()},
            {"dataset", prompt.dataset()},         {"dataset_row_id", prompt.dataset_row_id()},
            {"task", prompt.task()},               {"num_tokens", prompt.prompt_token_ids_size()}};
  return Json{{"view", "samples"}, {"run", name}, {"step", *req.step}, {"prompt_index", *req.prompt},
              {"prompt", p}, {"samples", samples}};
}

namespace {

std::string Fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string Fmt(const char* format, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, format);
  vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  return buf;
}

std::string OneLine(std::string s, size_t max) {
  for (char& c : s) c = (c == '\n' || c == '\t') ? ' ' : c;
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

}  // namespace

std::string RenderInspectText(const Json& v) {
  std::string out;
  const std::string view = v.at("view");
  if (view == "runs") {
    out += "store " + v.at("store").get<std::string>() + ": " + std::to_string(v.at("runs").size()) + " run(s)\n";
    out += Fmt("%-24s %8s %10s %-20s %-12s %s\n", "run", "steps", "samples", "created", "model_type", "code_version");
    for (const auto& r : v.at("runs")) {
      out += Fmt("%-24s %8llu %10llu %-20s %-12s %s\n", r.at("run_name").get<std::string>().c_str(),
                 r.at("num_steps").get<unsigned long long>(), r.at("num_samples").get<unsigned long long>(),
                 r.at("created_at").get<std::string>().c_str(), r.at("model_type").get<std::string>().c_str(),
                 r.at("code_version").get<std::string>().c_str());
    }
  } else if (view == "run") {
    const auto& r = v.at("run");
    out += "run " + r.at("run_name").get<std::string>() + " (created " + r.at("created_at").get<std::string>() +
           ", code " + r.at("code_version").get<std::string>() + ")\n";
    out += "  model     " + r.at("model_path").get<std::string>() + " (" + r.at("model_type").get<std::string>() +
           ", config sha256 " + r.at("model_config_sha256").get<std::string>().substr(0, 12) + ")\n";
    out += "  tokenizer " + r.at("tokenizer_path").get<std::string>() + "\n";
    out += Fmt("  %llu steps, %llu samples\n", r.at("num_steps").get<unsigned long long>(),
               r.at("num_samples").get<unsigned long long>());
    out += Fmt("%8s %8s %8s %11s %10s %9s %8s %9s %6s %6s\n", "step", "samples", "prompts", "reward_mean",
               "reward_std", "accuracy", "pass@G", "len_mean", "trunc", "errors");
    for (const auto& s : v.at("steps")) {
      out += Fmt("%8llu %8u %8u %11.4f %10.4f %9.4f %8.4f %9.1f %6u %6u\n", s.at("step").get<unsigned long long>(),
                 s.at("num_samples").get<unsigned>(), s.at("num_prompts").get<unsigned>(),
                 s.at("reward_mean").get<double>(), s.at("reward_std").get<double>(), s.at("accuracy").get<double>(),
                 s.at("pass_at_g").get<double>(), s.at("response_len_mean").get<double>(),
                 s.at("num_truncated").get<unsigned>(), s.at("num_reward_errors").get<unsigned>());
    }
  } else if (view == "step") {
    const auto& s = v.at("summary");
    out += Fmt("run %s step %llu: %u samples in %u groups, reward %.4f +- %.4f, accuracy %.4f, pass@G %.4f, "
               "response length %.1f\n",
               v.at("run").get<std::string>().c_str(), v.at("step").get<unsigned long long>(),
               s.at("num_samples").get<unsigned>(), s.at("num_prompts").get<unsigned>(),
               s.at("reward_mean").get<double>(), s.at("reward_std").get<double>(), s.at("accuracy").get<double>(),
               s.at("pass_at_g").get<double>(), s.at("response_len_mean").get<double>());
    const std::string k = "pass@" + std::to_string(v.at("k").get<unsigned>());
    out += Fmt("%7s %8s %8s %7s %7s %11s %10s %5s %8s  %s\n", "prompt", "samples", "correct", "pass@1", k.c_str(),
               "reward_mean", "reward_std", "best", "len_mean", "prompt_text");
    for (const auto& g : v.at("groups")) {
      out += Fmt("%7u %8u %8u %7.4f %7.4f %11.4f %10.4f %5lld %8.1f  %s\n", g.at("prompt_index").get<unsigned>(),
                 g.at("num_samples").get<unsigned>(), g.at("num_correct").get<unsigned>(),
                 g.at("pass_at_1").get<double>(), g.at("pass_at_k").get<double>(), g.at("reward_mean").get<double>(),
                 g.at("reward_std").get<double>(), g.at("best_sample_index").get<long long>(),
                 g.at("response_len_mean").get<double>(), OneLine(g.at("prompt_text"), 60).c_str());
    }
  } else if (view == "query") {
    out += Fmt("run %s: %zu matching sample(s)%s\n", v.at("run").get<std::string>().c_str(), v.at("samples").size(),
               v.at("truncated").get<bool>() ? " (limit reached; raise --limit)" : "");
    out += Fmt("%8s %7s %7s %9s %8s %7s %8s  %s\n", "step", "prompt", "sample", "reward", "correct", "tokens",
               "finish", "text");
    for (const auto& m : v.at("samples")) {
      std::string reward = m.at("reward").is_null() ? "error" : Fmt("%.4f", m.at("reward").get<double>());
      out += Fmt("%8llu %7u %7u %9s %8s %7d %8s  %s\n", m.at("step").get<unsigned long long>(),
                 m.at("prompt_index").get<unsigned>(), m.at("sample_index").get<unsigned>(), reward.c_str(),
                 m.at("correct").get<bool>() ? "yes" : "no", m.at("num_tokens").get<int>(),
                 m.at("finish_reason").get<std::string>().c_str(), OneLine(m.at("text"), 60).c_str());
    }
  } else {
    const auto& p = v.at("prompt");
    out += Fmt("run %s step %llu prompt %u (dataset %s row %s, task %s, %d prompt tokens)\n",
               v.at("run").get<std::string>().c_str(), v.at("step").get<unsigned long long>(),
               v.at("prompt_index").get<unsigned>(), p.at("dataset").get<std::string>().c_str(),
               p.at("dataset_row_id").get<std::string>().c_str(), p.at("task").get<std::string>().c_str(),
               p.at("num_tokens").get<int>());
    out += "--- prompt ---\n" + p.at("prompt_text").get<std::string>() + "\n";
    out += "--- gold answer ---\n" + p.at("answer").get<std::string>() + "\n";
    for (const auto& s : v.at("samples")) {
      std::string reward = s.at("reward").is_null() ? "error: " + s.at("reward_error").get<std::string>()
                                                    : Fmt("%.4f", s.at("reward").get<double>());
      out += Fmt("--- sample %u: reward %s, %s, %d tokens, finish %s, advantage %.4f ---\n",
                 s.at("sample_index").get<unsigned>(), reward.c_str(),
                 s.at("correct").get<bool>() ? "correct" : "not correct", s.at("num_tokens").get<int>(),
                 s.at("finish_reason").get<std::string>().c_str(), s.at("advantage").get<double>());
      for (const auto& r : s.at("rules")) {
        out += Fmt("  rule %-16s score %.4f weight %.4f", r.at("rule").get<std::string>().c_str(),
                   r.at("score").get<double>(), r.at("weight").get<double>());
        if (!r.at("error").get<std::string>().empty()) out += "  error: " + r.at("error").get<std::string>();
        if (!r.at("detail").get<std::string>().empty()) out += "  (" + r.at("detail").get<std::string>() + ")";
        out += "\n";
      }
      out += s.at("text").get<std::string>() + "\n";
    }
  }
  return out;
}

}  // namespace grpo::store
