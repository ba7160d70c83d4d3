#include "core/jsonl.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <fstream>
#include <random>
#include <string>

#include "core/file.h"
#include "testing/python_reference.h"

namespace grpo {
namespace {

std::string WriteText(const std::string& text) {
  const std::string path = testing::MakeTempDir("jsonl") + "/in.jsonl";
  std::ofstream(path) << text;
  return path;
}

TEST(Jsonl, ReadsObjectsAndReportsBadLinesWithNumbers) {
  const std::string path = WriteText("{\"a\": 1}\n\n[1,2]\n{\"b\": \n  \t\n{\"c\": \"x\"}\r\n{\"d\":2}");
  auto reader = JsonlReader::Open(path);
  ASSERT_TRUE(reader.ok());
  JsonlRecord r;
  ASSERT_TRUE((*reader)->Next(&r));
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.line, 1);
  EXPECT_EQ(r.value["a"], 1);
  ASSERT_TRUE((*reader)->Next(&r));
  EXPECT_EQ(r.line, 3);
  EXPECT_EQ(r.status.message(), path + ":3: not a JSON object");
  ASSERT_TRUE((*reader)->Next(&r));
  EXPECT_EQ(r.line, 4);
  // The parser's reason follows: "...: not valid JSON: parse error at line 1, column 7: ...".
  EXPECT_EQ(std::string(r.status.message()).rfind(path + ":4: not valid JSON: parse error", 0), 0u)
      << r.status.ToString();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*reader)->Next(&r));
  EXPECT_EQ(r.line, 6);
  EXPECT_EQ(r.value["c"], "x");
  ASSERT_TRUE((*reader)->Next(&r));  // last line without newline
  EXPECT_EQ(r.line, 7);
  EXPECT_FALSE((*reader)->Next(&r));
  EXPECT_TRUE((*reader)->status().ok());
  EXPECT_EQ(JsonlReader::Open("/nonexistent/x.jsonl").status().code(), absl::StatusCode::kNotFound);
}

TEST(Jsonl, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\":,0123456789abc \n\t\\";
  for (int i = 0; i < 300; ++i) {
    std::string text;
    const int n = rng() % 400;
    for (int j = 0; j < n; ++j) text += rng() % 8 == 0 ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()];
    auto reader = JsonlReader::Open(WriteText(text));
    ASSERT_TRUE(reader.ok());
    JsonlRecord r;
    int64_t last = 0;
    while ((*reader)->Next(&r)) {
      EXPECT_GT(r.line, last);
      last = r.line;
      if (r.ok()) EXPECT_TRUE(r.value.is_object());
    }
  }
}

TEST(Jsonl, WriterIsAtomic) {
  const std::string dir = testing::MakeTempDir("jsonlw");
  const std::string path = dir + "/out.jsonl";
  {
    auto w = JsonlWriter::Open(path);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write({{"x", 1}}).ok());
    // Destroyed without Close: nothing appears at `path`.
  }
  EXPECT_FALSE(std::ifstream(path).good());
  EXPECT_FALSE(std::ifstream(path + ".tmp").good());
  auto w = JsonlWriter::Open(path);
  ASSERT_TRUE((*w)->Write({{"x", 1}}).ok());
  ASSERT_TRUE((*w)->Write({{"y", "\xff"}}).ok());  // invalid UTF-8 is replaced, not fatal
  nlohmann::ordered_json ordered;
  ordered["b"] = 1;
  ordered["a"] = 2;
  ASSERT_TRUE((*w)->Write(ordered).ok());  // keys as inserted
  ASSERT_TRUE((*w)->Close().ok());
  std::ifstream in(path);
  std::string l1, l2;
  std::getline(in, l1);
  std::getline(in, l2);
  EXPECT_EQ(l1, "{\"x\":1}");
  EXPECT_EQ(l2, "{\"y\":\"\xEF\xBF\xBD\"}");
  std::string l3;
  std::getline(in, l3);
  EXPECT_EQ(l3, "{\"b\":1,\"a\":2}");
}

TEST(Jsonl, ParseJsonlLineSaysWhatIsWrong) {
  absl::StatusOr<nlohmann::json> ok = ParseJsonlLine(" {\"a\": [1, 2]} ");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ((*ok)["a"][1], 2);
  EXPECT_EQ(ParseJsonlLine("[1]").status().message(), "not a JSON object");
  EXPECT_EQ(ParseJsonlLine("7").status().code(), absl::StatusCode::kInvalidArgument);
  const absl::Status bad = ParseJsonlLine("{\"a\" 1}").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(bad.message()).rfind("not valid JSON: parse error at line 1, column 6", 0), 0u)
      << bad.ToString();
  EXPECT_FALSE(ParseJsonlLine("").ok());
  EXPECT_FALSE(ParseJsonlLine("{} {}").ok());
}

