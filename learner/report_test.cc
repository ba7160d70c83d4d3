// Tests of learner/report: the page is well-formed (parsed by Python's XML parser, which rejects
// any unbalanced tag or unescaped '<'/'&'), has one <svg> per chart with data and none for a
// missing series, draws evaluation rates and lengths on separate scales (accuracy first), escapes
// strings from the file, references nothing external, keeps extremes when downsampling, and
// reports bad lines.
#include "learner/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/file.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

// Parses the page as XML and describes its structure as JSON.
constexpr const char* kPythonPageReader = R"PY(
import json, sys
import xml.etree.ElementTree as ET

root = ET.fromstring(open(sys.argv[1], encoding="utf-8").read())
def text(e):
    return "".join(e.itertext())
out = {"sections": [], "table": {}, "notes": [], "bad": []}
out["h1"] = text(root.find("./body/h1"))
out["title"] = text(root.find("./head/title"))
for e in root.iter():
    if e.tag in ("script", "link", "img", "iframe", "object", "embed"):
        out["bad"].append(e.tag)
    for k, v in e.attrib.items():
        if "http" in v or "url(" in v:
            out["bad"].append(k + "=" + v)
for tr in root.iter("tr"):
    out["table"][text(tr.find("th"))] = text(tr.find("td"))
for div in root.iter("div"):
    if div.get("class") == "note":
        out["notes"] = [text(li) for li in div.iter("li")]
        out["note_text"] = text(div)
for sec in root.iter("section"):
    svgs = list(sec.iter("svg"))
    s = {"id": sec.get("id"), "h3": text(sec.find("h3")), "svgs": len(svgs),
         "legend": [text(x) for x in sec.find("div").findall("span")],
         "polylines": [len(p.get("points").split()) for p in sec.iter("polyline")],
         "polygons": len(list(sec.iter("polygon"))),
         "marks": sum(1 for c in sec.iter("circle") if c.get("class") == "mark"),
         "hovers": sum(1 for c in sec.iter("circle") if c.get("class") == "hover"),
         "titles": [text(t) for t in sec.iter("title")],
         "bands": sum(1 for r in sec.iter("rect") if r.get("class") == "band"),
         "yticks": [float(text(t)) for t in sec.iter("text")
                    if t.get("class") == "tick" and t.get("text-anchor") == "end"],
         "caption": "".join(text(p) for p in sec.findall("p"))}
    out["sections"].append(s)
out["svg_total"] = len(list(root.iter("svg")))
print(json.dumps(out))
)PY";

std::string WriteMetrics(const std::string& dir_name, const std::vector<std::string>& lines) {
  const std::string dir = testing::MakeTempDir("report") + "/" + dir_name;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir + "/metrics.jsonl");
  for (const std::string& l : lines) out << l << "\n";
  return dir + "/metrics.jsonl";
}

std::string ReadAll(const std::string& path) { return ReadFile(path).value_or(""); }

// Writes the report next to `metrics` and returns {html text, parsed structure}.
std::pair<std::string, nlohmann::json> Render(const std::string& metrics, ReportOptions opt = {}) {
  const std::string out = std::filesystem::path(metrics).parent_path().string() + "/report.html";
  absl::Status st = WriteReport(metrics, out, opt);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  const std::string html = ReadAll(out);
  auto parsed = testing::RunPythonScript(kPythonPageReader, {out});
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return {html, parsed.ok() ? nlohmann::json::parse(*parsed) : nlohmann::json::object()};
}

std::vector<std::string> Ids(const nlohmann::json& page) {
  std::vector<std::string> ids;
  for (const auto& s : page["sections"]) ids.push_back(s["id"]);
  return ids;
}

const nlohmann::json& SectionById(const nlohmann::json& page, const std::string& id) {
  for (const auto& s : page["sections"]) {
    if (s["id"] == id) return s;
  }
  static const nlohmann::json empty = nlohmann::json::object();
  ADD_FAILURE() << "no section " << id;
  return empty;
}

