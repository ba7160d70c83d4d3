// Run metrics: one JSON object per step in <run_dir>/metrics.jsonl and the same scalars as a
// TensorBoard event file in <run_dir>/tb/.
//
// Contract:
//  * metrics.jsonl is opened in append mode (a resumed run continues the same file). Each Log()
//    appends exactly one line `{"step": N, "name": value, ...}` with the names in the order given
//    (a std::map gives them sorted) and flushes it, so a crash loses at most the line being
//    written. Doubles are written in the shortest form that reads back to the same double;
//    NaN and +-inf are written as null. If the existing file's last line lacks its newline (a
//    torn write), a newline is written first so the new row stays a line of its own.
//  * The event file is <run_dir>/tb/events.out.tfevents.<unix_time>.<hostname>; if that name is
//    taken (two writers in the same second), ".1", ".2", ... is appended. It is a sequence of
//    TFRecord records (below) holding serialized grpo.tb.Event messages (proto/tensorboard.proto,
//    wire-compatible with TensorFlow's event.proto): first {wall_time, file_version
//    "brain.Event:2"}, then one Event{wall_time, step, summary{value{tag, simple_value}}} per
//    finite value of each Log() call (non-finite values are skipped). Flushed per Log() call.
//  * With MetricsWriterOptions::resumed_from_step set, a SessionLog START event at that step is
//    written after the header: TensorBoard then drops the points with a larger step that an
//    earlier session wrote to older event files in tb/.
//  * A name must be non-empty, must not be "step", and must not repeat within one call.
//  * Not thread-safe: one thread logs (the trainer's step loop).
//
// TFRecord framing of one record holding `data`:
//   uint64 length (little-endian) | uint32 masked_crc32c(length's 8 bytes) | data |
//   uint32 masked_crc32c(data)
// where masked_crc(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and CRC32C is the Castagnoli CRC
// of core/crc32c.h (Crc32c("123456789") == 0xE3069283).
#ifndef GRPO_CORE_METRICS_H_
#define GRPO_CORE_METRICS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace grpo {

class JsonlAppender;

// TensorFlow's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32).
uint32_t MaskCrc32c(uint32_t crc);
// `data` framed as one TFRecord record (length, masked CRC of the length, data, masked CRC).
std::string TfRecord(std::string_view data);

// The JSON text of one metrics line, without the newline: {"step": N, "a": 1.5, "b": null}.
// Fails (InvalidArgument) on an empty name, the name "step", or a repeated name.
absl::StatusOr<std::string> MetricsJsonLine(int64_t step,
                                    const std::vector<std::pair<std::string, double>>& values);

struct MetricsWriterOptions {
  bool tensorboard = true;                   // false: metrics.jsonl only, no tb/ directory
  std::optional<int64_t> resumed_from_step;  // set on resume: TensorBoard SessionLog START here
};

class MetricsWriter {
 public:
  // Creates run_dir (and run_dir/tb) if missing and opens both files.
  static absl::StatusOr<std::unique_ptr<MetricsWriter>> Open(const std::string& run_dir,
                                                     const MetricsWriterOptions& options = {});
  ~MetricsWriter();  // closes the files (errors are lost; call Close() to see them)

  absl::Status Log(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  absl::Status Log(int64_t step, const std::map<std::string, double>& values);
  // Flushes and closes both files; later Log() calls fail.
  absl::Status Close();

  const std::string& jsonl_path() const { return jsonl_path_; }
  // Empty when options.tensorboard is false.
  const std::string& events_path() const { return events_path_; }

 private:
  MetricsWriter() = default;
  absl::Status WriteEvent(const std::string& serialized_event);

  std::string jsonl_path_, events_path_;
  std::unique_ptr<JsonlAppender> jsonl_;
  FILE* events_ = nullptr;
};

// Rewrites the metrics.jsonl at `path` without the rows whose "step" is greater than `step`
// (for a run resumed from the checkpoint of `step`). Lines that are not JSON objects with an
// numeric "step" are kept, except a torn last line (no trailing newline and not valid JSON),
// which is dropped. Atomic (core/file.h): the result is written to "<path>.tmp", fsynced, then
// renamed over `path`. A missing file is not an error (nothing to truncate). Returns the number of rows
// removed through `removed` when it is not null.
absl::Status TruncateAfterStep(const std::string& path, int64_t step, int64_t* removed = nullptr);

}  // namespace grpo

#endif  // GRPO_CORE_METRICS_H_
