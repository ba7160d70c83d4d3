// Tests of core/metrics: the CRC32C it uses (core/crc32c.h) against published vectors and an
// independent Python CRC, the TFRecord/Event bytes read back by an independent Python reader
// (its own bitwise CRC32C and a hand-written protobuf decoder; no code shared with the writer),
// metrics.jsonl round trips, and TruncateAfterStep.
#include "core/metrics.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/crc32c.h"
#include "core/file.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "proto/tensorboard.pb.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

// Reads an event file without any of our C++ code: checks both masked CRCs of every record and
// decodes Event/Summary/Value/SessionLog fields by hand. Prints a JSON list of events.
// With "crc FILE" it prints the CRC32C of FILE's bytes in hex.
constexpr const char* kPythonEventReader = R"PY(
import json, struct, sys

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def masked(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def varint(buf, i):
    result, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i

def fields(buf):
    i, out = 0, []
    while i < len(buf):
        key, i = varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(buf, i)
        elif wire == 1:
            v = buf[i:i + 8]; i += 8
        elif wire == 5:
            v = buf[i:i + 4]; i += 4
        elif wire == 2:
            n, i = varint(buf, i)
            v = buf[i:i + n]; i += n
        else:
            raise ValueError("unexpected wire type %d" % wire)
        out.append((num, wire, v))
    if i != len(buf):
        raise ValueError("message overruns its buffer")
    return out

def event(data):
    e = {}
    for num, wire, v in fields(data):
        if num == 1 and wire == 1:
            e["wall_time"] = struct.unpack("<d", v)[0]
        elif num == 2 and wire == 0:
            e["step"] = v - (1 << 64) if v >= (1 << 63) else v
        elif num == 3 and wire == 2:
            e["file_version"] = v.decode("utf-8")
        elif num == 5 and wire == 2:
            values = []
            for n2, w2, val in fields(v):
                assert n2 == 1 and w2 == 2, (n2, w2)
                tag, simple = None, None
                for n3, w3, x in fields(val):
                    if n3 == 1 and w3 == 2:
                        tag = x.decode("utf-8")
                    elif n3 == 2 and w3 == 5:
                        simple = struct.unpack("<f", x)[0]
                    else:
                        raise ValueError("unexpected Summary.Value field %d" % n3)
                values.append([tag, simple])
            e["values"] = values
        elif num == 7 and wire == 2:
            for n2, w2, val in fields(v):
                if n2 == 1 and w2 == 0:
                    e["session_status"] = val
        else:
            raise ValueError("unexpected Event field %d wire %d" % (num, wire))
    return e

if sys.argv[1] == "crc":
    print("%08x" % crc32c(open(sys.argv[2], "rb").read()))
    sys.exit(0)

buf = open(sys.argv[1], "rb").read()
i, events = 0, []
while i < len(buf):
    header = buf[i:i + 8]
    (length,) = struct.unpack("<Q", header)
    (len_crc,) = struct.unpack("<I", buf[i + 8:i + 12])
    if len_crc != masked(crc32c(header)):
        raise ValueError("bad length crc at byte %d" % i)
    data = buf[i + 12:i + 12 + length]
    if len(data) != length:
        raise ValueError("truncated record at byte %d" % i)
    (data_crc,) = struct.unpack("<I", buf[i + 12 + length:i + 16 + length])
    if data_crc != masked(crc32c(data)):
        raise ValueError("bad data crc at byte %d" % i)
    events.append(event(data))
    i += 16 + length
print(json.dumps(events))
)PY";

nlohmann::json ReadEventsInPython(const std::string& path) {
  auto out = testing::RunPythonScript(kPythonEventReader, {path});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return nlohmann::json();
  return nlohmann::json::parse(*out);
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string ReadAll(const std::string& path) { return ReadFile(path).value_or(""); }

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(MetricsCrc, KnownVectors) {
  // RFC 3720 (iSCSI) appendix B.4 and the common check value.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("a"), 0xC1D04330u);
  std::string zeros(32, '\0'), ones(32, '\xff'), up(32, 0), down(32, 0);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(down), 0x113FDB5Cu);
  EXPECT_EQ(MaskCrc32c(0), 0xA282EAD8u);
  EXPECT_EQ(MaskCrc32c(0x00008000u), 0xA282EAD9u);  // bit 15 rotates to bit 0
  EXPECT_EQ(MaskCrc32c(0x00000001u), 0xA284EAD8u);  // bit 0 rotates to bit 17
}