TEST(Jsonl, ReadsTextInMemoryLikeAFile) {
  const std::string text = "{\"a\": 1}\n \r\n\r\n[2]\r\n\n{\"b\": 2}";
  std::unique_ptr<JsonlReader> reader = JsonlReader::FromText("mem.jsonl", text);
  EXPECT_EQ(reader->path(), "mem.jsonl");
  JsonlRecord r;
  ASSERT_TRUE(reader->Next(&r));
  EXPECT_EQ(r.line, 1);
  EXPECT_EQ(r.value["a"], 1);
  ASSERT_TRUE(reader->Next(&r));  // lines 2 and 3 hold only spaces and '\r': blank
  EXPECT_EQ(r.line, 4);
  EXPECT_EQ(r.status.message(), "mem.jsonl:4: not a JSON object");
  ASSERT_TRUE(reader->Next(&r));
  EXPECT_EQ(r.line, 6);
  EXPECT_EQ(r.value["b"], 2);
  EXPECT_FALSE(reader->Next(&r));
  EXPECT_TRUE(reader->status().ok());
  EXPECT_FALSE(JsonlReader::FromText("empty", "")->Next(&r));
}

TEST(Jsonl, WriterReplacesAnExistingFileOnlyOnClose) {
  const std::string path = testing::MakeTempDir("jsonlr") + "/out.jsonl";
  std::ofstream(path) << "{\"old\":1}\n";
  auto w = JsonlWriter::Open(path);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->Write({{"new", 2}}).ok());
  EXPECT_EQ((*w)->bytes_written(), 10u);
  EXPECT_EQ(*ReadFile(path), "{\"old\":1}\n");  // unchanged until Close
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_EQ((*w)->Write({{"late", 3}}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*ReadFile(path), "{\"new\":2}\n");
  // A directory that does not exist: the error names the file.
  auto missing = JsonlWriter::Open(path + ".d/x.jsonl");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path + ".d/x.jsonl"), std::string::npos);
}

TEST(JsonlAppender, AppendsLinesAndRepairsATornLastLine) {
  const std::string dir = testing::MakeTempDir("jsonla");
  const std::string path = dir + "/log.jsonl";
  {
    auto a = JsonlAppender::Open(path);  // created when missing
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ((*a)->path(), path);
    ASSERT_TRUE((*a)->Append({{"step", 1}}).ok());
    ASSERT_TRUE((*a)->AppendText("{\"step\": 2, \"x\": 0.1}").ok());
    EXPECT_EQ(*ReadFile(path), "{\"step\":1}\n{\"step\": 2, \"x\": 0.1}\n");  // on disk already
    EXPECT_EQ((*a)->AppendText("{\"a\":\n1}").code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE((*a)->Close().ok());
    EXPECT_EQ((*a)->Append({{"step", 3}}).code(), absl::StatusCode::kFailedPrecondition);
  }
  // A resumed run continues the file.
  ASSERT_TRUE((*JsonlAppender::Open(path))->Append({{"step", 3}}).ok());
  EXPECT_EQ(*ReadFile(path), "{\"step\":1}\n{\"step\": 2, \"x\": 0.1}\n{\"step\":3}\n");
  // A crash mid-line left no newline: the next row starts on a line of its own.
  std::ofstream(path, std::ios::app) << "{\"step\": 4, \"lo";
  ASSERT_TRUE((*JsonlAppender::Open(path))->Append({{"step", 4}}).ok());
  EXPECT_EQ(*ReadFile(path),
            "{\"step\":1}\n{\"step\": 2, \"x\": 0.1}\n{\"step\":3}\n{\"step\": 4, \"lo\n{\"step\":4}\n");
  // An empty file gets no newline.
  const std::string empty = dir + "/empty.jsonl";
  std::ofstream(empty).flush();
  ASSERT_TRUE((*JsonlAppender::Open(empty))->Append({{"a", 1}}).ok());
  EXPECT_EQ(*ReadFile(empty), "{\"a\":1}\n");
  EXPECT_EQ(JsonlAppender::Open(dir + "/no/such/log.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

// A full disk, simulated with a file size limit (write(2) then fails with EFBIG, as it fails
// with ENOSPC on a full disk): the append is an error naming the file, the part of the line it
// wrote is cut off again, and the file goes on with whole lines once there is room.
TEST(JsonlAppender, AFailedAppendNamesTheFileAndLeavesTheEarlierLines) {
  const std::string path = testing::MakeTempDir("jsonla_full") + "/metrics.jsonl";
  auto a = JsonlAppender::Open(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE((*a)->Append({{"step", 1}}).ok());
  const std::string before = *ReadFile(path);
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = before.size() + 10;  // part of the next line fits
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status full = (*a)->AppendText("{\"step\": 2, \"long\": \"" + std::string(100, 'x') + "\"}");
  const absl::Status again = (*a)->AppendText("{\"step\": 2}");
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_FALSE(full.ok());
  EXPECT_NE(full.message().find("cannot write " + path), std::string::npos) << full.ToString();
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(*ReadFile(path), before);
  ASSERT_TRUE((*a)->Append({{"step", 2}}).ok());
  EXPECT_EQ(*ReadFile(path), before + "{\"step\":2}\n");
}

}  // namespace
}  // namespace grpo
