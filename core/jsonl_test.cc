#include "core/jsonl.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>

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
  EXPECT_EQ(r.status.message(), path + ":4: not valid JSON");
  ASSERT_TRUE((*reader)->Next(&r));
  EXPECT_EQ(r.line, 6);
  EXPECT_EQ(r.value["c"], "x");
  ASSERT_TRUE((*reader)->Next(&r));  // last line without newline
  EXPECT_EQ(r.line, 7);
  EXPECT_FALSE((*reader)->Next(&r));
  EXPECT_TRUE((*reader)->status().ok());
  EXPECT_EQ(JsonlReader::Open("/nonexistent/x.jsonl").status().code(), StatusCode::kIoError);
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
  ASSERT_TRUE((*w)->Close().ok());
  std::ifstream in(path);
  std::string l1, l2;
  std::getline(in, l1);
  std::getline(in, l2);
  EXPECT_EQ(l1, "{\"x\":1}");
  EXPECT_EQ(l2, "{\"y\":\"\xEF\xBF\xBD\"}");
}

}  // namespace
}  // namespace grpo