TEST(MetricsCrc, MatchesIndependentPythonOnRandomBytes) {
  std::mt19937 rng(3);
  std::string data(5000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  const std::string path = testing::MakeTempDir("crc") + "/random.bin";
  ASSERT_TRUE(testing::WriteBinaryFile(path, data.data(), data.size()).ok());
  auto out = testing::RunPythonScript(kPythonEventReader, {"crc", path});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  char hex[16];
  std::snprintf(hex, sizeof(hex), "%08x\n", Crc32c(data));
  EXPECT_EQ(*out, hex);
}

TEST(TfRecord, Framing) {
  const std::string rec = TfRecord("hello");
  ASSERT_EQ(rec.size(), 8u + 4 + 5 + 4);
  EXPECT_EQ(rec.substr(0, 8), std::string("\x05\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(rec.substr(12, 5), "hello");
  auto le32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(rec[at + i]);
    return v;
  };
  EXPECT_EQ(le32(8), MaskCrc32c(Crc32c(rec.substr(0, 8))));
  EXPECT_EQ(le32(17), MaskCrc32c(Crc32c("hello")));
}

TEST(MetricsWriter, EventFileReadsBackInIndependentPythonReader) {
  const std::string dir = testing::MakeTempDir("metrics_tb") + "/run";
  const double t0 = Now();
  auto w = MetricsWriter::Open(dir);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const std::string events_path = (*w)->events_path();
  EXPECT_EQ(std::filesystem::path(events_path).parent_path(), std::filesystem::path(dir + "/tb"));
  EXPECT_EQ(std::filesystem::path(events_path).filename().string().rfind("events.out.tfevents.", 0),
            0u);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ASSERT_TRUE((*w)->Log(0,
                        std::vector<std::pair<std::string, double>>{
                            {"reward_mean", 0.0}, {"kl", nan}, {"time/rollout", 1.25}})
                  .ok());
  ASSERT_TRUE(
      (*w)->Log(1, std::map<std::string, double>{{"reward_mean", 0.375}, {"lr", 1e-6}}).ok());
  ASSERT_TRUE(
      (*w)->Log(1234567890123LL,
                std::vector<std::pair<std::string, double>>{{"eval/accuracy", -2.5}, {"big", 1e30}})
          .ok());
  ASSERT_TRUE((*w)->Close().ok());
  const double t1 = Now();

  const nlohmann::json events = ReadEventsInPython(events_path);
  ASSERT_TRUE(events.is_array());
  ASSERT_EQ(events.size(), 1u + 2 + 2 + 2);  // header, then one event per finite value
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
  EXPECT_FALSE(events[0].contains("step"));
  struct Want {
    int64_t step;
    const char* tag;
    double value;
  };
  const std::vector<Want> want = {{0, "reward_mean", 0.0},
                                  {0, "time/rollout", 1.25},
                                  {1, "lr", 1e-6},
                                  {1, "reward_mean", 0.375},
                                  {1234567890123LL, "eval/accuracy", -2.5},
                                  {1234567890123LL, "big", 1e30}};
  for (size_t i = 0; i < events.size(); ++i) {
    const double wall = events[i]["wall_time"].get<double>();
    EXPECT_GE(wall, t0 - 1);
    EXPECT_LE(wall, t1 + 1);
    if (i == 0) continue;
    const Want& w1 = want[i - 1];
    SCOPED_TRACE(w1.tag);
    // proto3 leaves out a zero step; the reader then sees the default 0.
    EXPECT_EQ(events[i].value("step", int64_t{0}), w1.step);
    ASSERT_EQ(events[i]["values"].size(), 1u);
    EXPECT_EQ(events[i]["values"][0][0], w1.tag);
    // The value 0.0 must still be present (not dropped as a proto3 default).
    ASSERT_TRUE(events[i]["values"][0][1].is_number());
    EXPECT_EQ(events[i]["values"][0][1].get<double>(),
              static_cast<double>(static_cast<float>(w1.value)));
  }

  // Our generated classes read the same bytes (a second, non-independent check).
  const std::string bytes = ReadAll(events_path);
  size_t pos = 0, n = 0;
  while (pos < bytes.size()) {
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<unsigned char>(bytes[pos + i]);
    tb::Event e;
    ASSERT_TRUE(e.ParseFromString(bytes.substr(pos + 12, len)));
    if (n == 1) {  // reward_mean = 0.0 at step 0: the value is present, not a default
      EXPECT_EQ(e.summary().value(0).tag(), "reward_mean");
      EXPECT_TRUE(e.summary().value(0).has_simple_value());
    }
    pos += 16 + len;
    ++n;
  }
  EXPECT_EQ(n, events.size());
}

TEST(MetricsWriter, ResumeWritesSessionStartAndNewEventFile) {
  const std::string dir = testing::MakeTempDir("metrics_resume");
  std::string first_events;
  {
    auto w = MetricsWriter::Open(dir);
    ASSERT_TRUE(w.ok());
    first_events = (*w)->events_path();
    ASSERT_TRUE((*w)->Log(5, std::map<std::string, double>{{"kl", 0.5}}).ok());
  }
  MetricsWriterOptions opt;
  opt.resumed_from_step = 3;
  auto w = MetricsWriter::Open(dir, opt);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_NE((*w)->events_path(), first_events);  // same second: a ".1" suffix, never a clobber
  ASSERT_TRUE((*w)->Log(4, std::map<std::string, double>{{"kl", 0.25}}).ok());
  ASSERT_TRUE((*w)->Close().ok());
  const nlohmann::json events = ReadEventsInPython((*w)->events_path());
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
  EXPECT_EQ(events[1]["step"], 3);
  EXPECT_EQ(events[1]["session_status"], 1);  // SessionLog.START
  EXPECT_EQ(events[2]["step"], 4);
  EXPECT_EQ(ReadEventsInPython(first_events).size(), 2u);   // the old file is intact
  EXPECT_EQ(ReadLines(dir + "/metrics.jsonl").size(), 2u);  // appended, not truncated
}

TEST(MetricsWriter, JsonlRoundTripsValuesAndWritesNullForNonFinite) {
  const std::string dir = testing::MakeTempDir("metrics_jsonl");
  MetricsWriterOptions opt;
  opt.tensorboard = false;
  auto w = MetricsWriter::Open(dir, opt);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE((*w)->events_path().empty());
  EXPECT_FALSE(std::filesystem::exists(dir + "/tb"));
  const std::vector<std::pair<std::string, double>> values = {
      {"zeta", 0.1},
      {"alpha", 1.0 / 3.0},
      {"reward/format", 1e-300},
      {"neg", -2.5e10},
      {"int", 3.0},
      {"nan", std::numeric_limits<double>::quiet_NaN()},
      {"inf", std::numeric_limits<double>::infinity()},
      {"ninf", -std::numeric_limits<double>::infinity()},
      {"quote\"and\\slash", 7.0}};
  ASSERT_TRUE((*w)->Log(12, values).ok());
  // Line is flushed per Log: readable before Close.
  std::vector<std::string> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("{\"step\": 12, \"zeta\": 0.1, \"alpha\": 0.3333333333333333, ", 0), 0u)
      << lines[0];
  const nlohmann::json j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["step"], 12);
  EXPECT_EQ(j["zeta"].get<double>(), 0.1);
  EXPECT_EQ(j["alpha"].get<double>(), 1.0 / 3.0);
  EXPECT_EQ(j["reward/format"].get<double>(), 1e-300);
  EXPECT_EQ(j["neg"].get<double>(), -2.5e10);
  EXPECT_EQ(j["int"].get<double>(), 3.0);
  EXPECT_TRUE(j["nan"].is_null());
  EXPECT_TRUE(j["inf"].is_null());
  EXPECT_TRUE(j["ninf"].is_null());
  EXPECT_EQ(j["quote\"and\\slash"].get<double>(), 7.0);

  // Bad names are rejected and write nothing.
  using V = std::vector<std::pair<std::string, double>>;
  EXPECT_EQ((*w)->Log(13, V{{"step", 1.0}}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Log(13, V{{"", 1.0}}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Log(13, V{{"a", 1.0}, {"a", 2.0}}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*w)->Log(13, std::map<std::string, double>{{"b", 2.0}, {"a", 1.0}}).ok());
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_EQ((*w)->Log(14, V{{"a", 1.0}}).code(), absl::StatusCode::kFailedPrecondition);
  lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "{\"step\": 13, \"a\": 1, \"b\": 2}");
}

TEST(MetricsWriter, AppendAfterTornLineStartsANewLine) {
  const std::string dir = testing::MakeTempDir("metrics_torn");
  std::ofstream(dir + "/metrics.jsonl") << "{\"step\": 1, \"a\": 1}\n{\"step\": 2, \"a";
  MetricsWriterOptions opt;
  opt.tensorboard = false;
  auto w = MetricsWriter::Open(dir, opt);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Log(2, std::map<std::string, double>{{"a", 2.0}}).ok());
  ASSERT_TRUE((*w)->Close().ok());
  const std::vector<std::string> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], "{\"step\": 2, \"a");
  EXPECT_EQ(lines[2], "{\"step\": 2, \"a\": 2}");
}

