#include "reward/code_rule.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace grpo::reward {
namespace {

using json = nlohmann::json;

// A test field that is a string, or a list of lines.
absl::StatusOr<std::string> TextOf(const json& v, const char* what, size_t i) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string out;
    for (const json& line : v) {
      if (!line.is_string()) break;
      out += line.get<std::string>() + "\n";
    }
    return out;
  }
  if (v.is_number() || v.is_boolean()) return v.dump();
  return absl::InvalidArgumentError(absl::StrCat("code tests: ", what, "[", i, "] is not text"));
}

// Call-based APPS test: the program, then a call of fn_name on the JSON arguments that
// compares the result with the expected JSON value.
std::string CallHarness(const std::string& fn_name, const json& args, const json& want) {
  json call_args = args.is_array() ? args : json::array({args});
  return absl::StrCat(
      "\n\nimport json as _grpo_json, sys as _grpo_sys\n",
      "_grpo_got = ", fn_name, "(*_grpo_json.loads(", json(call_args.dump()).dump(), "))\n",
      "_grpo_want = _grpo_json.loads(", json(want.dump()).dump(), ")\n",
      "if isinstance(_grpo_got, tuple): _grpo_got = list(_grpo_got)\n",
      "if _grpo_got != _grpo_want and [_grpo_got] != _grpo_want: _grpo_sys.exit(1)\n");
}

absl::StatusOr<std::vector<CodeTest>> IoTests(const json& t) {
  const json& in = t["inputs"];
  const json& out = t.contains("outputs") ? t["outputs"] : json();
  if (!in.is_array() || !out.is_array() || in.size() != out.size())
    return absl::InvalidArgumentError("code tests: 'inputs' and 'outputs' must be lists of the same length");
  std::vector<CodeTest> tests;
  const bool call = t.contains("fn_name") && t["fn_name"].is_string();
  for (size_t i = 0; i < in.size(); ++i) {
    CodeTest c;
    if (call) {
      c.check_output = false;
      c.appended_code = CallHarness(t["fn_name"].get<std::string>(), in[i], out[i]);
    } else {
      GRPO_ASSIGN_OR_RETURN(c.input, TextOf(in[i], "inputs", i));
      GRPO_ASSIGN_OR_RETURN(c.expected_output, TextOf(out[i], "outputs", i));
    }
    tests.push_back(std::move(c));
  }
  return tests;
}

bool TagMatches(std::string_view tag, const std::vector<std::string>& tags) {
  while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\r' || tag.back() == '\t')) tag.remove_suffix(1);
  return std::find(tags.begin(), tags.end(), std::string(tag)) != tags.end();
}

std::vector<std::string_view> Lines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t at = 0;
  while (at <= s.size()) {
    size_t nl = s.find('\n', at);
    std::string_view line = s.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

const std::vector<std::string>& BlockTags(const std::string& language) {
  static const std::vector<std::string> python = {"python", "py", "python3"};
  static const std::vector<std::string> cpp = {"cpp", "c++", "cxx", "cc"};
  return language == "cpp" ? cpp : python;
}

sandbox::Config RunConfig(sandbox::Isolation isolation) {
  sandbox::Config config;
  config.isolation = isolation;
  config.scratch_bytes = uint64_t{16} << 20;
  return config;
}

// The compiler's first line that says "error" (else its first line): what a failed compile tells.
std::string FirstError(const std::string& stderr_text) {
  std::vector<std::string_view> lines = Lines(stderr_text);
  for (std::string_view line : lines) {
    if (line.find("error") != std::string_view::npos) return std::string(line);
  }
  return lines.empty() ? "" : std::string(lines.front());
}

}  // namespace

struct CodeRule::Program {
  std::string source;  // python: the program's text
  std::string binary;  // cpp: the executable
};

