#include "learner/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "core/file.h"
#include "core/jsonl.h"

namespace grpo {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr size_t kMaxNotes = 20;
// Chart geometry (SVG user units): plot area inside the margins.
constexpr double kW = 760, kH = 240, kLeft = 64, kRight = 16, kTop = 12, kBottom = 34;
constexpr const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Point {
  int64_t step;
  double v;  // NaN: a gap (null in the file)
};

struct Metrics {
  std::map<std::string, std::vector<Point>> series;  // each sorted by step
  int64_t rows = 0, first_step = 0, last_step = 0, skipped = 0, duplicates = 0;
  std::vector<std::string> notes;
};

std::string Esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Fmt(double v, int digits = 4) {
  if (!std::isfinite(v)) return "n/a";
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
  return buf;
}

std::string Coord(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

std::string Duration(double seconds) {
  if (!(seconds >= 0)) return "n/a";
  if (seconds < 120) return Fmt(seconds, 3) + " s";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%lldh %02lldm %02llds", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

void Note(Metrics* m, std::string message) {
  ++m->skipped;
  if (m->notes.size() < kMaxNotes) m->notes.push_back(std::move(message));
}

absl::StatusOr<Metrics> Load(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> reader, JsonlReader::Open(path));
  Metrics m;
  std::map<int64_t, nlohmann::json> rows;  // by step; a repeated step keeps its last row
  JsonlRecord r;
  while (reader->Next(&r)) {
    if (!r.ok()) {
      Note(&m, std::string(r.status.message()));
      continue;
    }
    auto it = r.value.find("step");
    if (it == r.value.end() || !it->is_number_integer()) {
      Note(&m, path + ":" + std::to_string(r.line) + ": no integer \"step\"");
      continue;
    }
    const int64_t step = it->get<int64_t>();
    if (rows.count(step) != 0) ++m.duplicates;
    rows[step] = std::move(r.value);
  }
  GRPO_RETURN_IF_ERROR(reader->status());
  m.rows = static_cast<int64_t>(rows.size());
  if (!rows.empty()) {
    m.first_step = rows.begin()->first;
    m.last_step = rows.rbegin()->first;
  }
  for (const auto& [step, obj] : rows) {
    for (const auto& [key, value] : obj.items()) {
      if (key == "step" || key.empty()) continue;
      if (value.is_number()) {
        m.series[key].push_back({step, value.get<double>()});
      } else if (value.is_null()) {
        m.series[key].push_back({step, kNaN});
      }
    }
  }
  return m;
}

// At most max_points points: equal-count buckets, each keeping its minimum and maximum.
std::vector<Point> Downsample(const std::vector<Point>& p, size_t max_points) {
  if (p.size() <= max_points) return p;
  const size_t buckets = std::max<size_t>(1, max_points / 2), n = p.size();
  std::vector<Point> out;
  for (size_t b = 0; b < buckets; ++b) {
    const size_t lo = b * n / buckets, hi = (b + 1) * n / buckets;
    size_t imin = hi, imax = hi;
    for (size_t i = lo; i < hi; ++i) {
      if (!std::isfinite(p[i].v)) continue;
      if (imin == hi || p[i].v < p[imin].v) imin = i;
      if (imax == hi || p[i].v > p[imax].v) imax = i;
    }
    if (imin == hi) continue;
    out.push_back(p[std::min(imin, imax)]);
    if (imin != imax) out.push_back(p[std::max(imin, imax)]);
  }
  return out;
}

// Tick values spanning [lo, hi] at a 1/2/5 x 10^k spacing.
std::vector<double> Ticks(double lo, double hi, bool integer) {
  const double rough = (hi - lo) / 5;
  double step = std::pow(10.0, std::floor(std::log10(rough)));
  const double norm = rough / step;
  step *= norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  if (integer) step = std::max(1.0, std::round(step));
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9 && t.size() < 20; v += step) {
    t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return t;
}

struct Frame {
  double x0, x1, y0, y1;
  double X(double step) const { return kLeft + (step - x0) / (x1 - x0) * (kW - kLeft - kRight); }
  double Y(double v) const { return kH - kBottom - (v - y0) / (y1 - y0) * (kH - kTop - kBottom); }
};

Frame MakeFrame(const Metrics& m, double ymin, double ymax, bool pad) {
  Frame f{static_cast<double>(m.first_step), static_cast<double>(m.last_step), ymin, ymax};
  if (f.x1 <= f.x0) f.x1 = f.x0 + 1;
  if (!(f.y1 > f.y0)) {
    const double d = std::abs(f.y0) > 0 ? std::abs(f.y0) * 0.1 : 1.0;
    f.y0 -= d;
    f.y1 += d;
  } else if (pad) {
    const double d = (f.y1 - f.y0) * 0.05;
    f.y0 -= d;
    f.y1 += d;
  }
  return f;
}

std::string Axes(const Frame& f) {
  std::string s;
  const double px0 = kLeft, px1 = kW - kRight, py0 = kTop, py1 = kH - kBottom;
  for (double t : Ticks(f.y0, f.y1, false)) {
    const std::string y = Coord(f.Y(t));
    s += "<line class=\"grid\" x1=\"" + Coord(px0) + "\" x2=\"" + Coord(px1) + "\" y1=\"" + y +
         "\" y2=\"" + y + "\"/><text class=\"tick\" x=\"" + Coord(px0 - 6) + "\" y=\"" + y +
         "\" text-anchor=\"end\" dominant-baseline=\"middle\">" + Esc(Fmt(t, 3)) + "</text>";
  }
  for (double t : Ticks(f.x0, f.x1, true)) {
    const std::string x = Coord(f.X(t));
    s += "<line class=\"grid\" x1=\"" + x + "\" x2=\"" + x + "\" y1=\"" + Coord(py0) + "\" y2=\"" +
         Coord(py1) + "\"/><text class=\"tick\" x=\"" + x + "\" y=\"" + Coord(py1 + 14) +
         "\" text-anchor=\"middle\">" + Fmt(t, 12) + "</text>";
  }
  s += "<rect class=\"frame\" x=\"" + Coord(px0) + "\" y=\"" + Coord(py0) + "\" width=\"" +
       Coord(px1 - px0) + "\" height=\"" + Coord(py1 - py0) + "\"/>";
  s += "<text class=\"label\" x=\"" + Coord((px0 + px1) / 2) + "\" y=\"" + Coord(kH - 4) +
       "\" text-anchor=\"middle\">step</text>";
  return s;
}

std::string Legend(const std::vector<std::string>& names) {
  std::string s = "<div class=\"legend\">";
  for (size_t i = 0; i < names.size(); ++i) {
    s += "<span><i style=\"background:" + std::string(kColors[i % 10]) + "\"></i>" + Esc(names[i]) +
         "</span>";
  }
  return s + "</div>";
}

std::string Section(const std::string& id, const std::string& title, const std::string& caption,
                    const std::vector<std::string>& names, const std::string& svg_body) {
  return "<section class=\"chart\" id=\"chart-" + Esc(id) + "\"><h3>" + Esc(title) + "</h3>" +
         Legend(names) + "<svg viewBox=\"0 0 " + Fmt(kW) + " " + Fmt(kH) +
         "\" role=\"img\" aria-label=\"" + Esc(title) + "\">" + svg_body + "</svg>" +
         (caption.empty() ? "" : "<p class=\"caption\">" + Esc(caption) + "</p>") + "</section>\n";
}

// A line chart of the named series that exist; empty when none does.
std::string LineChart(const Metrics& m, const std::string& id, const std::string& title,
                      const std::vector<std::string>& keys, size_t max_points) {
  std::vector<std::string> names;
  std::vector<std::vector<Point>> drawn;
  std::vector<bool> sparse;  // few points (eval steps): visible markers
  double lo = INFINITY, hi = -INFINITY;
  bool downsampled = false;
  for (const std::string& k : keys) {
    auto it = m.series.find(k);
    if (it == m.series.end()) continue;
    std::vector<Point> d = Downsample(it->second, max_points);
    downsampled |= d.size() < it->second.size();
    bool any = false;
    for (const Point& p : d) {
      if (!std::isfinite(p.v)) continue;
      lo = std::min(lo, p.v);
      hi = std::max(hi, p.v);
      any = true;
    }
    if (!any) continue;
    size_t finite = 0;
    for (const Point& p : it->second) finite += std::isfinite(p.v) ? 1 : 0;
    sparse.push_back(finite < 40 || finite * 4 < static_cast<size_t>(m.rows));
    names.push_back(k);
    drawn.push_back(std::move(d));
  }
  if (names.empty()) return "";
  const Frame f = MakeFrame(m, lo, hi, true);
  std::string body = Axes(f);
  for (size_t s = 0; s < drawn.size(); ++s) {
    const std::string color = kColors[s % 10];
    const std::vector<Point>& d = drawn[s];
    // Polylines between gaps.
    std::string pts;
    size_t in_seg = 0;
    auto flush = [&] {
      if (in_seg >= 2) {
        body += "<polyline class=\"series\" stroke=\"" + color + "\" points=\"" + pts + "\"/>";
      }
      pts.clear();
      in_seg = 0;
    };
    for (const Point& p : d) {
      if (!std::isfinite(p.v)) {
        flush();
        continue;
      }
      pts += (in_seg ? " " : "") + Coord(f.X(p.step)) + "," + Coord(f.Y(p.v));
      ++in_seg;
    }
    flush();
    // Hover points (visible markers for sparse series such as eval/*).
    for (const Point& p : d) {
      if (!std::isfinite(p.v)) continue;
      body += "<circle class=\"" + std::string(sparse[s] ? "mark" : "hover") + "\" cx=\"" +
              Coord(f.X(p.step)) + "\" cy=\"" + Coord(f.Y(p.v)) + "\" r=\"" +
              (sparse[s] ? "3.5" : "2.5") + "\" fill=\"" + color + "\"><title>" + Esc(names[s]) +
              " step " + std::to_string(p.step) + ": " + Esc(Fmt(p.v, 6)) + "</title></circle>";
    }
  }
  return Section(id, title,
                 downsampled
                     ? "Long series drawn downsampled to at most " + std::to_string(max_points) +
                           " points each (every bucket keeps its min and max)."
                     : "",
                 names, body);
}

// Stacked areas of the time/* components per step (bucket means when there are many steps).
std::string TimeChart(const Metrics& m, size_t max_points) {
  std::vector<std::string> names;
  for (const char* k : {"time/rollout", "time/reward", "time/learn", "time/sync"}) {
    if (m.series.count(k)) names.push_back(k);
  }
  for (const auto& [k, v] : m.series) {
    if (k.rfind("time/", 0) == 0 && k != "time/step" &&
        std::find(names.begin(), names.end(), k) == names.end()) {
      names.push_back(k);
    }
  }
  if (names.empty()) return "";
  std::map<int64_t, std::vector<double>> by_step;
  for (size_t c = 0; c < names.size(); ++c) {
    for (const Point& p : m.series.at(names[c])) {
      auto& row = by_step.try_emplace(p.step, names.size(), 0.0).first->second;
      if (std::isfinite(p.v)) row[c] = p.v;
    }
  }
  std::vector<int64_t> steps;
  std::vector<std::vector<double>> vals;
  for (auto& [s, row] : by_step) {
    steps.push_back(s);
    vals.push_back(row);
  }
  const size_t n = steps.size();
  const size_t buckets = std::min(n, std::max<size_t>(2, max_points));
  std::vector<int64_t> xs;
  std::vector<std::vector<double>> cum;  // cum[i][c]: top of component c at point i
  double top = 0;
  for (size_t b = 0; b < buckets; ++b) {
    const size_t lo = b * n / buckets, hi = (b + 1) * n / buckets;
    std::vector<double> mean(names.size(), 0.0);
    for (size_t i = lo; i < hi; ++i) {
      for (size_t c = 0; c < names.size(); ++c) mean[c] += vals[i][c] / (hi - lo);
    }
    for (size_t c = 1; c < names.size(); ++c) mean[c] += mean[c - 1];
    xs.push_back(steps[lo + (hi - lo) / 2]);
    top = std::max(top, mean.back());
    cum.push_back(std::move(mean));
  }
  const Frame f = MakeFrame(m, 0.0, top > 0 ? top * 1.05 : 1.0, false);
  std::string body = Axes(f);
  for (size_t c = 0; c < names.size(); ++c) {
    std::string pts;
    for (size_t i = 0; i < xs.size(); ++i) {
      pts += Coord(f.X(xs[i])) + "," + Coord(f.Y(cum[i][c])) + " ";
    }
    for (size_t i = xs.size(); i-- > 0;) {
      pts += Coord(f.X(xs[i])) + "," + Coord(f.Y(c ? cum[i][c - 1] : 0.0)) + (i ? " " : "");
    }
    body += "<polygon class=\"area\" fill=\"" + std::string(kColors[c % 10]) + "\" points=\"" +
            pts + "\"/>";
  }
  // One invisible hover band per point listing every component.
  const double band = (kW - kLeft - kRight) / static_cast<double>(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    std::string title = (buckets < n ? "around step " : "step ") + std::to_string(xs[i]) + ":";
    for (size_t c = 0; c < names.size(); ++c) {
      title += " " + Esc(names[c]) + " " + Esc(Fmt(cum[i][c] - (c ? cum[i][c - 1] : 0.0))) + " s;";
    }
    title += " total " + Esc(Fmt(cum[i].back())) + " s";
    body += "<rect class=\"band\" x=\"" + Coord(f.X(xs[i]) - band / 2) + "\" y=\"" + Coord(kTop) +
            "\" width=\"" + Coord(band) + "\" height=\"" + Coord(kH - kTop - kBottom) +
            "\"><title>" + title + "</title></rect>";
  }
  return Section(
      "time", "Step time breakdown (seconds, stacked)",
      buckets < n ? "Means over buckets of about " + std::to_string(n / buckets) + " steps." : "",
      names, body);
}

// True when every finite value of the series lies in [0, 1] (a rate such as eval/accuracy).
bool IsRate(const std::vector<Point>& points) {
  for (const Point& p : points) {
    if (std::isfinite(p.v) && (p.v < 0 || p.v > 1)) return false;
  }
  return true;
}

// Last finite value and the maximum (with their steps) of a series.
struct Stat {
  bool any = false;
  Point last{0, kNaN}, best{0, kNaN};
};
Stat Stats(const Metrics& m, const std::string& key) {
  Stat s;
  auto it = m.series.find(key);
  if (it == m.series.end()) return s;
  for (const Point& p : it->second) {
    if (!std::isfinite(p.v)) continue;
    s.last = p;
    if (!s.any || p.v > s.best.v) s.best = p;
    s.any = true;
  }
  return s;
}

std::string StatCell(const Stat& s, bool best) {
  if (!s.any) return "n/a";
  const Point& p = best ? s.best : s.last;
  return Esc(Fmt(p.v)) + " <span class=\"at\">at step " + std::to_string(p.step) + "</span>";
}

constexpr const char* kStyle = R"CSS(
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 820px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
h3 { font-size: 15px; margin: 18px 0 2px; }
.sub, .caption, .at { color: #666; font-size: 12px; }
table.summary { border-collapse: collapse; }
table.summary th, table.summary td {
  text-align: left; padding: 3px 14px 3px 0; border-bottom: 1px solid #eee; }
.note { background: #fff6e0; border: 1px solid #f0d090; padding: 6px 12px; margin-top: 16px; }
.legend span { margin-right: 14px; font-size: 12px; white-space: nowrap; }
.legend i {
  display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
svg { width: 100%; height: auto; display: block; }
.grid { stroke: #eee; } .frame { fill: none; stroke: #bbb; }
.tick, .label { font-size: 11px; fill: #555; }
.series { fill: none; stroke-width: 1.5; }
.hover { fill-opacity: 0; } .hover:hover { fill-opacity: 1; }
.mark { stroke: #fff; stroke-width: 1; }
.area { fill-opacity: 0.75; stroke: none; }
.band { fill: #000; fill-opacity: 0; } .band:hover { fill-opacity: 0.06; }
)CSS";

}  // namespace

absl::StatusOr<std::string> RenderReport(const std::string& metrics_jsonl, const ReportOptions& options) {
  GRPO_ASSIGN_OR_RETURN(Metrics m, Load(metrics_jsonl));
  const size_t max_points = std::max<size_t>(4, options.max_points);
  std::string title = options.title;
  if (title.empty()) {
    title = std::filesystem::path(metrics_jsonl).parent_path().filename().string();
    if (title.empty()) title = "run";
  }

  double wall = 0;
  bool have_wall = false;
  for (const auto& [k, pts] : m.series) {
    const bool use = m.series.count("time/step") ? k == "time/step" : k.rfind("time/", 0) == 0;
    if (!use) continue;
    for (const Point& p : pts) {
      if (std::isfinite(p.v)) wall += p.v;
      have_wall = true;
    }
  }

  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
      "<title>" +
      Esc(title) + " - GRPO run report</title><style>" + kStyle + "</style></head><body>\n<h1>" +
      Esc(title) + "</h1><p class=\"sub\">From " + Esc(metrics_jsonl) +
      "</p>\n<table class=\"summary\">";
  auto row = [&](const std::string& k, const std::string& v) {
    h += "<tr><th>" + k + "</th><td>" + v + "</td></tr>";
  };
  row("Steps", m.rows == 0
                   ? "no rows"
                   : std::to_string(m.rows) + " rows, steps " + std::to_string(m.first_step) +
                         " to " + std::to_string(m.last_step));
  const Stat acc = Stats(m, "eval/accuracy");
  row("Final eval accuracy", StatCell(acc, false));
  row("Best eval accuracy", StatCell(acc, true));
  row("Final eval format rate", StatCell(Stats(m, "eval/format"), false));
  row("Final reward mean", StatCell(Stats(m, "reward_mean"), false));
  row("Wall time", have_wall
                       ? Esc(Duration(wall)) + (m.series.count("time/step") ? " (sum of time/step)"
                                                                            : " (sum of time/*)")
                       : "n/a");
  h += "</table>\n";
  if (m.skipped > 0 || m.duplicates > 0) {
    h += "<div class=\"note\">";
    if (m.skipped > 0) {
      h += "<p>" + std::to_string(m.skipped) + " skipped lines" +
           (m.skipped > static_cast<int64_t>(kMaxNotes)
                ? " (first " + std::to_string(kMaxNotes) + " listed)"
                : std::string()) +
           ":</p><ul>";
      for (const std::string& n : m.notes) h += "<li>" + Esc(n) + "</li>";
      h += "</ul>";
    }
    if (m.duplicates > 0) {
      h += "<p>" + std::to_string(m.duplicates) +
           " rows repeated an earlier step; the last row of each step is shown.</p>";
    }
    h += "</div>\n";
  }

  std::set<std::string> shown;
  std::string charts;
  auto add = [&](const std::string& id, const std::string& t,
                 const std::vector<std::string>& keys) {
    charts += LineChart(m, id, t, keys, max_points);
    shown.insert(keys.begin(), keys.end());
  };
  // Evaluation is split by scale, so accuracy is never drawn flat under a length of ~100 tokens:
  // rates (eval/accuracy, eval/format, then every other eval/* within [0, 1]) come first, lengths
  // (eval/response_len*) next; any other eval/* key gets its own chart under "Other metrics".
  std::vector<std::string> reward = {"reward_mean"}, eval = {"eval/accuracy", "eval/format"},
                           eval_len;
  for (const auto& [k, v] : m.series) {
    if (k.rfind("reward/", 0) == 0) reward.push_back(k);
    if (k.rfind("eval/response_len", 0) == 0) {
      eval_len.push_back(k);
    } else if (k.rfind("eval/", 0) == 0 && k != "eval/accuracy" && k != "eval/format" &&
               IsRate(v)) {
      eval.push_back(k);
    }
  }
  add("eval", "Evaluation: accuracy and format (rate, 0 to 1)", eval);
  add("eval_response_len", "Evaluation: response length (mean tokens)", eval_len);
  add("reward", "Reward (mean and per rule)", reward);
  add("response_len_mean", "Response length (mean tokens)", {"response_len_mean"});
  add("kl", "KL to the reference policy", {"kl"});
  add("entropy", "Entropy", {"entropy"});
  add("clip_frac", "Clipped fraction", {"clip_frac"});
  add("grad_norm", "Gradient norm", {"grad_norm"});
  add("lr", "Learning rate", {"lr"});
  charts += TimeChart(m, max_points);
  h += "<h2>Training</h2>\n" + (charts.empty() ? "<p>No metrics to chart.</p>\n" : charts);

  std::string other;
  int index = 0;
  for (const auto& [k, v] : m.series) {
    if (shown.count(k) || (k.rfind("time/", 0) == 0 && k != "time/step")) continue;
    other += LineChart(m, "other-" + std::to_string(index++), k, {k}, max_points);
  }
  if (!other.empty()) h += "<h2>Other metrics</h2>\n" + other;
  h += "</body></html>\n";
  return h;
}

absl::Status WriteReport(const std::string& metrics_jsonl, const std::string& out_html,
                   const ReportOptions& options) {
  GRPO_ASSIGN_OR_RETURN(std::string html, RenderReport(metrics_jsonl, options));
  return WriteFileAtomic(out_html, html);
}

}  // namespace grpo