// A full disk (simulated with a file size limit: writes fail with EFBIG as they would with
// ENOSPC) makes Log an error naming metrics.jsonl, never a torn row; earlier rows stay.
TEST(MetricsWriter, AFullDiskIsAnErrorNamingTheFileAndKeepsEarlierRows) {
  const std::string dir = testing::MakeTempDir("metrics_full");
  MetricsWriterOptions opt;
  opt.tensorboard = false;
  auto w = MetricsWriter::Open(dir, opt);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Log(1, std::map<std::string, double>{{"a", 1.0}}).ok());
  const std::string before = *ReadFile(dir + "/metrics.jsonl");
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = before.size() + 8;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status full = (*w)->Log(2, std::map<std::string, double>{{"a", 2.0}, {"reward_mean", 0.25}});
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_FALSE(full.ok());
  EXPECT_NE(full.message().find(dir + "/metrics.jsonl"), std::string::npos) << full.ToString();
  EXPECT_EQ(*ReadFile(dir + "/metrics.jsonl"), before);
  ASSERT_TRUE((*w)->Log(2, std::map<std::string, double>{{"a", 2.0}}).ok());
  ASSERT_TRUE((*w)->Close().ok());
  const std::vector<std::string> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "{\"step\": 2, \"a\": 2}");
}

