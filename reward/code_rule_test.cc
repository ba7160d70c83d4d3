#include "reward/code_rule.h"

#include <gtest/gtest.h>

namespace grpo::reward {
namespace {

const char* kSumTests = R"({"inputs": ["1 2\n", "10 -3\n", "0 0\n"], "outputs": ["3\n", "7", "0\n"]})";

std::string Fenced(const std::string& code) { return "Here is my solution.\n```python\n" + code + "\n```\nDone."; }

RewardItem Item(const std::string& code, const std::string& tests = kSumTests) {
  RewardItem it;
  it.completion = Fenced(code);
  it.answer = tests;
  return it;
}

std::unique_ptr<CodeRule> MakeRule(bool all_or_nothing = false) {
  CodeRuleOptions o;
  o.all_or_nothing = all_or_nothing;
  o.test_timeout = absl::Seconds(1);
  o.total_timeout = absl::Seconds(3);
  o.memory_mb = 256;
  auto r = CodeRule::Create(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

struct Case {
  const char* name;
  std::string code;
  double score;
};

// The programs of the issue's table, each with the score it must get on three a+b tests.
TEST(CodeRule, TableOfPrograms) {
  auto rule = MakeRule();
  ASSERT_NE(rule, nullptr);
  const Case cases[] = {
      {"correct", "a, b = map(int, input().split())\nprint(a + b)", 1.0},
      {"wrong", "a, b = map(int, input().split())\nprint(a - b)", 1.0 / 3},  // right only on 0 0
      {"crashing", "raise SystemExit(1)", 0.0},
      {"infinite loop", "while True: pass", 0.0},
      {"reads stdin forever", "import sys\nwhile True: sys.stdin.read()", 0.0},
      {"prints too much", "import sys\nsys.stdout.write('3\\n' * 10000000)", 0.0},
      {"fork bomb", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", 0.0},
      {"memory hog", "x = bytearray(1 << 31)\nprint(3)", 0.0},
      {"reads /etc/shadow", "print(open('/etc/shadow').read())", 0.0},
      {"opens a socket",
       "import socket\ns = socket.socket(); s.connect(('127.0.0.1', 22))\na, b = map(int, input().split())\nprint(a + b)",
       0.0},
      {"writes outside scratch then answers",
       "try:\n    open('/usr/x', 'w')\n    print('escaped')\nexcept OSError:\n    a, b = map(int, input().split())\n    print(a + b)",
       1.0},
  };
  for (const Case& c : cases) {
    absl::Time t0 = absl::Now();
    absl::StatusOr<RuleOutput> r = rule->Score(Item(c.code));
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    EXPECT_NEAR(r->score, c.score, 1e-9) << c.name << ": " << r->detail;
    std::cout << c.name << ": " << r->score << " (" << r->detail << ") in " << absl::Now() - t0 << "\n";
  }
}

TEST(CodeRule, AllOrNothing) {
  auto rule = MakeRule(/*all_or_nothing=*/true);
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->Score(Item("a, b = map(int, input().split())\nprint(a + b)"))->score, 1.0);
  EXPECT_EQ(rule->Score(Item("a, b = map(int, input().split())\nprint(a - b)"))->score, 0.0);
}

TEST(CodeRule, AssertStyleAndCallBasedTests) {
  auto rule = MakeRule();
  ASSERT_NE(rule, nullptr);
  const std::string add = "def add(a, b):\n    return a + b";
  const std::string mbpp = R"({"test_list": ["assert add(1, 2) == 3", "assert add(2, 2) == 5"]})";
  EXPECT_EQ(rule->Score(Item(add, mbpp))->score, 0.5);
  const std::string humaneval =
      R"({"test": "def check(candidate):\n    assert candidate(1, 2) == 3\n", "entry_point": "add"})";
  EXPECT_EQ(rule->Score(Item(add, humaneval))->score, 1.0);
  EXPECT_EQ(rule->Score(Item("def add(a, b):\n    return 0", humaneval))->score, 0.0);
  const std::string call = R"({"fn_name": "add", "inputs": [[1, 2], [5, 5]], "outputs": [[3], 10]})";
  EXPECT_EQ(rule->Score(Item(add, call))->score, 1.0);
}

TEST(CodeRule, TestsFromMetaAndItemErrors) {
  auto rule = MakeRule();
  ASSERT_NE(rule, nullptr);
  RewardItem it = Item("print(int(input()) * 2)", "");
  it.meta["tests"] = R"({"inputs": ["4"], "outputs": ["8"]})";
  EXPECT_EQ(rule->Score(it)->score, 1.0);
  EXPECT_EQ(rule->Score(Item("print(1)", "not json")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rule->Score(Item("print(1)", R"({"inputs": ["1"], "outputs": []})")).status().code(),
            absl::StatusCode::kInvalidArgument);
  RewardItem no_code;
  no_code.completion = "I think the answer is 3.";
  no_code.answer = kSumTests;
  absl::StatusOr<RuleOutput> r = rule->Score(no_code);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->score, 0.0);
  EXPECT_EQ(r->detail, "no ```python block");
}

TEST(CodeRule, ExtractsTheLastBlockOfTheLanguage) {
  std::string text = "```python\nprint(1)\n```\n```cpp\nint x;\n```\n```py\nprint(2)\n```\n```\nplain\n```";
  EXPECT_EQ(*ExtractFencedCode(text, {"python", "py"}), "print(2)\n");
  EXPECT_FALSE(ExtractFencedCode("```python\nunterminated", {"python"}).ok());
}

TEST(CodeRule, OutputComparison) {
  EXPECT_TRUE(SameOutput("1 2  \n3\n\n", "1 2\n3"));
  EXPECT_FALSE(SameOutput("1 2\n3", "1  2\n3"));
  EXPECT_FALSE(SameOutput("", "0"));
}

TEST(CodeRule, WeakIsolation) {
  CodeRuleOptions o;
  o.isolation = sandbox::Isolation::kWeak;
  o.test_timeout = absl::Seconds(1);
  auto rule = CodeRule::Create(o);
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_EQ((*rule)->Score(Item("a, b = map(int, input().split())\nprint(a + b)"))->score, 1.0);
  EXPECT_EQ((*rule)->Score(Item("while True: pass"))->score, 0.0);
}

TEST(CodeRule, OptionErrors) {
  CodeRuleOptions o;
  o.language = "cobol";
  EXPECT_EQ(CodeRule::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace grpo::reward
