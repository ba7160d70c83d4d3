#include "reward/code_rule.h"

#include <unistd.h>

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

std::unique_ptr<CodeRule> MakeCppRule(sandbox::Isolation isolation = sandbox::Isolation::kNamespaces) {
  CodeRuleOptions o;
  o.isolation = isolation;
  o.language = "cpp";
  o.test_timeout = absl::Seconds(1);
  o.total_timeout = absl::Seconds(3);
  o.memory_mb = 256;
  o.compile_timeout = absl::Seconds(60);  // g++ on a loaded 2-core machine
  auto r = CodeRule::Create(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

RewardItem CppItem(const std::string& code, const std::string& tests = kSumTests) {
  RewardItem it;
  it.completion = "My solution:\n```cpp\n" + code + "\n```\n";
  it.answer = tests;
  return it;
}

// The same table for C++: compiled with g++ in the sandbox, then run per test in warm
// sandboxes that receive the binary with the job. The escapes of sandbox_test.cc, tried by C++.
TEST(CodeRule, TableOfCppPrograms) {
  auto rule = MakeCppRule();
  ASSERT_NE(rule, nullptr);
  // <iostream> rather than <bits/stdc++.h>, which takes g++ seconds more per program, except in
  // the first (the header contest solutions use, which must work in the sandbox).
  const std::string body = "int main() {\n  long long a, b;\n  std::cin >> a >> b;\n";
  const std::string head = "#include <iostream>\n" + body;
  const Case cases[] = {
      {"correct", "#include <bits/stdc++.h>\n" + body + "  std::cout << a + b << \"\\n\";\n}", 1.0},
      {"wrong", head + "  std::cout << a - b << \"\\n\";\n}", 1.0 / 3},  // right only on 0 0
      {"does not compile", "int main() { return undeclared; }", 0.0},
      {"crashing", "int main() { volatile int* p = nullptr; return *p; }", 0.0},
      {"exits nonzero", head + "  std::cout << a + b << \"\\n\";\n  return 3;\n}", 0.0},
      {"infinite loop", "int main() { for (volatile int i = 0;; ) {} }", 0.0},
      {"reads stdin forever", "#include <cstdio>\nint main() { for (;;) std::getchar(); }", 0.0},
      {"prints too much", "#include <cstdio>\nint main() { for (;;) std::puts(\"3\"); }", 0.0},
      {"fork bomb", "#include <unistd.h>\nint main() { for (;;) fork(); }", 0.0},
      {"memory hog",
       "#include <cstdlib>\n#include <cstring>\nint main() { char* p = (char*)std::malloc(1u << 31);"
       " if (!p) return 1; std::memset(p, 1, 1u << 31); return 0; }",
       0.0},
      {"opens a socket then answers",
       "#include <iostream>\n#include <sys/socket.h>\nint main() { if (socket(AF_INET, SOCK_STREAM, 0) >= 0) "
       "return 0; long long a, b; std::cin >> a >> b; std::cout << a + b; }",
       1.0},
      {"writes outside scratch then answers",
       "#include <cstdio>\n#include <iostream>\nint main() { if (std::fopen(\"/usr/x\", \"w\")) return 0; long long a, b;"
       " std::cin >> a >> b; std::cout << a + b; }",
       1.0},
      // Its init and the host survive, and the child it leaves must die with it: alive, it would
      // hold stdout open past the deadline.
      {"signals its parent and the host, leaves a child, then answers",
       "#include <cstdio>\n#include <signal.h>\n#include <unistd.h>\nint main() {\n"
       "  if (fork() == 0) { setsid(); for (;;) pause(); }\n"
       "  kill(getppid(), SIGKILL); kill(1, SIGKILL); if (kill(" + std::to_string(getpid()) + ", SIGKILL) == 0) return 9;\n"
       "  long long a, b; if (std::scanf(\"%lld %lld\", &a, &b) != 2) return 1;\n"
       "  std::printf(\"%lld\\n\", a + b);\n}",
       1.0},
      // fd 3 (its binary) is its only extra descriptor, and it cannot change it (one that could
      // exits 8 and fails).
      {"holds only its binary and cannot change it, then answers",
       "#include <cstdio>\n#include <fcntl.h>\n#include <unistd.h>\nint main() {\n"
       "  int open_fds = 0;\n  for (int fd = 3; fd < 1024; ++fd) open_fds += fcntl(fd, F_GETFD) != -1;\n"
       "  int exe = open(\"/proc/self/exe\", O_WRONLY);\n"
       "  bool changed = pwrite(3, \"x\", 1, 0) == 1 || ftruncate(3, 0) == 0 || (exe >= 0 && pwrite(exe, \"x\", 1, 0) == 1);\n"
       "  long long a, b; if (std::scanf(\"%lld %lld\", &a, &b) != 2) return 1;\n"
       "  if (open_fds != 1 || changed) return 8;\n"
       "  std::printf(\"%lld\\n\", a + b);\n}",
       1.0},
  };
  for (const Case& c : cases) {
    absl::Time t0 = absl::Now();
    absl::StatusOr<RuleOutput> r = rule->Score(CppItem(c.code));
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    EXPECT_NEAR(r->score, c.score, 1e-9) << c.name << ": " << r->detail;
    std::cout << c.name << ": " << r->score << " (" << r->detail << ") in " << absl::Now() - t0 << "\n";
  }
}

// Without namespaces the binary still reaches a warm sandbox and runs from its memfd.
TEST(CodeRule, CppWithWeakIsolation) {
  auto rule = MakeCppRule(sandbox::Isolation::kWeak);
  ASSERT_NE(rule, nullptr);
  const std::string sum =
      "#include <cstdio>\nint main() { long long a, b; if (std::scanf(\"%lld %lld\", &a, &b) != 2) return 1;"
      " std::printf(\"%lld\\n\", a + b); }";
  absl::StatusOr<RuleOutput> r = rule->Score(CppItem(sum));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->score, 1.0) << r->detail;
}

TEST(CodeRule, CppDetailsAndItemErrors) {
  auto rule = MakeCppRule();
  ASSERT_NE(rule, nullptr);
  absl::StatusOr<RuleOutput> bad = rule->Score(CppItem("int main() { return undeclared; }"));
  ASSERT_TRUE(bad.ok()) << bad.status();
  EXPECT_EQ(bad->detail.rfind("compile error: ", 0), 0u) << bad->detail;
  EXPECT_NE(bad->detail.find("undeclared"), std::string::npos) << bad->detail;
  // A python block is not a C++ program.
  absl::StatusOr<RuleOutput> none = rule->Score(Item("print(3)"));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->detail, "no ```cpp block");
  // Assert-style tests are Python code.
  EXPECT_EQ(rule->Score(CppItem("int main() {}", R"({"test_list": ["assert f() == 1"]})")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CodeRule, OptionErrors) {
  CodeRuleOptions o;
  o.language = "cobol";
  EXPECT_EQ(CodeRule::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.language = "cpp";
  o.compile_timeout = absl::ZeroDuration();
  EXPECT_EQ(CodeRule::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace grpo::reward