TEST(TruncateAfterStep, KeepsRowsUpToStepAtomically) {
  const std::string dir = testing::MakeTempDir("metrics_trunc");
  const std::string path = dir + "/metrics.jsonl";
  {
    std::ofstream out(path);
    for (int s = 1; s <= 10; ++s) out << "{\"step\": " << s << ", \"kl\": " << s * 0.5 << "}\n";
    out << "not json\n";
    out << "{\"no_step\": 1}\n";
    out << "{\"step\": 4, \"eval/accuracy\": 0.5}\n";  // a row out of order is judged by its step
    out << "{\"step\": 11, \"k";                       // torn last line
  }
  int64_t removed = -1;
  ASSERT_TRUE(TruncateAfterStep(path, 5, &removed).ok());
  EXPECT_EQ(removed, 6);  // steps 6..10 and the torn line
  const std::vector<std::string> lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 8u);
  for (int s = 1; s <= 5; ++s) {
    EXPECT_EQ(nlohmann::json::parse(lines[s - 1])["step"], s);
    EXPECT_EQ(nlohmann::json::parse(lines[s - 1])["kl"].get<double>(), s * 0.5);
  }
  EXPECT_EQ(lines[5], "not json");
  EXPECT_EQ(lines[6], "{\"no_step\": 1}");
  EXPECT_EQ(lines[7], "{\"step\": 4, \"eval/accuracy\": 0.5}");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  // Idempotent, and truncating below every step leaves only the step-less lines.
  ASSERT_TRUE(TruncateAfterStep(path, 5, &removed).ok());
  EXPECT_EQ(removed, 0);
  ASSERT_TRUE(TruncateAfterStep(path, 0, &removed).ok());
  EXPECT_EQ(removed, 6);
  EXPECT_EQ(ReadLines(path), (std::vector<std::string>{"not json", "{\"no_step\": 1}"}));

  // A missing file has nothing to truncate.
  EXPECT_TRUE(TruncateAfterStep(dir + "/missing.jsonl", 3).ok());
  // A path that cannot be rewritten is an error that names it, and the original stays.
  std::filesystem::create_directories(dir + "/sub.jsonl");
  const absl::Status st = TruncateAfterStep(dir + "/sub.jsonl", 3);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("sub.jsonl"), std::string::npos) << st.ToString();
  EXPECT_TRUE(std::filesystem::is_directory(dir + "/sub.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/sub.jsonl.tmp"));
}

