// Running a PyTorch reference from a C++ test.
//
// Tests compare our numbers with values computed by Debian's python3-torch (under
// /usr/bin/python3). The reference script reads and writes plain files in the test's temporary
// directory. A missing python3 or torch is a test failure, not a skip: a parity test that cannot
// run must not pass. (Set GRPO_ALLOW_NO_TORCH=1 to turn it into a skip on a machine without torch.)
#ifndef GRPO_TESTING_PYTHON_REFERENCE_H_
#define GRPO_TESTING_PYTHON_REFERENCE_H_

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "core/status.h"

namespace grpo::testing {

// The interpreter that has torch: /usr/bin/python3 (not the pyenv python3 first on PATH).
inline constexpr const char* kPythonWithTorch = "/usr/bin/python3";

// True when /usr/bin/python3 can import torch.
bool TorchAvailable();

// True when the environment allows skipping torch-based tests (GRPO_ALLOW_NO_TORCH=1).
bool AllowNoTorch();

// A fresh directory under $TEST_TMPDIR (or /tmp) for files exchanged with the reference.
std::string MakeTempDir(const std::string& prefix);

// Writes `script` to a file and runs it with /usr/bin/python3 and `args`; returns its stdout.
// Fails with the script's stderr when it exits non-zero.
absl::StatusOr<std::string> RunPythonScript(const std::string& script, const std::vector<std::string>& args);

// Runs the repository's Python script `path` (relative to the workspace root, e.g.
// "learner/testdata/optimizer_reference.py") as __main__ with `args` as its sys.argv[1:];
// returns its stdout, errors as RunPythonScript's.
absl::StatusOr<std::string> RunReferenceScript(const std::string& path, const std::vector<std::string>& args);

// For references that read one JSON file and write one: writes `input` to in.json in a fresh
// directory, runs `path` with the arguments in.json out.json, and returns out.json parsed.
absl::StatusOr<nlohmann::json> RunJsonReference(const std::string& path, const nlohmann::json& input);

// The tiny HF-layout models of model/testdata/make_tiny_models.py (one directory per family),
// written once per test binary on first use. The test needs the script in its data; a failure
// of the script is a test failure.
const std::string& TinyModelsDir();

// Raw binary files for exchanging arrays with the reference (core/file.h's ReadFile and
// WriteFileAtomic, taking a buffer).
absl::Status WriteBinaryFile(const std::string& path, const void* data, size_t bytes);
absl::StatusOr<std::string> ReadBinaryFile(const std::string& path);

}  // namespace grpo::testing

// Use at the top of a test that needs torch: fails (or skips, if allowed) when it is missing.
#define GRPO_REQUIRE_TORCH()                                                         \
  do {                                                                               \
    if (!::grpo::testing::TorchAvailable()) {                                        \
      if (::grpo::testing::AllowNoTorch()) GTEST_SKIP() << "torch not available";    \
      FAIL() << "/usr/bin/python3 cannot import torch; install python3-torch "       \
                "(tools/setup.sh) or set GRPO_ALLOW_NO_TORCH=1 to skip";             \
    }                                                                                \
  } while (0)

#endif  // GRPO_TESTING_PYTHON_REFERENCE_H_
