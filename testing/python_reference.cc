#include "testing/python_reference.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include <gtest/gtest.h>

#include "core/file.h"

namespace grpo::testing {
namespace {

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

bool TorchAvailable() {
  static const bool available = [] {
    std::string cmd = std::string(kPythonWithTorch) + " -c 'import torch' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }();
  return available;
}

bool AllowNoTorch() {
  const char* v = std::getenv("GRPO_ALLOW_NO_TORCH");
  return v != nullptr && std::string(v) == "1";
}

std::string MakeTempDir(const std::string& prefix) {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(base ? base : "/tmp") + "/" + prefix + "_" +
                    std::to_string(getpid()) + "_" + std::to_string(counter++);
  mkdir(dir.c_str(), 0755);
  return dir;
}

const std::string& TinyModelsDir() {
  static const std::string dir = [] {
    const std::string d = MakeTempDir("tiny_models");
    auto r = RunReferenceScript("model/testdata/make_tiny_models.py", {d});
    if (!r.ok()) ADD_FAILURE() << r.status().ToString();
    return d;
  }();
  return dir;
}

absl::Status WriteBinaryFile(const std::string& path, const void* data, size_t bytes) {
  return WriteFileAtomic(path, std::string_view(static_cast<const char*>(data), bytes));
}

absl::StatusOr<std::string> ReadBinaryFile(const std::string& path) { return ReadFile(path); }

absl::StatusOr<std::string> RunPythonScript(const std::string& script,
                                    const std::vector<std::string>& args) {
  const std::string dir = MakeTempDir("pyref");
  const std::string script_path = dir + "/script.py";
  const std::string err_path = dir + "/stderr.txt";
  GRPO_RETURN_IF_ERROR(WriteBinaryFile(script_path, script.data(), script.size()));
  std::string cmd = std::string(kPythonWithTorch) + " " + ShellQuote(script_path);
  for (const std::string& a : args) cmd += " " + ShellQuote(a);
  cmd += " 2>" + ShellQuote(err_path);
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return grpo::ErrnoError("popen " + cmd, errno);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int rc = pclose(pipe);
  if (rc != 0) {
    auto err = ReadBinaryFile(err_path);
    return absl::InternalError("python reference failed (exit " + std::to_string(WEXITSTATUS(rc)) +
                            "): " + (err.ok() ? *err : std::string("<no stderr>")));
  }
  return out;
}

absl::StatusOr<std::string> RunReferenceScript(const std::string& path, const std::vector<std::string>& args) {
  return RunPythonScript("import runpy, sys\nsys.argv = [sys.argv[1]] + sys.argv[2:]\n"
                         "runpy.run_path(sys.argv[0], run_name='__main__')\n",
                         [&] {
                           std::vector<std::string> all{path};
                           all.insert(all.end(), args.begin(), args.end());
                           return all;
                         }());
}

absl::StatusOr<nlohmann::json> RunJsonReference(const std::string& path, const nlohmann::json& input) {
  const std::string dir = MakeTempDir("json_ref");
  const std::string text = input.dump();
  GRPO_RETURN_IF_ERROR(WriteBinaryFile(dir + "/in.json", text.data(), text.size()));
  GRPO_RETURN_IF_ERROR(RunReferenceScript(path, {dir + "/in.json", dir + "/out.json"}).status());
  GRPO_ASSIGN_OR_RETURN(std::string out, ReadBinaryFile(dir + "/out.json"));
  nlohmann::json parsed = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InternalError(path + " wrote out.json that is not JSON");
  return parsed;
}

}  // namespace grpo::testing
