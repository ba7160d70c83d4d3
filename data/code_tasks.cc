#include "data/code_tasks.h"

#include <string>

namespace grpo::data {
namespace {

using json = nlohmann::json;

absl::StatusOr<std::string> Text(const json& row, const char* key) {
  auto it = row.find(key);
  if (it == row.end() || !it->is_string()) return absl::InvalidArgumentError(std::string("missing string field \"") + key + "\"");
  return it->get<std::string>();
}

// A field that holds JSON either as a value or as JSON text.
absl::StatusOr<json> Embedded(const json& v, const char* key) {
  if (!v.is_string()) return v;
  json parsed = json::parse(v.get<std::string>(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError(std::string("field \"") + key + "\" is not JSON text");
  return parsed;
}

absl::StatusOr<json> AppsTests(const json& row) {
  GRPO_ASSIGN_OR_RETURN(json t, Embedded(row["input_output"], "input_output"));
  if (!t.is_object() || !t.contains("inputs") || !t.contains("outputs"))
    return absl::InvalidArgumentError("field \"input_output\" has no inputs/outputs");
  json out = {{"inputs", t["inputs"]}, {"outputs", t["outputs"]}};
  if (t.contains("fn_name")) out["fn_name"] = t["fn_name"];
  return out;
}

json CodeContestsTests(const json& row) {
  json inputs = json::array(), outputs = json::array();
  for (const char* key : {"public_tests", "private_tests", "generated_tests"}) {
    auto it = row.find(key);
    if (it == row.end() || !it->is_object()) continue;
    const json& in = (*it)["input"];
    const json& out = (*it)["output"];
    if (!in.is_array() || !out.is_array()) continue;
    for (size_t i = 0; i < in.size() && i < out.size(); ++i) {
      inputs.push_back(in[i]);
      outputs.push_back(out[i]);
    }
  }
  return {{"inputs", inputs}, {"outputs", outputs}};
}

absl::StatusOr<json> LiveCodeBenchTests(const json& row) {
  GRPO_ASSIGN_OR_RETURN(json cases, Embedded(row["public_test_cases"], "public_test_cases"));
  if (!cases.is_array()) return absl::InvalidArgumentError("field \"public_test_cases\" is not a list");
  json inputs = json::array(), outputs = json::array();
  for (const json& c : cases) {
    if (!c.is_object() || c.value("testtype", "stdin") != "stdin") continue;
    if (!c.contains("input") || !c.contains("output")) continue;
    inputs.push_back(c["input"]);
    outputs.push_back(c["output"]);
  }
  return json{{"inputs", inputs}, {"outputs", outputs}};
}

absl::StatusOr<Example> Build(std::string question, json tests) {
  const json& list = tests.contains("inputs") ? tests["inputs"] : tests.contains("test_list") ? tests["test_list"] : json();
  if (!tests.contains("test") && (!list.is_array() || list.empty()))
    return absl::InvalidArgumentError("the row has no tests");
  Example e;
  e.task = "code";
  e.question = std::move(question);
  e.answer = tests.dump();
  e.fields["question"] = e.question;
  e.fields["answer"] = e.answer;
  return e;
}

}  // namespace

absl::StatusOr<Example> ParseCodeRow(const json& row) {
  if (!row.is_object()) return absl::InvalidArgumentError("not a JSON object");
  if (row.contains("input_output")) {
    GRPO_ASSIGN_OR_RETURN(std::string q, Text(row, "question"));
    GRPO_ASSIGN_OR_RETURN(json tests, AppsTests(row));
    return Build(std::move(q), std::move(tests));
  }
  if (row.contains("public_tests") || row.contains("private_tests") || row.contains("generated_tests")) {
    GRPO_ASSIGN_OR_RETURN(std::string q, Text(row, "description"));
    return Build(std::move(q), CodeContestsTests(row));
  }
  if (row.contains("public_test_cases")) {
    GRPO_ASSIGN_OR_RETURN(std::string q, Text(row, "question_content"));
    GRPO_ASSIGN_OR_RETURN(json tests, LiveCodeBenchTests(row));
    return Build(std::move(q), std::move(tests));
  }
  if (row.contains("test") && row.contains("entry_point")) {
    GRPO_ASSIGN_OR_RETURN(std::string q, Text(row, "prompt"));
    GRPO_ASSIGN_OR_RETURN(std::string test, Text(row, "test"));
    GRPO_ASSIGN_OR_RETURN(std::string entry, Text(row, "entry_point"));
    return Build(std::move(q), json{{"test", test}, {"entry_point", entry}});
  }
  if (row.contains("test_list")) {
    GRPO_ASSIGN_OR_RETURN(std::string q, Text(row, row.contains("text") ? "text" : "prompt"));
    if (!row["test_list"].is_array()) return absl::InvalidArgumentError("field \"test_list\" is not a list");
    return Build(std::move(q), json{{"test_list", row["test_list"]}});
  }
  return absl::InvalidArgumentError(
      "no tests: expected input_output (APPS, TACO), public_tests (CodeContests), public_test_cases "
      "(LiveCodeBench), test + entry_point (HumanEval) or test_list (MBPP)");
}

}  // namespace grpo::data
