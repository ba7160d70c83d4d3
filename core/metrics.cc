#include "core/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/crc32c.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "proto/tensorboard.pb.h"

namespace grpo {
namespace {

void PutFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void PutFixed32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// The shortest decimal that reads back to exactly `v` ("0.1", "3", "1e-06").
std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

std::string JsonString(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string HostName() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  std::string h(host);
  for (char& c : h) {
    if (c == '/') c = '_';
  }
  return h;
}

absl::Status CreateDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnknownError("cannot create directory " + dir + ": " + ec.message());
  return absl::OkStatus();
}

}  // namespace

uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string TfRecord(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  PutFixed64(&out, data.size());
  PutFixed32(&out, MaskCrc32c(Crc32c(std::string_view(out.data(), 8))));
  out.append(data);
  PutFixed32(&out, MaskCrc32c(Crc32c(data)));
  return out;
}

absl::StatusOr<std::string> MetricsJsonLine(int64_t step,
                                    const std::vector<std::pair<std::string, double>>& values) {
  std::set<std::string> seen;
  std::string line = "{\"step\": " + std::to_string(step);
  for (const auto& [name, value] : values) {
    if (name.empty())
      return absl::InvalidArgumentError("metrics: empty metric name at step " + std::to_string(step));
    if (name == "step")
      return absl::InvalidArgumentError("metrics: \"step\" is reserved, not a metric name");
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError("metrics: metric '" + name + "' given twice at step " +
                                     std::to_string(step));
    }
    line += ", " + JsonString(name) + ": " + (std::isfinite(value) ? FormatDouble(value) : "null");
  }
  line += "}";
  return line;
}

absl::StatusOr<std::unique_ptr<MetricsWriter>> MetricsWriter::Open(const std::string& run_dir,
                                                           const MetricsWriterOptions& options) {
  GRPO_RETURN_IF_ERROR(CreateDirs(run_dir));
  std::unique_ptr<MetricsWriter> w(new MetricsWriter());
  w->jsonl_path_ = run_dir + "/metrics.jsonl";
  GRPO_ASSIGN_OR_RETURN(w->jsonl_, JsonlAppender::Open(w->jsonl_path_));
  if (!options.tensorboard) return w;

  const std::string tb_dir = run_dir + "/tb";
  GRPO_RETURN_IF_ERROR(CreateDirs(tb_dir));
  const std::string base = tb_dir + "/events.out.tfevents." +
                           std::to_string(static_cast<int64_t>(std::time(nullptr))) + "." +
                           HostName();
  for (int attempt = 0; w->events_ == nullptr; ++attempt) {
    const std::string path = attempt == 0 ? base : base + "." + std::to_string(attempt);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST && attempt < 1000) continue;
      return grpo::ErrnoError("cannot create " + path, errno);
    }
    w->events_ = ::fdopen(fd, "wb");
    if (w->events_ == nullptr) {
      const int e = errno;
      ::close(fd);
      return grpo::ErrnoError("cannot open " + path, e);
    }
    w->events_path_ = path;
  }

  tb::Event header;
  header.set_wall_time(NowSeconds());
  header.set_file_version("brain.Event:2");
  GRPO_RETURN_IF_ERROR(w->WriteEvent(header.SerializeAsString()));
  if (options.resumed_from_step.has_value()) {
    tb::Event start;
    start.set_wall_time(NowSeconds());
    start.set_step(*options.resumed_from_step);
    start.mutable_session_log()->set_status(tb::SessionLog::START);
    GRPO_RETURN_IF_ERROR(w->WriteEvent(start.SerializeAsString()));
  }
  if (std::fflush(w->events_) != 0)
    return grpo::ErrnoError("cannot write " + w->events_path_, errno);
  return w;
}

MetricsWriter::~MetricsWriter() { (void)Close(); }

absl::Status MetricsWriter::WriteEvent(const std::string& serialized_event) {
  const std::string record = TfRecord(serialized_event);
  if (std::fwrite(record.data(), 1, record.size(), events_) != record.size()) {
    return grpo::ErrnoError("cannot write " + events_path_, errno);
  }
  return absl::OkStatus();
}

absl::Status MetricsWriter::Log(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  if (jsonl_ == nullptr) return absl::FailedPreconditionError("metrics: Log after Close");
  GRPO_ASSIGN_OR_RETURN(std::string line, MetricsJsonLine(step, values));
  GRPO_RETURN_IF_ERROR(jsonl_->AppendText(line));
  if (events_ == nullptr) return absl::OkStatus();
  const double now = NowSeconds();
  for (const auto& [name, value] : values) {
    if (!std::isfinite(value)) continue;
    tb::Event event;
    event.set_wall_time(now);
    event.set_step(step);
    tb::Summary::Value* v = event.mutable_summary()->add_value();
    v->set_tag(name);
    v->set_simple_value(static_cast<float>(value));
    GRPO_RETURN_IF_ERROR(WriteEvent(event.SerializeAsString()));
  }
  if (std::fflush(events_) != 0) return grpo::ErrnoError("cannot write " + events_path_, errno);
  return absl::OkStatus();
}

absl::Status MetricsWriter::Log(int64_t step, const std::map<std::string, double>& values) {
  return Log(step, std::vector<std::pair<std::string, double>>(values.begin(), values.end()));
}

absl::Status MetricsWriter::Close() {
  absl::Status status;
  if (jsonl_ != nullptr) {
    status = jsonl_->Close();
    jsonl_.reset();
  }
  if (events_ != nullptr) {
    if (std::fclose(events_) != 0 && status.ok()) {
      status = grpo::ErrnoError("cannot close " + events_path_, errno);
    }
    events_ = nullptr;
  }
  return status;
}

absl::Status TruncateAfterStep(const std::string& path, int64_t step, int64_t* removed) {
  if (removed != nullptr) *removed = 0;
  absl::StatusOr<std::string> read = ReadFile(path);
  if (read.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();  // nothing to truncate
  GRPO_RETURN_IF_ERROR(read.status());
  const std::string& text = *read;

  std::string kept;
  int64_t dropped = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    const bool has_newline = nl != std::string::npos;
    if (!has_newline) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() && !has_newline) {
      if (line.find_first_not_of(" \t\r") != std::string::npos) ++dropped;  // torn last line
      continue;
    }
    if (j.is_object() && j.contains("step") && j["step"].is_number() &&
        j["step"].get<double>() > static_cast<double>(step)) {
      ++dropped;
      continue;
    }
    kept += line;
    kept += '\n';
  }

  GRPO_RETURN_IF_ERROR(WriteFileAtomic(path, kept));
  if (removed != nullptr) *removed = dropped;
  return absl::OkStatus();
}

}  // namespace grpo