bool AnyTitleContains(const nlohmann::json& section, const std::string& needle) {
  for (const auto& t : section["titles"]) {
    if (t.get<std::string>().find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(Report, FullRunHasEveryChartSummaryAndEscapes) {
  std::vector<std::string> lines;
  for (int s = 0; s < 60; ++s) {
    nlohmann::json j = {{"step", s},
                        {"reward_mean", 0.01 * s},
                        {"reward_std", 0.5},
                        {"reward/accuracy", 0.008 * s},
                        {"reward/<b>&\"x'", 0.1},
                        {"response_len_mean", 100 + s},
                        {"kl", 0.001 * s},
                        {"entropy", 1.0 - 0.01 * s},
                        {"clip_frac", 0.05},
                        {"grad_norm", 2.0 + (s % 3)},
                        {"lr", 1e-6},
                        {"time/rollout", 2.0},
                        {"time/reward", 0.5},
                        {"time/learn", 1.0},
                        {"time/sync", 0.25}};
    if (s % 10 == 0) {
      j["eval/accuracy"] = s == 30 ? 0.9 : 0.1 + 0.01 * s;  // best at 30, final 0.6 at 50
      j["eval/format"] = 0.5 + 0.01 * s;
    }
    lines.push_back(j.dump());
    if (s == 7) lines.push_back("not json <i>");
    if (s == 8) lines.push_back("{\"no_step\": 1}");
  }
  ReportOptions opt;
  opt.title = "<run & 'x'>";
  auto [html, page] = Render(WriteMetrics("full", lines), opt);

  EXPECT_EQ(Ids(page), (std::vector<std::string>{
                           "chart-eval", "chart-reward", "chart-response_len_mean", "chart-kl",
                           "chart-entropy", "chart-clip_frac", "chart-grad_norm", "chart-lr",
                           "chart-time", "chart-other-0"}));
  EXPECT_EQ(page["svg_total"], 10);
  for (const auto& s : page["sections"]) EXPECT_EQ(s["svgs"], 1) << s["id"];
  EXPECT_TRUE(page["bad"].empty()) << page["bad"];
  EXPECT_EQ(html.find("http"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);

  // Strings from the file and the title are escaped (and read back intact by the XML parser).
  EXPECT_EQ(page["h1"], "<run & 'x'>");
  EXPECT_NE(html.find("&lt;run &amp; &#39;x&#39;&gt;"), std::string::npos);
  EXPECT_NE(html.find("reward/&lt;b&gt;&amp;&quot;x&#39;"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);
  EXPECT_EQ(html.find("<i>"), std::string::npos);

  const nlohmann::json& reward = SectionById(page, "chart-reward");
  EXPECT_EQ(reward["legend"],
            (nlohmann::json{"reward_mean", "reward/<b>&\"x'", "reward/accuracy"}));
  const nlohmann::json& eval = SectionById(page, "chart-eval");
  EXPECT_EQ(eval["marks"], 12);  // 6 eval steps x 2 series, drawn as visible markers
  EXPECT_TRUE(AnyTitleContains(eval, "eval/accuracy step 30: 0.9"));
  const nlohmann::json& time = SectionById(page, "chart-time");
  EXPECT_EQ(time["legend"],
            (nlohmann::json{"time/rollout", "time/reward", "time/learn", "time/sync"}));
  EXPECT_EQ(time["polygons"], 4);
  EXPECT_EQ(time["bands"], 60);
  EXPECT_TRUE(AnyTitleContains(time,
                               "step 12: time/rollout 2 s; time/reward 0.5 s; time/learn 1 s; "
                               "time/sync 0.25 s; total 3.75 s"));
  EXPECT_EQ(SectionById(page, "chart-other-0")["h3"], "reward_std");
  EXPECT_TRUE(AnyTitleContains(SectionById(page, "chart-lr"), "lr step 59: 1e-06"));

  const nlohmann::json& t = page["table"];
  EXPECT_EQ(t["Steps"], "60 rows, steps 0 to 59");
  EXPECT_EQ(t["Final eval accuracy"], "0.6 at step 50");
  EXPECT_EQ(t["Best eval accuracy"], "0.9 at step 30");
  EXPECT_EQ(t["Final eval format rate"], "1 at step 50");
  EXPECT_EQ(t["Final reward mean"], "0.59 at step 59");
  EXPECT_EQ(t["Wall time"], "0h 03m 45s (sum of time/*)");  // 60 x 3.75 s

  ASSERT_EQ(page["notes"].size(), 2u);
  EXPECT_NE(page["notes"][0].get<std::string>().find(":9: not valid JSON"), std::string::npos)
      << page["notes"][0];
  EXPECT_NE(page["notes"][1].get<std::string>().find(":11: no integer \"step\""), std::string::npos)
      << page["notes"][1];
  EXPECT_NE(page["note_text"].get<std::string>().find("2 skipped lines"), std::string::npos);
}

// The trainer's evaluation keys: rates (0 to 1) and a length in tokens (~100 here). Accuracy gets a
// chart on its own scale, first on the page; lengths get theirs; no chart mixes the two.
TEST(Report, EvalRatesAndLengthsAreChartedOnTheirOwnScales) {
  std::vector<std::string> lines;
  for (int s = 0; s <= 40; ++s) {
    nlohmann::json j = {{"step", s}, {"reward_mean", 0.02 * s}, {"response_len_mean", 150 - s}};
    if (s % 10 == 0) {
      j["eval/accuracy"] = 0.2 + 0.01 * s;
      j["eval/format"] = 0.5;
      j["eval/response_len"] = 120.0 - s;
      j["eval/accuracy_greedy"] = 0.25 + 0.01 * s;
      j["eval/format_greedy"] = 0.6;
      j["eval/response_len_greedy"] = 110.0 - s;
      j["eval/pass_at_k_tokens"] = 5000.0;  // neither a rate nor a response length
    }
    lines.push_back(j.dump());
  }
  auto [html, page] = Render(WriteMetrics("eval", lines));

  EXPECT_EQ(Ids(page), (std::vector<std::string>{"chart-eval", "chart-eval_response_len",
                                                 "chart-reward", "chart-response_len_mean",
                                                 "chart-other-0"}));
  const nlohmann::json& eval = SectionById(page, "chart-eval");
  EXPECT_EQ(eval["legend"], (nlohmann::json{"eval/accuracy", "eval/format", "eval/accuracy_greedy",
                                            "eval/format_greedy"}));
  EXPECT_EQ(eval["marks"], 20);  // 5 eval steps x 4 series
  EXPECT_TRUE(AnyTitleContains(eval, "eval/accuracy step 40: 0.6"));
  // The accuracy axis spans the rates only (0.2 to 0.65 padded), not the lengths.
  ASSERT_FALSE(eval["yticks"].empty());
  for (const auto& t : eval["yticks"]) {
    EXPECT_GE(t.get<double>(), 0.0) << eval["yticks"];
    EXPECT_LE(t.get<double>(), 1.0) << eval["yticks"];
  }
  const nlohmann::json& len = SectionById(page, "chart-eval_response_len");
  EXPECT_EQ(len["legend"], (nlohmann::json{"eval/response_len", "eval/response_len_greedy"}));
  EXPECT_TRUE(AnyTitleContains(len, "eval/response_len step 40: 80"));
  EXPECT_EQ(SectionById(page, "chart-other-0")["h3"], "eval/pass_at_k_tokens");
  // No chart holds a rate and a length together.
  for (const auto& s : page["sections"]) {
    bool rate = false, length = false;
    for (const auto& name : s["legend"]) {
      const std::string n = name.get<std::string>();
      rate |= n.rfind("eval/accuracy", 0) == 0 || n.rfind("eval/format", 0) == 0;
      length |= n.find("response_len") != std::string::npos || n == "eval/pass_at_k_tokens";
    }
    EXPECT_FALSE(rate && length) << s["id"] << ": " << s["legend"];
  }
}

TEST(Report, MissingSeriesSkipTheirCharts) {
  std::vector<std::string> lines;
  for (int s = 1; s <= 5; ++s) {
    lines.push_back(nlohmann::json({{"step", s}, {"reward_mean", 0.1 * s}, {"kl", 0.01}}).dump());
  }
  auto [html, page] = Render(WriteMetrics("sparse", lines));
  EXPECT_EQ(Ids(page), (std::vector<std::string>{"chart-reward", "chart-kl"}));
  EXPECT_EQ(page["svg_total"], 2);
  EXPECT_EQ(page["h1"], "sparse");  // default title: the run directory's name
  EXPECT_EQ(page["table"]["Final eval accuracy"], "n/a");
  EXPECT_EQ(page["table"]["Wall time"], "n/a");
  EXPECT_FALSE(page.contains("note_text"));

  // time/step, when logged, is the wall time and is not a stacked component.
  lines.clear();
  for (int s = 1; s <= 4; ++s) {
    lines.push_back(
        nlohmann::json({{"step", s}, {"time/step", 100.0}, {"time/learn", 30.0}}).dump());
  }
  auto [html2, page2] = Render(WriteMetrics("timed", lines));
  EXPECT_EQ(page2["table"]["Wall time"], "0h 06m 40s (sum of time/step)");
  EXPECT_EQ(SectionById(page2, "chart-time")["legend"], (nlohmann::json{"time/learn"}));
  EXPECT_EQ(SectionById(page2, "chart-other-0")["h3"], "time/step");
}

TEST(Report, ThousandsOfStepsAreDownsampledKeepingExtremes) {
  std::vector<std::string> lines;
  for (int s = 0; s < 5000; ++s) {
    double r = 0.5 + 0.4 * std::sin(s * 0.01);
    if (s == 3333) r = 50.0;
    if (s == 1234) r = -7.0;
    lines.push_back(
        nlohmann::json(
            {{"step", s}, {"reward_mean", r}, {"time/rollout", 1.0 + (s % 2)}, {"time/learn", 2.0}})
            .dump());
  }
  ReportOptions opt;
  opt.max_points = 200;
  auto [html, page] = Render(WriteMetrics("long", lines), opt);
  const nlohmann::json& reward = SectionById(page, "chart-reward");
  int total = 0;
  for (const auto& n : reward["polylines"]) total += n.get<int>();
  EXPECT_LE(total, 200);
  EXPECT_GE(total, 150);
  EXPECT_EQ(reward["hovers"], total);
  EXPECT_TRUE(AnyTitleContains(reward, "reward_mean step 3333: 50"));
  EXPECT_TRUE(AnyTitleContains(reward, "reward_mean step 1234: -7"));
  EXPECT_NE(reward["caption"].get<std::string>().find("downsampled"), std::string::npos);
  const nlohmann::json& time = SectionById(page, "chart-time");
  EXPECT_EQ(time["bands"], 200);
  // Bucket means of 25 steps: rollout alternates 1 and 2 seconds.
  EXPECT_TRUE(AnyTitleContains(time, "time/rollout 1.48 s; time/learn 2 s; total 3.48 s") ||
              AnyTitleContains(time, "time/rollout 1.52 s; time/learn 2 s; total 3.52 s") ||
              AnyTitleContains(time, "time/rollout 1.5 s; time/learn 2 s; total 3.5 s"));
  EXPECT_LT(html.size(), 400u * 1024);
}

TEST(Report, NullsAreGapsAndARepeatedStepKeepsItsLastRow) {
  std::vector<std::string> lines;
  for (int s = 1; s <= 10; ++s) {
    nlohmann::json j = {{"step", s}, {"kl", 0.1 * s}, {"note", "text is ignored"}};
    if (s == 5) j["kl"] = nullptr;
    lines.push_back(j.dump());
  }
  lines.push_back(nlohmann::json({{"step", 3}, {"kl", 9.5}}).dump());  // resumed without truncation
  auto [html, page] = Render(WriteMetrics("gaps", lines));
  EXPECT_EQ(Ids(page), (std::vector<std::string>{"chart-kl"}));
  const nlohmann::json& kl = SectionById(page, "chart-kl");
  EXPECT_EQ(kl["polylines"], (nlohmann::json{4, 5}));  // steps 1-4 and 6-10
  EXPECT_TRUE(AnyTitleContains(kl, "kl step 3: 9.5"));
  EXPECT_FALSE(AnyTitleContains(kl, "kl step 3: 0.3"));
  EXPECT_NE(page["note_text"].get<std::string>().find("1 rows repeated an earlier step"),
            std::string::npos);
  EXPECT_EQ(page["table"]["Steps"], "10 rows, steps 1 to 10");
}

TEST(Report, OnlyBadLinesStillGiveAPage) {
  auto [html, page] =
      Render(WriteMetrics("bad", {"{", "[1, 2]", "{\"step\": \"one\"}", "{\"step\": 1.5}"}));
  EXPECT_EQ(page["svg_total"], 0);
  EXPECT_EQ(page["table"]["Steps"], "no rows");
  EXPECT_EQ(page["notes"].size(), 4u);
  EXPECT_NE(html.find("No metrics to chart."), std::string::npos);
}

TEST(Report, ErrorsNameThePath) {
  const std::string dir = testing::MakeTempDir("report_err");
  absl::Status st = WriteReport(dir + "/missing.jsonl", dir + "/r.html");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("missing.jsonl"), std::string::npos) << st.ToString();
  const std::string metrics = WriteMetrics("ok", {"{\"step\": 1, \"kl\": 1}"});
  st = WriteReport(metrics, dir + "/no/such/dir/r.html");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("no/such/dir/r.html.tmp"), std::string::npos) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(dir + "/r.html"));
}

}  // namespace
}  // namespace grpo
