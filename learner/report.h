// report.html: a single self-contained HTML page summarizing a run's metrics.jsonl.
//
// Contract:
//  * The page needs no network: inline CSS and inline SVG charts drawn here; no scripts, fonts
//    or images from anywhere (no "http" reference at all).
//  * It shows the run title, a summary table (rows and step range, final and best eval/accuracy,
//    final eval/format, last reward_mean, wall time) and one chart per group that has data, in
//    this order, each on one scale (a rate is never drawn on the axis of a token count):
//      eval        eval/accuracy, eval/format, then every other eval/* whose values all lie in
//                  [0, 1] (e.g. eval/accuracy_greedy); sparse: eval steps only
//      eval_response_len   every eval/response_len* (mean tokens)
//      reward      reward_mean and every reward/<rule>
//      response_len_mean, kl, entropy, clip_frac, grad_norm, lr   one chart each
//      time        stacked step-time breakdown of every time/* key except time/step
//      other-N     one chart per remaining numeric key (e.g. reward_std, an eval/* key with values
//                  outside [0, 1]), sorted by name
//    A chart whose series are all missing is left out. Each chart is a
//    <section class="chart" id="chart-NAME"> holding exactly one <svg>.
//  * Wall time is the sum of time/step over the rows when the trainer logs it, else the sum of
//    all time/* values.
//  * Robust input: a line that is not a JSON object, or has no integer "step", is skipped and
//    listed in a "skipped lines" note (the first 20, with line numbers); null values are gaps;
//    non-numeric values are ignored; a step logged twice keeps its last row. Every string taken
//    from the file (names, messages, title) is HTML-escaped.
//  * Long runs: a series with more than max_points points is drawn downsampled in buckets that
//    keep each bucket's minimum and maximum (spikes stay visible); the stacked time chart shows
//    bucket means. Points carry hover titles (<title>) with step and value.
//  * The page replaces `out_html` atomically (core/file.h: "<out_html>.tmp", fsync, rename).
#ifndef GRPO_LEARNER_REPORT_H_
#define GRPO_LEARNER_REPORT_H_

#include <cstddef>
#include <string>

#include "core/status.h"

namespace grpo {

struct ReportOptions {
  std::string title;        // empty: the name of the directory holding metrics.jsonl
  size_t max_points = 600;  // per series, for drawing (at least 4)
};

// Reads `metrics_jsonl` and returns the HTML text of the report.
absl::StatusOr<std::string> RenderReport(const std::string& metrics_jsonl, const ReportOptions& options);

// RenderReport, written to `out_html` atomically.
absl::Status WriteReport(const std::string& metrics_jsonl, const std::string& out_html,
                   const ReportOptions& options = {});

}  // namespace grpo

#endif  // GRPO_LEARNER_REPORT_H_