TEST(TruncateAfterStep, ThenWriterContinuesTheFile) {
  const std::string dir = testing::MakeTempDir("metrics_trunc_resume");
  MetricsWriterOptions opt;
  opt.tensorboard = false;
  {
    auto w = MetricsWriter::Open(dir, opt);
    ASSERT_TRUE(w.ok());
    for (int s = 0; s < 6; ++s)
      ASSERT_TRUE((*w)->Log(s, std::map<std::string, double>{{"x", s * 1.0}}).ok());
  }
  ASSERT_TRUE(TruncateAfterStep(dir + "/metrics.jsonl", 3).ok());
  auto w = MetricsWriter::Open(dir, opt);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Log(4, std::map<std::string, double>{{"x", 40.0}}).ok());
  ASSERT_TRUE((*w)->Close().ok());
  const std::vector<std::string> lines = ReadLines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[3], "{\"step\": 3, \"x\": 3}");
  EXPECT_EQ(lines[4], "{\"step\": 4, \"x\": 40}");
}

// Every message, field, oneof and enum value of proto/tensorboard.proto has a comment, and the
// field numbers are TensorFlow's.
TEST(TensorboardProto, DocumentedAndWireNumbersMatchTensorflow) {
  const std::string bytes = ReadAll("core/tensorboard_descriptor_set.pb");
  ASSERT_FALSE(bytes.empty()) << "descriptor set missing from runfiles";
  google::protobuf::FileDescriptorSet set;
  ASSERT_TRUE(set.ParseFromString(bytes));
  google::protobuf::DescriptorPool pool;
  for (const auto& file : set.file()) ASSERT_NE(pool.BuildFile(file), nullptr) << file.name();
  const google::protobuf::FileDescriptor* f = pool.FindFileByName("proto/tensorboard.proto");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->package(), "grpo.tb");
  std::vector<std::string> undocumented;
  int checked = 0;
  auto check = [&](const auto* d) {
    google::protobuf::SourceLocation loc;
    ++checked;
    if (!d->GetSourceLocation(&loc) ||
        (loc.leading_comments.find_first_not_of(" \n") == std::string::npos &&
         loc.trailing_comments.find_first_not_of(" \n") == std::string::npos)) {
      undocumented.push_back(d->full_name());
    }
  };
  std::function<void(const google::protobuf::Descriptor*)> message =
      [&](const google::protobuf::Descriptor* m) {
        check(m);
        for (int i = 0; i < m->field_count(); ++i) check(m->field(i));
        for (int i = 0; i < m->oneof_decl_count(); ++i) check(m->oneof_decl(i));
        for (int i = 0; i < m->nested_type_count(); ++i) message(m->nested_type(i));
        for (int i = 0; i < m->enum_type_count(); ++i) {
          check(m->enum_type(i));
          for (int j = 0; j < m->enum_type(i)->value_count(); ++j) check(m->enum_type(i)->value(j));
        }
      };
  for (int i = 0; i < f->message_type_count(); ++i) message(f->message_type(i));
  EXPECT_GE(checked, 20);
  std::string list;
  for (const std::string& n : undocumented) list += "\n  " + n;
  EXPECT_TRUE(undocumented.empty()) << "undocumented:" << list;

  using FD = google::protobuf::FieldDescriptor;
  const auto* ev = tb::Event::descriptor();
  EXPECT_EQ(ev->FindFieldByName("wall_time")->number(), 1);
  EXPECT_EQ(ev->FindFieldByName("wall_time")->type(), FD::TYPE_DOUBLE);
  EXPECT_EQ(ev->FindFieldByName("step")->number(), 2);
  EXPECT_EQ(ev->FindFieldByName("step")->type(), FD::TYPE_INT64);
  EXPECT_EQ(ev->FindFieldByName("file_version")->number(), 3);
  EXPECT_EQ(ev->FindFieldByName("summary")->number(), 5);
  EXPECT_EQ(ev->FindFieldByName("session_log")->number(), 7);
  const auto* val = tb::Summary::Value::descriptor();
  EXPECT_EQ(tb::Summary::descriptor()->FindFieldByName("value")->number(), 1);
  EXPECT_EQ(val->FindFieldByName("tag")->number(), 1);
  EXPECT_EQ(val->FindFieldByName("simple_value")->number(), 2);
  EXPECT_EQ(val->FindFieldByName("simple_value")->type(), FD::TYPE_FLOAT);
}

}  // namespace
}  // namespace grpo
