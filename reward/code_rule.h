// CodeRule ("code"): runs the program in the completion against the item's tests, in the
// sandbox (sandbox/sandbox.h), and scores the fraction of tests passed (or 1/0 when every test
// must pass). Languages: Python 3 ("python") and C++ ("cpp", compiled with g++).
//
// Contract:
//  - The program is the last fenced block of the language (```python ... ```; tags python, py,
//    python3; for cpp: cpp, c++, cxx, cc) of the completion. No such block scores 0 ("no python
//    block"), a judgment, not an error.
//  - C++ is compiled once per item, inside a sandbox of its own (`compiler` -std=c++17 -O2,
//    `compile_timeout`, `compile_memory_mb`, a binary of at most `max_binary_bytes`); a program
//    that does not compile (or not in time) scores 0 with the compiler's first error line in the
//    detail. The binary then runs per test like a Python program, in a warm sandbox of the
//    same pool: each test gets its own sealed memfd of it (nothing is written to the host's
//    disk, nothing is shared between runs), sent with the job as descriptor 3 and executed as
//    /proc/self/fd/3. Assert-style and call-based tests (MBPP, HumanEval, APPS fn_name) are
//    Python code and are an item error for cpp.
//  - The tests are JSON text in meta["tests"] when present, else in `answer`, in one of:
//      {"inputs": [...], "outputs": [...]}            stdin/stdout pairs (APPS, CodeContests,
//                                                      TACO, LiveCodeBench); a list element is
//                                                      joined with newlines
//      {"inputs": [[args]...], "outputs": [...], "fn_name": "f"}   call-based (APPS): f(*args)
//                                                      must return the output (JSON equality)
//      {"test_list": ["assert ...", ...]}              MBPP: each assert is one test
//      {"test": "def check(candidate): ...", "entry_point": "f"}   HumanEval: one test,
//                                                      check(f)
//    Anything else, or tests that are empty, is an item error (InvalidArgument).
//  - stdout is compared after trimming trailing whitespace on each line and trailing empty
//    lines. A test passes when the program exits 0 (and, for I/O tests, prints the output)
//    within `test_timeout`; tests not started by `total_timeout` fail.
//  - Each test is a fresh sandboxed run of `python` or the binary, from a warm pool of
//    `pool_size` (every sandbox runs one job, so nothing of a run reaches the next): no
//    network, read-only system, private /tmp, `memory_mb` of address space, `max_processes`,
//    output capped at `max_output_bytes`. A host without user namespaces fails at Create unless isolation is
//    weak (docs/sandbox.md).
//  - Deterministic as long as the programs are (a program near its time limit may pass on one
//    run and time out on another).
#ifndef GRPO_REWARD_CODE_RULE_H_
#define GRPO_REWARD_CODE_RULE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "reward/rule.h"
#include "sandbox/pool.h"

namespace grpo::reward {

struct CodeRuleOptions {
  std::string language = "python";
  std::string python = "/usr/bin/python3";
  std::string compiler = "/usr/bin/g++";           // cpp
  absl::Duration compile_timeout = absl::Seconds(20);  // cpp: wall clock of one compilation
  int compile_memory_mb = 2048;                    // cpp: address space of the compiler
  size_t max_binary_bytes = size_t{16} << 20;      // cpp: a larger binary fails to compile
  bool all_or_nothing = false;
  absl::Duration test_timeout = absl::Seconds(2);
  absl::Duration total_timeout = absl::Seconds(20);
  int memory_mb = 512;
  int max_processes = 16;
  size_t max_output_bytes = size_t{1} << 20;
  int pool_size = 2;  // warm sandboxes kept ready
  sandbox::Isolation isolation = sandbox::Isolation::kNamespaces;
};

// One test: stdin and expected stdout (I/O test), or code appended to the program (assert).
struct CodeTest {
  std::string input;
  std::string expected_output;
  bool check_output = true;
  std::string appended_code;
};

// Parses the tests JSON text (forms above).
absl::StatusOr<std::vector<CodeTest>> ParseCodeTests(std::string_view json);

// The last fenced block tagged with one of `tags`; NotFound when there is none.
absl::StatusOr<std::string> ExtractFencedCode(std::string_view completion, const std::vector<std::string>& tags);

// Output comparison used by the rule (trailing whitespace per line and trailing empty lines
// are ignored).
bool SameOutput(std::string_view got, std::string_view want);

class CodeRule : public Rule {
 public:
  // FailedPrecondition when the sandbox cannot run here (see docs/sandbox.md).
  static absl::StatusOr<std::unique_ptr<CodeRule>> Create(CodeRuleOptions options);
  std::string_view type() const override { return "code"; }
  std::string Describe() const override;
  absl::StatusOr<RuleOutput> Score(const RewardItem& item) const override;

 private:
  explicit CodeRule(CodeRuleOptions options);
  struct Program;
  // The program of the completion, ready to run (compiled for cpp); a judgment (score 0, with
  // `why`) when there is none or it does not compile.
  absl::StatusOr<Program> Prepare(std::string_view completion, std::string* why) const;
  absl::StatusOr<sandbox::Result> RunTest(const Program& program, const CodeTest& test, absl::Duration left) const;
  CodeRuleOptions options_;
  std::unique_ptr<sandbox::Pool> pool_;
};

}  // namespace grpo::reward

#endif  // GRPO_REWARD_CODE_RULE_H_