absl::StatusOr<std::vector<CodeTest>> ParseCodeTests(std::string_view text) {
  json t = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (t.is_discarded() || !t.is_object())
    return absl::InvalidArgumentError("code tests: not a JSON object (expected {\"inputs\": [...], \"outputs\": [...]}, "
                                      "{\"test_list\": [...]} or {\"test\": ..., \"entry_point\": ...})");
  std::vector<CodeTest> tests;
  if (t.contains("inputs")) {
    GRPO_ASSIGN_OR_RETURN(tests, IoTests(t));
  } else if (t.contains("test_list") && t["test_list"].is_array()) {
    for (const json& a : t["test_list"]) {
      if (!a.is_string()) return absl::InvalidArgumentError("code tests: test_list holds a non-string");
      CodeTest c;
      c.check_output = false;
      c.appended_code = "\n\n" + a.get<std::string>() + "\n";
      tests.push_back(std::move(c));
    }
  } else if (t.contains("test") && t["test"].is_string()) {
    CodeTest c;
    c.check_output = false;
    c.appended_code = "\n\n" + t["test"].get<std::string>() + "\n";
    if (t.contains("entry_point") && t["entry_point"].is_string())
      c.appended_code += "\ncheck(" + t["entry_point"].get<std::string>() + ")\n";
    tests.push_back(std::move(c));
  } else {
    return absl::InvalidArgumentError("code tests: no 'inputs'/'outputs', 'test_list' or 'test' key");
  }
  if (tests.empty()) return absl::InvalidArgumentError("code tests: the item has no tests");
  return tests;
}

absl::StatusOr<std::string> ExtractFencedCode(std::string_view text, const std::vector<std::string>& tags) {
  std::string_view found;
  bool any = false;
  size_t at = 0;
  while ((at = text.find("```", at)) != std::string_view::npos) {
    size_t eol = text.find('\n', at + 3);
    if (eol == std::string_view::npos) break;
    size_t close = text.find("```", eol + 1);
    if (close == std::string_view::npos) break;
    if (TagMatches(text.substr(at + 3, eol - at - 3), tags)) {
      found = text.substr(eol + 1, close - eol - 1);
      any = true;
    }
    at = close + 3;
  }
  if (!any) return absl::NotFoundError("no ```" + tags.front() + " block");
  return std::string(found);
}

bool SameOutput(std::string_view got, std::string_view want) { return Lines(got) == Lines(want); }

