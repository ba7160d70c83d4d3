#include "data/code_tasks.h"

#include <gtest/gtest.h>

namespace grpo::data {
namespace {

using json = nlohmann::json;

json Tests(const Example& e) { return json::parse(e.answer); }

TEST(CodeTasks, AppsAndTaco) {
  json row = {{"question", "Add two numbers."},
              {"input_output", R"({"inputs": ["1 2\n"], "outputs": ["3\n"]})"}};
  absl::StatusOr<Example> e = ParseCodeRow(row);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->task, "code");
  EXPECT_EQ(e->question, "Add two numbers.");
  EXPECT_EQ(Tests(*e), json::parse(R"({"inputs": ["1 2\n"], "outputs": ["3\n"]})"));
  row["input_output"] = json{{"inputs", {{1, 2}}}, {"outputs", {3}}, {"fn_name", "add"}};
  EXPECT_EQ(Tests(*ParseCodeRow(row))["fn_name"], "add");
}

TEST(CodeTasks, CodeContestsMergesItsTestSets) {
  json row = {{"description", "d"},
              {"public_tests", {{"input", {"1\n"}}, {"output", {"1\n"}}}},
              {"private_tests", {{"input", {"2\n"}}, {"output", {"4\n"}}}},
              {"generated_tests", {{"input", json::array()}, {"output", json::array()}}}};
  EXPECT_EQ(Tests(*ParseCodeRow(row)), json::parse(R"({"inputs": ["1\n", "2\n"], "outputs": ["1\n", "4\n"]})"));
}

TEST(CodeTasks, LiveCodeBenchKeepsStdinTests) {
  json row = {{"question_content", "q"},
              {"public_test_cases",
               R"J([{"input": "3\n", "output": "9\n", "testtype": "stdin"}, {"input": "f(1)", "output": "1", "testtype": "functional"}])J"}};
  EXPECT_EQ(Tests(*ParseCodeRow(row)), json::parse(R"({"inputs": ["3\n"], "outputs": ["9\n"]})"));
}

TEST(CodeTasks, HumanEvalAndMbpp) {
  json he = {{"prompt", "def add(a, b):\n"}, {"test", "def check(candidate): pass"}, {"entry_point", "add"}};
  EXPECT_EQ(Tests(*ParseCodeRow(he)), json({{"test", "def check(candidate): pass"}, {"entry_point", "add"}}));
  json mbpp = {{"text", "Write add."}, {"test_list", {"assert add(1, 2) == 3"}}};
  absl::StatusOr<Example> e = ParseCodeRow(mbpp);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->question, "Write add.");
  EXPECT_EQ(Tests(*e), json({{"test_list", {"assert add(1, 2) == 3"}}}));
}

TEST(CodeTasks, RowsWithoutTestsAreErrors) {
  EXPECT_FALSE(ParseCodeRow(json{{"question", "q"}}).ok());
  EXPECT_FALSE(ParseCodeRow(json{{"question", "q"}, {"input_output", "not json"}}).ok());
  EXPECT_FALSE(ParseCodeRow(json{{"description", "d"}, {"public_tests", {{"input", json::array()}, {"output", json::array()}}}}).ok());
  EXPECT_FALSE(ParseCodeRow(json::array()).ok());
}

}  // namespace
}  // namespace grpo::data
