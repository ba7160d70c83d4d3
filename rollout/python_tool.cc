#include "rollout/python_tool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sandbox/pool.h"

namespace grpo {
namespace {

// What the model sees of a finished run: stdout, and after a failure the tail of stderr (where
// a traceback ends with the error), within max_output_bytes.
std::string RunOutput(const sandbox::Result& r, const PythonToolOptions& o) {
  if (r.timed_out) return absl::StrCat("error: timed out after ", absl::FormatDuration(o.timeout));
  std::string err;
  if (!r.exited_ok()) {
    err = r.stderr_data;
    if (err.size() > o.max_output_bytes / 2) err = "..." + err.substr(err.size() - o.max_output_bytes / 2);
    if (r.signal != 0) err += absl::StrCat(err.empty() || err.back() == '\n' ? "" : "\n", "error: killed by signal ", r.signal);
  }
  std::string out = r.stdout_data;
  const size_t room = o.max_output_bytes > err.size() ? o.max_output_bytes - err.size() : 0;
  if (out.size() > room || r.stdout_truncated) {
    out.resize(std::min(out.size(), room));
    out += "...[output cut]\n";
  }
  out += err;
  while (!out.empty() && out.back() == '\n') out.pop_back();  // the result's end marker follows
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Environment>> MakePythonEnvironment(PythonToolOptions o) {
  if (o.timeout <= absl::ZeroDuration() || o.memory_mb < 16 || o.max_output_bytes == 0 || o.pool_size < 0) {
    return absl::InvalidArgumentError("python tool: timeout must be > 0, memory_mb >= 16, max_output_bytes > 0, "
                                      "pool_size >= 0");
  }
  sandbox::Config config;
  config.isolation = o.isolation;
  config.scratch_bytes = uint64_t{16} << 20;
  GRPO_RETURN_IF_ERROR(grpo::WithContext(sandbox::Sandbox::Create(config).status(), "python tool: "));
  auto pool = std::make_shared<sandbox::Pool>(config, o.pool_size);
  ToolTags tags = o.tags;
  ToolFunction run = [pool, o = std::move(o)](const std::string& body) -> std::string {
    sandbox::Job job;
    job.argv = {o.python, "-I", "-c", body};
    job.deadline = o.timeout;
    job.limits.cpu_seconds = static_cast<int>(absl::ToInt64Seconds(absl::Ceil(o.timeout, absl::Seconds(1))));
    job.limits.address_space_bytes = static_cast<uint64_t>(o.memory_mb) << 20;
    job.stdout_cap = o.max_output_bytes + 1;  // stderr: the default cap (its tail is kept)
    absl::StatusOr<sandbox::Result> r = pool->Run(job);
    if (!r.ok()) return "error: the sandbox failed: " + std::string(r.status().message());
    return RunOutput(*r, o);
  };
  return MakeTaggedTool("python", "code", std::move(tags), std::move(run));
}

}  // namespace grpo