CodeRule::CodeRule(CodeRuleOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<CodeRule>> CodeRule::Create(CodeRuleOptions options) {
  if (options.language != "python" && options.language != "cpp")
    return absl::InvalidArgumentError("code rule: language '" + options.language + "' is not supported (python, cpp)");
  if (options.compile_timeout <= absl::ZeroDuration() || options.compile_memory_mb < 64 ||
      options.max_binary_bytes == 0 || options.max_binary_bytes > (size_t{1} << 30))
    return absl::InvalidArgumentError("code rule: compile_timeout must be > 0, compile_memory_mb >= 64, "
                                      "max_binary_bytes in [1, 1 GiB]");
  if (options.test_timeout <= absl::ZeroDuration() || options.total_timeout <= absl::ZeroDuration() ||
      options.memory_mb < 16 || options.max_processes < 1)
    return absl::InvalidArgumentError("code rule: timeouts must be > 0, memory_mb >= 16, max_processes >= 1");
  const sandbox::Config config = RunConfig(options.isolation);
  // Fail now, with the reason, where the sandbox cannot work here.
  GRPO_RETURN_IF_ERROR(sandbox::Sandbox::Create(config).status());
  std::unique_ptr<CodeRule> rule(new CodeRule(std::move(options)));
  rule->pool_ = std::make_unique<sandbox::Pool>(config, rule->options_.pool_size);
  return rule;
}

std::string CodeRule::Describe() const {
  return absl::StrCat("runs the last ```", BlockTags(options_.language).front(), " block against the item's tests in the sandbox; ",
                      options_.all_or_nothing ? "1 when all pass, else 0" : "fraction of tests passed");
}

absl::StatusOr<CodeRule::Program> CodeRule::Prepare(std::string_view completion, std::string* why) const {
  Program program;
  absl::StatusOr<std::string> source = ExtractFencedCode(completion, BlockTags(options_.language));
  if (!source.ok()) {
    *why = std::string(source.status().message());
    return program;
  }
  if (options_.language == "python") {
    program.source = *std::move(source);
    return program;
  }
  sandbox::Config config = RunConfig(options_.isolation);
  config.scratch_bytes = uint64_t{256} << 20;
  sandbox::Job job;
  // The source comes on stdin, the diagnostics go to stderr, the binary to stdout.
  job.argv = {"/bin/sh", "-c", "cat > prog.cpp && \"$0\" -std=c++17 -O2 -pipe -o prog prog.cpp 1>&2 && cat prog",
              options_.compiler};
  job.stdin_data = *std::move(source);
  job.deadline = options_.compile_timeout;
  job.limits.cpu_seconds = static_cast<int>(absl::ToInt64Seconds(absl::Ceil(options_.compile_timeout, absl::Seconds(1))));
  job.limits.address_space_bytes = static_cast<uint64_t>(options_.compile_memory_mb) << 20;
  job.limits.file_size_bytes = options_.max_binary_bytes;
  job.limits.processes = 16;
  job.stdout_cap = options_.max_binary_bytes + 1;
  job.stderr_cap = 4096;
  absl::StatusOr<sandbox::Result> r = sandbox::Run(config, job);
  if (!r.ok()) return grpo::WithContext(r.status(), "code rule: compiling");
  if (r->timed_out) *why = absl::StrCat("compile timed out after ", absl::FormatDuration(options_.compile_timeout));
  else if (!r->exited_ok()) *why = "compile error: " + FirstError(r->stderr_data);
  else if (r->stdout_truncated || r->stdout_data.size() > options_.max_binary_bytes)
    *why = absl::StrCat("compiled program larger than ", options_.max_binary_bytes, " bytes");
  if (!why->empty()) return program;
  program.binary = std::move(r->stdout_data);
  return program;
}

absl::StatusOr<sandbox::Result> CodeRule::RunTest(const Program& program, const CodeTest& t, absl::Duration left) const {
  sandbox::Job job;
  job.stdin_data = t.input;
  job.deadline = left;
  job.limits.cpu_seconds = static_cast<int>(absl::ToInt64Seconds(left)) + 1;
  job.limits.address_space_bytes = static_cast<uint64_t>(options_.memory_mb) << 20;
  job.limits.processes = options_.max_processes;
  job.stdout_cap = options_.max_output_bytes;
  job.stderr_cap = 4096;
  if (options_.language == "python") {
    job.argv = {options_.python, "-I", "-c", program.source + t.appended_code};
    return pool_->Run(job);
  }
  // The binary goes with the job to a warm sandbox, whose program executes it: a sealed copy
  // per test, as a Python program's text is, so that no open file or inode (its mode, offset,
  // locks) is shared from one run to the next.
  constexpr int kBinaryFd = 3;
  GRPO_ASSIGN_OR_RETURN(int binary_fd, sandbox::SealedMemfd(program.binary));
  job.fds = {{binary_fd, kBinaryFd}};
  job.argv = {absl::StrCat("/proc/self/fd/", kBinaryFd)};
  absl::StatusOr<sandbox::Result> r = pool_->Run(job);
  ::close(binary_fd);
  return r;
}

absl::StatusOr<RuleOutput> CodeRule::Score(const RewardItem& item) const {
  auto meta = item.meta.find("tests");
  GRPO_ASSIGN_OR_RETURN(std::vector<CodeTest> tests,
                        ParseCodeTests(meta != item.meta.end() ? meta->second : item.answer));
  if (options_.language == "cpp" && !tests.front().check_output)
    return absl::InvalidArgumentError("code tests: assert-style and call-based tests are Python; language cpp "
                                      "needs stdin/stdout tests");
  RuleOutput out;
  GRPO_ASSIGN_OR_RETURN(Program program, Prepare(item.completion, &out.detail));
  if (!out.detail.empty()) return out;
  const absl::Time end = absl::Now() + options_.total_timeout;
  size_t passed = 0;
  std::string first_failure;
  for (size_t i = 0; i < tests.size(); ++i) {
    const CodeTest& t = tests[i];
    std::string why;
    absl::Duration left = std::min(options_.test_timeout, end - absl::Now());
    if (left <= absl::ZeroDuration()) {
      why = "total time limit";
    } else {
      absl::StatusOr<sandbox::Result> r = RunTest(program, t, left);
      if (!r.ok()) return grpo::WithContext(r.status(), "code rule");
      if (r->timed_out) why = "timed out";
      else if (r->signal != 0) why = absl::StrCat("killed by signal ", r->signal);
      else if (r->exit_code != 0) why = absl::StrCat("exit code ", r->exit_code);
      else if (t.check_output && (r->stdout_truncated || !SameOutput(r->stdout_data, t.expected_output)))
        why = "wrong output";
    }
    if (why.empty()) ++passed;
    else if (first_failure.empty()) first_failure = absl::StrCat("; test ", i + 1, ": ", why);
    if (!why.empty() && options_.all_or_nothing) break;
  }
  const bool all = passed == tests.size();
  out.score = options_.all_or_nothing ? (all ? 1.0 : 0.0) : static_cast<double>(passed) / tests.size();
  out.detail = absl::StrCat(passed, "/", tests.size(), " tests passed", first_failure);
  return out;
}

}  // namespace grpo::reward
