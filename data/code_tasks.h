// Rows of the common code-generation datasets, mapped to Example (task "code") whose `answer`
// is the tests as JSON text in the forms the `code` reward rule reads (reward/code_rule.h):
//
//   APPS, TACO       {"question", "input_output": "{\"inputs\": [...], \"outputs\": [...]
//                     [, \"fn_name\": ...]}" (JSON text or object)}
//   CodeContests     {"description", "public_tests" / "private_tests" / "generated_tests":
//                     {"input": [...], "output": [...]}}        all three merged, in that order
//   LiveCodeBench    {"question_content", "public_test_cases": "[{\"input\", \"output\",
//                     \"testtype\": \"stdin\"}...]"}             stdin tests only; its compressed
//                                                               private tests are not read
//   HumanEval        {"prompt", "test", "entry_point"}        -> {"test", "entry_point"}
//   MBPP             {"text" or "prompt", "test_list": [...]} -> {"test_list"}
//
// The format is recognised by its keys. A row with no tests is an error naming what was missing.
#ifndef GRPO_DATA_CODE_TASKS_H_
#define GRPO_DATA_CODE_TASKS_H_

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "data/example.h"

namespace grpo::data {

absl::StatusOr<Example> ParseCodeRow(const nlohmann::json& row);

}  // namespace grpo::data

#endif  // GRPO_DATA_CODE_TASKS_H_
