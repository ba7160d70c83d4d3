#include "core/config.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace grpo {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

Config MustParse(std::string_view text, std::string name = "recipe.yaml") {
  auto c = Config::Parse(text, name);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return Config();
  return std::move(c).value();
}

std::string ErrorOf(const absl::Status& s) {
  EXPECT_FALSE(s.ok());
  return std::string(s.message());
}

template <typename T>
std::string ErrorOf(const absl::StatusOr<T>& r) {
  EXPECT_FALSE(r.ok());
  return std::string(r.status().message());
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Equality that also compares kinds (nlohmann's == says 1 == 1.0) and float bits of -0.0/NaN.
bool StrictEqual(const Json& a, const Json& b, std::string* where, const std::string& at = "") {
  if (a.type() != b.type()) {
    *where = at + ": type " + a.type_name() + " vs " + b.type_name() + " (" + a.dump() + " vs " +
             b.dump() + ")";
    return false;
  }
  switch (a.type()) {
    case Json::value_t::number_float: {
      double x = a.get<double>(), y = b.get<double>();
      if (std::isnan(x) && std::isnan(y)) return true;
      if (x != y || std::signbit(x) != std::signbit(y)) {
        *where = at + ": " + a.dump() + " vs " + b.dump();
        return false;
      }
      return true;
    }
    case Json::value_t::object: {
      if (a.size() != b.size()) {
        *where = at + ": object sizes differ";
        return false;
      }
      for (auto it = a.begin(); it != a.end(); ++it) {
        auto jt = b.find(it.key());
        if (jt == b.end()) {
          *where = at + ": key " + Json(it.key()).dump() + " missing";
          return false;
        }
        if (!StrictEqual(it.value(), *jt, where, at + "/" + it.key())) return false;
      }
      return true;
    }
    case Json::value_t::array: {
      if (a.size() != b.size()) {
        *where = at + ": array sizes differ";
        return false;
      }
      for (size_t i = 0; i < a.size(); ++i) {
        if (!StrictEqual(a[i], b[i], where, at + "/" + std::to_string(i))) return false;
      }
      return true;
    }
    default:
      if (a != b) {
        *where = at + ": " + a.dump() + " vs " + b.dump();
        return false;
      }
      return true;
  }
}

// Lines:        1
constexpr char kRecipe[] = R"(# nano R1-Zero
name: nano-r1
model:
  path: models/nano
  dtype: bf16
train:
  steps: 100
  lr: 1e-5
  batch: 8
  clip: 0.2
  kl: 0
  use_kl: false
data:
  files:
    - a.jsonl
    - b.jsonl
  shuffle: true
  seed: null
  answer: yes
  mixed: [a, 3]
)";

// ---------------------------------------------------------------------------------------------
// Parsing and types.

TEST(ConfigParse, ResolvesScalarsByTheCoreSchema) {
  Config c = MustParse(kRecipe);
  const Json& j = c.json();
  EXPECT_EQ(j["name"], "nano-r1");
  EXPECT_TRUE(j["train"]["steps"].is_number_integer());
  EXPECT_EQ(j["train"]["steps"].get<int64_t>(), 100);
  EXPECT_TRUE(j["train"]["lr"].is_number_float());
  EXPECT_DOUBLE_EQ(j["train"]["lr"].get<double>(), 1e-5);
  EXPECT_TRUE(j["train"]["use_kl"].is_boolean());
  EXPECT_TRUE(j["data"]["seed"].is_null());
  EXPECT_EQ(j["data"]["answer"], "yes");  // YAML 1.2: not a boolean
  EXPECT_EQ(j["data"]["files"], Json({"a.jsonl", "b.jsonl"}));
}

TEST(ConfigParse, ScalarEdgeCases) {
  Config c = MustParse(
      "a: 0x1F\nb: 0o17\nc: -12\nd: +7\ne: 1.\nf: .5\ng: .inf\nh: -.inf\ni: .nan\n"
      "j: 1e3\nk: 1_000\nl: 12abc\nm: ~\nn: True\no: NULL\np: '3'\nq: \"true\"\nr: !!str 3\n"
      "s: !!float 3\nt: 99999999999999999999\nu: 18446744073709551615\nv: -9223372036854775808\n"
      "w: 1.0\nx: 0777\ny:\nz: |\n  two\n  lines\n");
  const Json& j = c.json();
  EXPECT_EQ(j["a"].get<int64_t>(), 31);
  EXPECT_EQ(j["b"].get<int64_t>(), 15);
  EXPECT_EQ(j["c"].get<int64_t>(), -12);
  EXPECT_EQ(j["d"].get<int64_t>(), 7);
  EXPECT_TRUE(j["e"].is_number_float());
  EXPECT_DOUBLE_EQ(j["f"].get<double>(), 0.5);
  EXPECT_TRUE(std::isinf(j["g"].get<double>()) && j["g"].get<double>() > 0);
  EXPECT_TRUE(std::isinf(j["h"].get<double>()) && j["h"].get<double>() < 0);
  EXPECT_TRUE(std::isnan(j["i"].get<double>()));
  EXPECT_TRUE(j["j"].is_number_float());
  EXPECT_EQ(j["k"], "1_000");
  EXPECT_EQ(j["l"], "12abc");
  EXPECT_TRUE(j["m"].is_null());
  EXPECT_EQ(j["n"], true);
  EXPECT_TRUE(j["o"].is_null());
  EXPECT_EQ(j["p"], "3");
  EXPECT_EQ(j["q"], "true");
  EXPECT_EQ(j["r"], "3");
  EXPECT_TRUE(j["s"].is_number_float());
  EXPECT_TRUE(j["t"].is_number_float());  // beyond 64 bits: a float, like JSON parsers
  EXPECT_TRUE(j["u"].is_number_unsigned());
  EXPECT_EQ(j["v"].get<int64_t>(), std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(j["w"].is_number_float());
  EXPECT_EQ(j["x"].get<int64_t>(), 777);  // YAML 1.2: decimal
  EXPECT_TRUE(j["y"].is_null());
  EXPECT_EQ(j["z"], "two\nlines\n");
}

TEST(ConfigParse, EmptyDocumentIsAnEmptyMapping) {
  EXPECT_TRUE(MustParse("").json().empty());
  EXPECT_TRUE(MustParse("# only a comment\n").json().empty());
  EXPECT_TRUE(MustParse("---\n").json().is_object());
}

TEST(ConfigParse, TopLevelMustBeAMapping) {
  EXPECT_THAT(ErrorOf(Config::Parse("- a\n- b\n", "r.yaml")),
              HasSubstr("r.yaml:1: the top level must be a mapping, got a list"));
  EXPECT_THAT(ErrorOf(Config::Parse("just text", "r.yaml")),
              HasSubstr("r.yaml:1: the top level must be a mapping, got a string"));
  EXPECT_THAT(ErrorOf(Config::Parse("\n\n42\n", "r.yaml")),
              HasSubstr("r.yaml:3: the top level must be a mapping, got an integer"));
}

TEST(ConfigParse, MoreThanOneDocumentIsAnError) {
  EXPECT_EQ(ErrorOf(Config::Parse("a: 1\n---\nb: 2\n", "r.yaml")),
            "r.yaml:2:1: more than one YAML document, or stray content after the document");
  // yaml-cpp's LoadAll would loop forever on these; they are errors here.
  EXPECT_EQ(ErrorOf(Config::Parse("{a: 1},\n", "r.yaml")),
            "r.yaml:1:7: more than one YAML document, or stray content after the document");
  EXPECT_THAT(ErrorOf(Config::Parse(",", "r.yaml")), HasSubstr("stray content"));
  // A document end marker is fine.
  EXPECT_EQ(MustParse("a: 1\n...\n").json()["a"], 1);
  EXPECT_EQ(MustParse("%YAML 1.2\n---\na: 1\n").json()["a"], 1);
}

TEST(ConfigParse, SyntaxErrorsNameFileLineAndColumn) {
  auto r = Config::Parse("a: 1\nb: [1, 2\nc: 3\n", "recipe.yaml");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  std::string m = ErrorOf(r);
  EXPECT_EQ(m, "recipe.yaml:3:2: end of sequence flow not found");

  std::string m2 = ErrorOf(Config::Parse("a: 1\n  b: 2\n", "recipe.yaml"));
  EXPECT_THAT(m2, HasSubstr("recipe.yaml:2:"));
  EXPECT_THAT(m2, HasSubstr("illegal map value"));

  // yaml-cpp itself accepts quotes left open at the end of the text; we do not.
  EXPECT_EQ(ErrorOf(Config::Parse("a: 1\nb: \"unterminated\nc: 2\n", "recipe.yaml")),
            "recipe.yaml:2: quoted string is not closed before the end of the text");
  EXPECT_EQ(ErrorOf(Config::Parse("a: 'it''s\n", "recipe.yaml")),
            "recipe.yaml:1: quoted string is not closed before the end of the text");
  EXPECT_EQ(MustParse("a: \"multi\n  line\"\nb: 'x''y'\n").json()["a"], "multi line");

  // A syntax error after a semantic one is reported (yaml-cpp's speculative events for
  // "[1, 2" look like a list used as a key).
  EXPECT_EQ(ErrorOf(Config::Parse("[1, 2", "r.yaml")),
            "r.yaml:1:1: end of sequence flow not found");
}

TEST(ConfigParse, DuplicateKeysNameTheKeyAndBothLines) {
  std::string m = ErrorOf(Config::Parse("train:\n  lr: 1\n  steps: 3\n  lr: 2\n", "r.yaml"));
  EXPECT_EQ(m, "r.yaml:4: duplicate key 'train.lr' (first at line 2)");
  std::string top = ErrorOf(Config::Parse("a: 1\nb: 2\na: 3\n", "r.yaml"));
  EXPECT_EQ(top, "r.yaml:3: duplicate key 'a' (first at line 1)");
  std::string flow = ErrorOf(Config::Parse("x: {k: 1,\n    k: 2}\n", "r.yaml"));
  EXPECT_EQ(flow, "r.yaml:2: duplicate key 'x.k' (first at line 1)");
  std::string in_list = ErrorOf(Config::Parse("l:\n  - a: 1\n    a: 2\n", "r.yaml"));
  EXPECT_EQ(in_list, "r.yaml:3: duplicate key 'l.0.a' (first at line 2)");
  std::string js = ErrorOf(Config::Parse("{\n  \"a\": 1,\n  \"a\": 2\n}\n", "config.json"));
  EXPECT_EQ(js, "config.json:3: duplicate key 'a' (first at line 2)");
}

TEST(ConfigParse, NonStringKeysAreErrors) {
  EXPECT_THAT(ErrorOf(Config::Parse("a: 1\n1: x\n", "r.yaml")),
              HasSubstr("r.yaml:2: the top-level mapping has a non-string key 1"));
  EXPECT_THAT(ErrorOf(Config::Parse("m:\n  true: x\n", "r.yaml")),
              HasSubstr("r.yaml:2: mapping 'm' has a non-string key true"));
  EXPECT_THAT(ErrorOf(Config::Parse("m:\n  2.5: x\n", "r.yaml")),
              HasSubstr("r.yaml:2: mapping 'm' has a non-string key 2.5"));
  EXPECT_THAT(ErrorOf(Config::Parse("~: x\n", "r.yaml")), HasSubstr("r.yaml:1: "));
  EXPECT_THAT(ErrorOf(Config::Parse("~: x\n", "r.yaml")), HasSubstr("has a null key"));
  EXPECT_THAT(ErrorOf(Config::Parse("a: 1\n[x, y]: 2\n", "r.yaml")),
              HasSubstr("r.yaml:2: the top-level mapping has a key that is a list"));
  EXPECT_THAT(ErrorOf(Config::Parse("? {k: v}\n: 2\n", "r.yaml")),
              HasSubstr("has a key that is a mapping"));
  // Quoted keys are strings.
  Config c = MustParse("\"1\": x\n'true': y\n");
  EXPECT_EQ(c.json()["1"], "x");
  EXPECT_EQ(c.json()["true"], "y");
}

TEST(ConfigParse, Tags) {
  EXPECT_THAT(ErrorOf(Config::Parse("a: !!int abc\n", "r.yaml")),
              HasSubstr("r.yaml:1: key 'a': \"abc\" is not a valid !!int"));
  EXPECT_THAT(ErrorOf(Config::Parse("a: 1\nb: !custom x\n", "r.yaml")),
              HasSubstr("r.yaml:2: key 'b': unsupported tag '!custom'"));
  Config c = MustParse("a: !!bool true\nb: !!null ~\nc: !!int 0x10\nd: !!str\n");
  EXPECT_EQ(c.json()["a"], true);
  EXPECT_TRUE(c.json()["b"].is_null());
  EXPECT_EQ(c.json()["c"].get<int64_t>(), 16);
  EXPECT_EQ(c.json()["d"], "");
}

TEST(ConfigParse, AnchorsAliasesAndMergeKeys) {
  Config c = MustParse(
      "base: &base\n  temperature: 1.0\n  top_p: 0.9\n"
      "eval:\n  <<: *base\n  temperature: 0.0\n"
      "files: &f [a, b]\nagain: *f\n"
      "multi:\n  <<: [{x: 1}, {x: 2, y: 2}]\n");
  EXPECT_DOUBLE_EQ(c.json()["eval"]["temperature"].get<double>(), 0.0);  // explicit key wins
  EXPECT_DOUBLE_EQ(c.json()["eval"]["top_p"].get<double>(), 0.9);
  EXPECT_EQ(c.json()["again"], Json({"a", "b"}));
  EXPECT_EQ(c.json()["multi"]["x"].get<int64_t>(), 1);  // earlier source wins
  EXPECT_EQ(c.json()["multi"]["y"].get<int64_t>(), 2);
  // Merged and aliased values remember the line they were written on; the alias itself is
  // on the line of its key.
  EXPECT_EQ(c.OriginOf("eval.top_p").ToString(), "recipe.yaml:3");
  EXPECT_EQ(c.OriginOf("eval.temperature").ToString(), "recipe.yaml:6");
  EXPECT_EQ(c.OriginOf("again").ToString(), "recipe.yaml:8");
  EXPECT_EQ(c.OriginOf("again.1").ToString(), "recipe.yaml:7");
  EXPECT_THAT(ErrorOf(Config::Parse("a:\n  <<: 3\n", "r.yaml")),
              HasSubstr("r.yaml:2: key 'a': '<<' (merge) takes a mapping"));
}

TEST(ConfigParse, AliasBombsAndCyclesAreRejected) {
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char name = 'b'; name <= 'j'; ++name, ++prev) {
    bomb += std::string(1, name) + ": &" + name + " [";
    for (int k = 0; k < 10; ++k) bomb += std::string(k ? ", *" : "*") + prev;
    bomb += "]\n";
  }
  auto r = Config::Parse(bomb, "bomb.yaml");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(ErrorOf(r), HasSubstr("document expands to more than"));

  // yaml-cpp resolves an alias to its own enclosing anchor into a cycle.
  EXPECT_EQ(ErrorOf(Config::Parse("a: &a [*a]\n", "cycle.yaml")),
            "cycle.yaml:1: alias refers to a node that contains it (a cycle)");
  EXPECT_FALSE(Config::Parse("a: &a {b: *a}\n", "cycle.yaml").ok());
  EXPECT_FALSE(Config::Parse("a: &a {<<: *a}\n", "cycle.yaml").ok());
}

TEST(ConfigParse, DeepNestingIsRejected) {
  std::string deep_flow = "a: " + std::string(300, '[') + std::string(300, ']') + "\n";
  EXPECT_THAT(ErrorOf(Config::Parse(deep_flow, "deep.yaml")),
              HasSubstr("deep.yaml:1: nesting deeper than 256 levels"));
  std::string ok_flow = "a: " + std::string(200, '[') + std::string(200, ']') + "\n";
  EXPECT_TRUE(Config::Parse(ok_flow, "ok.yaml").ok());
  // Brackets inside quotes and comments do not count.
  std::string quoted = "a: \"" + std::string(400, '[') + "\" # " + std::string(400, '{') + "\n";
  EXPECT_EQ(MustParse(quoted).json()["a"], std::string(400, '['));

  // Exactly kMaxDepth levels are fine (the top-level mapping is level 1), and dump back.
  std::string at_limit = "a: " + std::string(255, '[') + std::string(255, ']') + "\n";
  auto limit = Config::Parse(at_limit, "limit.yaml");
  ASSERT_TRUE(limit.ok()) << limit.status().ToString();
  auto again = Config::Parse(limit->Dump(), "dump.yaml");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->json(), limit->json());
  std::string over = "a: " + std::string(256, '[') + std::string(256, ']') + "\n";
  EXPECT_THAT(ErrorOf(Config::Parse(over, "over.yaml")),
              HasSubstr("over.yaml:1: nesting deeper than 256 levels"));
  Json deep = Json::array();
  for (int i = 0; i < 256; ++i) deep = Json::array({deep});
  EXPECT_THAT(ErrorOf(Config::FromJson(Json{{"a", deep}}, "code")),
              HasSubstr("code: nesting deeper than 256 levels"));
  Config target;
  std::string long_key = "k";
  for (int i = 0; i < 256; ++i) long_key += ".k";
  EXPECT_THAT(ErrorOf(target.ApplyOverride(long_key + "=1")), HasSubstr("deeper than 256"));
  EXPECT_THAT(ErrorOf(target.ApplyOverride("a=" + std::string(300, '[') + std::string(300, ']'))),
              HasSubstr("nesting deeper than 256 levels"));

  std::string deep_block;
  for (int i = 0; i < 300; ++i) deep_block += std::string(i, ' ') + "k:\n";
  deep_block += std::string(300, ' ') + "k: 1\n";
  EXPECT_THAT(ErrorOf(Config::Parse(deep_block, "deep.yaml")),
              HasSubstr("nesting deeper than 256 levels"));
}

TEST(ConfigParse, ByteOrderMarksAndUtf16) {
  EXPECT_EQ(MustParse("\xEF\xBB\xBF" "a: \"x\"\n").json()["a"], "x");
  // UTF-16LE with a BOM: "a: 'x'\n".
  const std::string utf16("\xFF\xFE" "a\0:\0 \0'\0x\0'\0\n\0", 16);
  EXPECT_EQ(MustParse(utf16).json()["a"], "x");
}

TEST(ConfigParse, InvalidUtf8IsRejected) {
  EXPECT_THAT(ErrorOf(Config::Parse("a: 1\nb: \"x\xff\"\n", "r.yaml")),
              HasSubstr("r.yaml:2: key 'b': invalid UTF-8"));
  EXPECT_EQ(MustParse("a: \"\xc3\xa9t\xc3\xa9\"\n").json()["a"], "\xc3\xa9t\xc3\xa9");
}

TEST(ConfigParse, JsonFilesKeepIntsAndFloats) {
  const std::string text =
      "{\n"
      "  \"architectures\": [\"Qwen2ForCausalLM\"],\n"
      "  \"hidden_size\": 896,\n"
      "  \"rms_norm_eps\": 1e-06,\n"
      "  \"rope_theta\": 1000000.0,\n"
      "  \"initializer_range\": 0.02,\n"
      "  \"tie_word_embeddings\": true,\n"
      "  \"sliding_window\": null,\n"
      "  \"negative\": -3,\n"
      "  \"big\": 18446744073709551615,\n"
      "  \"rope_scaling\": {\"type\":\"yarn\",\"factor\":4.0},\n"
      "  \"path\": \"a\\/b\\\\c \\\"q\\\" \\u00e9 \\ud83d\\ude00 \\t\",\n"
      "  \"empty\": {}, \"list\": []\n"
      "}\n";
  const std::string path = TempPath("config.json");
  WriteFile(path, text);
  auto r = Config::LoadFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Json& j = r->json();
  EXPECT_EQ(j, Json::parse(text));  // same values as nlohmann's own parser
  EXPECT_TRUE(j["hidden_size"].is_number_integer());
  EXPECT_TRUE(j["rms_norm_eps"].is_number_float());
  EXPECT_TRUE(j["rope_theta"].is_number_float());
  EXPECT_TRUE(j["rope_scaling"]["factor"].is_number_float());
  EXPECT_TRUE(j["negative"].is_number_integer());
  EXPECT_TRUE(j["big"].is_number_unsigned());
  EXPECT_EQ(j["path"], "a/b\\c \"q\" \xc3\xa9 \xf0\x9f\x98\x80 \t");
  EXPECT_EQ(r->GetInt("hidden_size").value(), 896);
  EXPECT_EQ(r->OriginOf("rms_norm_eps").ToString(), path + ":4");
  EXPECT_EQ(r->name(), path);

  // Compact and tab-indented JSON load too.
  EXPECT_EQ(MustParse("{\"a\":1,\"b\":[1,2.5,\"x\"],\"c\":{\"d\":null}}", "c.json").json(),
            Json::parse("{\"a\":1,\"b\":[1,2.5,\"x\"],\"c\":{\"d\":null}}"));
  EXPECT_EQ(MustParse("{\n\t\"a\": 1,\n\t\"b\": {\n\t\t\"c\": 2\n\t}\n}\n", "t.json").json(),
            Json::parse("{\"a\":1,\"b\":{\"c\":2}}"));
}

TEST(ConfigParse, JsonLinesAndErrors) {
  // Lines come from nlohmann's byte offsets: keys, list elements (a number is followed by the
  // newline nlohmann reads past it), nested objects.
  Config c = MustParse(
      "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {\"c\": true,\n    \"d\": null}\n}\n",
      "c.json");
  EXPECT_EQ(c.OriginOf("a").ToString(), "c.json:2");
  EXPECT_EQ(c.OriginOf("a.0").ToString(), "c.json:3");
  EXPECT_EQ(c.OriginOf("a.1").ToString(), "c.json:4");
  EXPECT_EQ(c.OriginOf("b.c").ToString(), "c.json:6");
  EXPECT_EQ(c.OriginOf("b.d").ToString(), "c.json:7");
  EXPECT_EQ(ErrorOf(Config::Parse("{\"x\": {\n  \"k\": 1,\n\n  \"k\": 2}}", "c.json")),
            "c.json:4: duplicate key 'x.k' (first at line 2)");
  EXPECT_EQ(ErrorOf(Config::Parse("\n" + std::string(300, '[') + std::string(300, ']'), "d.json")),
            "d.json:2: nesting deeper than 256 levels");
  EXPECT_THAT(ErrorOf(Config::Parse("[1, 2]", "l.json")),
              HasSubstr("l.json:1: the top level must be a mapping, got a list"));
  // Not JSON: read as YAML; when that fails too, a *.json file reports the JSON error.
  EXPECT_EQ(MustParse("{a: 1, b: [x]}", "flow.json").json(), Json::parse(R"({"a":1,"b":["x"]})"));
  const std::string missing_comma = "{\n  \"a\": 1\n  \"b\": 2\n}\n";
  EXPECT_EQ(ErrorOf(Config::Parse(missing_comma, "bad.json")),
            "bad.json:3:5: syntax error while parsing object - unexpected string literal; "
            "expected '}'");
  EXPECT_THAT(ErrorOf(Config::Parse(missing_comma, "bad.yaml")),
              ::testing::StartsWith("bad.yaml:"));
  // Override values in JSON.
  Config target;
  EXPECT_EQ(ErrorOf(target.ApplyOverride("a={\"k\": 1, \"k\": 2}")),
            "--set 'a={\"k\": 1, \"k\": 2}': duplicate key 'a.k' (given twice)");
  ASSERT_TRUE(target.ApplyOverride("a={\"k\": [1, 2.5, \"\\ud83d\\ude00\"]}").ok());
  EXPECT_EQ(target.json()["a"], Json::parse(R"({"k": [1, 2.5, "\ud83d\ude00"]})"));
  EXPECT_EQ(target.OriginOf("a.k.1").ToString(), "--set");
}

TEST(ConfigLoadFile, MissingFileAndDirectory) {
  auto missing = Config::LoadFile(TempPath("does-not-exist.yaml"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ErrorOf(missing), HasSubstr("does-not-exist.yaml"));
  const char* dir = std::getenv("TEST_TMPDIR");
  auto d = Config::LoadFile(dir ? dir : "/tmp");
  EXPECT_THAT(ErrorOf(d), HasSubstr("is a directory"));
}

TEST(ConfigLoadFile, YamlFileErrorsUseThePath) {
  const std::string path = TempPath("bad.yaml");
  WriteFile(path, "a: 1\nb: [\n");
  EXPECT_THAT(ErrorOf(Config::LoadFile(path)), HasSubstr(path + ":"));
  WriteFile(path, "train:\n  lr: abc\n");
  auto c = Config::LoadFile(path);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(ErrorOf(c->GetDouble("train.lr")),
            path + ":2: key 'train.lr': expected a number, got \"abc\"");
}

// ---------------------------------------------------------------------------------------------
// Typed access.

TEST(ConfigGet, TypedValues) {
  Config c = MustParse(kRecipe);
  EXPECT_EQ(c.GetString("name").value(), "nano-r1");
  EXPECT_EQ(c.GetInt("train.steps").value(), 100);
  EXPECT_DOUBLE_EQ(c.GetDouble("train.lr").value(), 1e-5);
  EXPECT_DOUBLE_EQ(c.GetDouble("train.batch").value(), 8.0);  // ints are numbers
  EXPECT_EQ(c.GetBool("train.use_kl").value(), false);
  EXPECT_EQ(c.GetStringList("data.files").value(), (std::vector<std::string>{"a.jsonl", "b.jsonl"}));
  EXPECT_EQ(c.GetString("data.files.1").value(), "b.jsonl");
  EXPECT_TRUE(c.Has("data.seed"));
  EXPECT_TRUE(c.Has("data.files.0"));
  EXPECT_FALSE(c.Has("data.files.2"));
  EXPECT_FALSE(c.Has("train.nope"));
  EXPECT_FALSE(c.Has("name.x"));
  EXPECT_FALSE(c.Has("a..b"));
}

TEST(ConfigGet, ErrorsNameKeyAndLine) {
  std::string text;
  for (int i = 1; i <= 10; ++i) text += "# line " + std::to_string(i) + "\n";
  text += "train:\n  lr: abc\n";  // lines 11, 12
  Config c = MustParse(text);
  EXPECT_EQ(ErrorOf(c.GetDouble("train.lr")),
            "recipe.yaml:12: key 'train.lr': expected a number, got \"abc\"");
  EXPECT_EQ(c.GetDouble("train.lr").status().code(), absl::StatusCode::kInvalidArgument);

  Config r = MustParse(kRecipe);
  EXPECT_EQ(ErrorOf(r.GetInt("train.clip")),
            "recipe.yaml:10: key 'train.clip': expected an integer, got 0.2 (not a whole number)");
  EXPECT_EQ(ErrorOf(r.GetBool("data.answer")),
            "recipe.yaml:19: key 'data.answer': expected a boolean, got \"yes\" (write true or "
            "false)");
  EXPECT_EQ(ErrorOf(r.GetString("train.steps")),
            "recipe.yaml:7: key 'train.steps': expected a string, got 100 (quote it to make it a "
            "string)");
  EXPECT_EQ(ErrorOf(r.GetString("model")),
            "recipe.yaml:3: key 'model': expected a string, got a mapping");
  EXPECT_EQ(ErrorOf(r.GetStringList("data.mixed")),
            "recipe.yaml:20: key 'data.mixed.1': expected a string, got 3");
  EXPECT_EQ(ErrorOf(r.GetStringList("name")),
            "recipe.yaml:2: key 'name': expected a list of strings, got \"nano-r1\"");
  EXPECT_EQ(ErrorOf(r.GetInt("data.seed")),
            "recipe.yaml:18: key 'data.seed': expected an integer, got null");

  auto missing = r.GetInt("train.warmup");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorOf(missing), "recipe.yaml:6: key 'train.warmup' is missing");
  EXPECT_EQ(ErrorOf(r.GetInt("nope")), "recipe.yaml: key 'nope' is missing");
  EXPECT_EQ(ErrorOf(r.GetInt("name.x")),
            "recipe.yaml:2: key 'name.x': 'name' is a string, not a mapping");
  EXPECT_EQ(ErrorOf(r.GetString("data.files.x")),
            "recipe.yaml:14: key 'data.files.x': 'data.files' is a list and 'x' is not an index");
  EXPECT_EQ(ErrorOf(r.GetString("data.files.7")),
            "recipe.yaml:14: key 'data.files.7' is missing");
  EXPECT_THAT(ErrorOf(r.GetInt("a..b")), HasSubstr("empty key between dots"));
}

TEST(ConfigGet, IntegerRangeAndWholeFloats) {
  Config c = MustParse(
      "whole: 1e6\nneg: -2.0\nbig: 9223372036854775808\nmax: 9223372036854775807\n"
      "min: -9223372036854775808\nhuge: 1e30\ninf: .inf\nu: 18446744073709551615\n");
  EXPECT_EQ(c.GetInt("whole").value(), 1000000);
  EXPECT_EQ(c.GetInt("neg").value(), -2);
  EXPECT_EQ(c.GetInt("max").value(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(c.GetInt("min").value(), std::numeric_limits<int64_t>::min());
  auto big = c.GetInt("big");
  EXPECT_EQ(big.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ErrorOf(big),
            "recipe.yaml:3: key 'big': integer 9223372036854775808 is out of range for int64");
  EXPECT_EQ(ErrorOf(c.GetInt("huge")),
            "recipe.yaml:6: key 'huge': integer 1e+30 is out of range for int64");
  EXPECT_THAT(ErrorOf(c.GetInt("inf")), HasSubstr("expected an integer, got .inf"));
  EXPECT_THAT(ErrorOf(c.GetInt("u")), HasSubstr("out of range"));
  EXPECT_DOUBLE_EQ(c.GetDouble("u").value(), 18446744073709551615.0);
  EXPECT_THAT(ErrorOf(Config::Parse("x: 1e999\n", "r.yaml")),
              HasSubstr("r.yaml:1: key 'x': number 1e999 is out of range"));
  EXPECT_EQ(MustParse("x: 1e-999\n").GetDouble("x").value(), 0.0);
}

TEST(ConfigGet, OrVariantsReturnTheDefaultOnlyWhenAbsentOrNull) {
  Config c = MustParse(kRecipe);
  EXPECT_EQ(c.GetIntOr("train.warmup", 7).value(), 7);
  EXPECT_EQ(c.GetIntOr("train.steps", 7).value(), 100);
  EXPECT_EQ(c.GetIntOr("data.seed", 42).value(), 42);  // null counts as absent
  EXPECT_EQ(c.GetIntOr("nothing.at.all", 1).value(), 1);
  EXPECT_DOUBLE_EQ(c.GetDoubleOr("train.clip", 1.0).value(), 0.2);
  EXPECT_DOUBLE_EQ(c.GetDoubleOr("train.clip_high", 0.28).value(), 0.28);
  EXPECT_EQ(c.GetBoolOr("train.use_kl", true).value(), false);
  EXPECT_EQ(c.GetBoolOr("train.bf16", true).value(), true);
  EXPECT_EQ(c.GetStringOr("model.dtype", "f32").value(), "bf16");
  EXPECT_EQ(c.GetStringOr("model.revision", "main").value(), "main");
  EXPECT_EQ(c.GetStringListOr("data.files", {}).value().size(), 2u);
  EXPECT_EQ(c.GetStringListOr("data.extra", {"x"}).value(), std::vector<std::string>{"x"});
  // A wrong type is still an error.
  EXPECT_EQ(ErrorOf(c.GetIntOr("name", 3)),
            "recipe.yaml:2: key 'name': expected an integer, got \"nano-r1\"");
  EXPECT_THAT(ErrorOf(c.GetDoubleOr("model.path", 1.0)), HasSubstr("recipe.yaml:4:"));
  EXPECT_THAT(ErrorOf(c.GetBoolOr("train.steps", false)), HasSubstr("recipe.yaml:7:"));
  EXPECT_THAT(ErrorOf(c.GetStringOr("train", "")), HasSubstr("recipe.yaml:6:"));
  EXPECT_THAT(ErrorOf(c.GetStringListOr("data.mixed", {})), HasSubstr("recipe.yaml:20:"));
  // So is walking into a scalar.
  EXPECT_EQ(ErrorOf(c.GetIntOr("name.x", 1)),
            "recipe.yaml:2: key 'name.x': 'name' is a string, not a mapping");
}

TEST(ConfigSub, KeepsOriginsAndReportsFullPaths) {
  Config c = MustParse(kRecipe);
  auto train = c.Sub("train");
  ASSERT_TRUE(train.ok());
  EXPECT_EQ(train->prefix(), "train");
  EXPECT_EQ(train->GetInt("steps").value(), 100);
  EXPECT_EQ(train->OriginOf("lr").ToString(), "recipe.yaml:8");
  EXPECT_EQ(ErrorOf(train->GetInt("clip")),
            "recipe.yaml:10: key 'train.clip': expected an integer, got 0.2 (not a whole number)");
  EXPECT_EQ(ErrorOf(train->GetInt("warmup")), "recipe.yaml:6: key 'train.warmup' is missing");
  EXPECT_EQ(train->Error("lr", "must be positive").message(),
            "recipe.yaml:8: key 'train.lr': must be positive");
  EXPECT_EQ(train->json(), c.json()["train"]);

  EXPECT_EQ(ErrorOf(c.Sub("name")), "recipe.yaml:2: key 'name': expected a mapping, got \"nano-r1\"");
  EXPECT_EQ(c.Sub("absent").status().code(), absl::StatusCode::kNotFound);

  // Sub of a sub.
  Config nested = MustParse("a:\n  b:\n    c: x\n");
  auto b = nested.Sub("a").value().Sub("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(ErrorOf(b->GetInt("c")), "recipe.yaml:3: key 'a.b.c': expected an integer, got \"x\"");
}

TEST(ConfigSub, SubListOfMappings) {
  Config c = MustParse(
      "rewards:\n  - name: accuracy\n    weight: 1.0\n  - name: format\n    weight: x\n"
      "bad: [1]\n");
  auto list = c.SubList("rewards");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].GetString("name").value(), "accuracy");
  EXPECT_EQ(ErrorOf((*list)[1].GetDouble("weight")),
            "recipe.yaml:5: key 'rewards.1.weight': expected a number, got \"x\"");
  EXPECT_EQ(ErrorOf(c.SubList("bad")), "recipe.yaml:6: key 'bad.0': expected a mapping, got 1");
  EXPECT_THAT(ErrorOf(c.SubList("rewards.0")), HasSubstr("expected a list of mappings"));
}

TEST(ConfigFromJson, WrapsATree) {
  auto c = Config::FromJson(Json{{"a", {{"b", 2}}}}, "defaults");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->GetInt("a.b").value(), 2);
  EXPECT_EQ(ErrorOf(c->GetString("a.b")),
            "defaults: key 'a.b': expected a string, got 2 (quote it to make it a string)");
  EXPECT_FALSE(Config::FromJson(Json::array(), "x").ok());
  EXPECT_FALSE(Config::FromJson(Json{{"a", "\xff"}}, "x").ok());
  Config empty;
  EXPECT_TRUE(empty.json().is_object());
  EXPECT_EQ(empty.Dump(), "{}\n");
}

// ---------------------------------------------------------------------------------------------
// Overrides.

TEST(ConfigOverride, ValueKinds) {
  Config c = MustParse(kRecipe);
  ASSERT_TRUE(c.ApplyOverrides({
                   "train.steps=3",
                   "train.lr=3.5",
                   "train.use_kl=true",
                   "data.seed=null",
                   "data.files=[1,2]",
                   "model.extra={x: 1, y: [a]}",
                   "name=\"quoted: yes\"",
                   "model.dtype=f32",
                   "prompt=Answer: 42 # not a comment",
                   "single='it''s'",
                   "empty=",
                   "hex=0x10",
                   "tagged=!!str 3",
                   "  spaced.key  =  padded value  ",
               })
                  .ok());
  const Json& j = c.json();
  EXPECT_EQ(j["train"]["steps"], 3);
  EXPECT_TRUE(j["train"]["steps"].is_number_integer());
  EXPECT_TRUE(j["train"]["lr"].is_number_float());
  EXPECT_DOUBLE_EQ(j["train"]["lr"].get<double>(), 3.5);
  EXPECT_EQ(j["train"]["use_kl"], true);
  EXPECT_TRUE(j["data"]["seed"].is_null());
  EXPECT_EQ(j["data"]["files"], Json({1, 2}));
  EXPECT_EQ(j["model"]["extra"], Json::parse(R"({"x": 1, "y": ["a"]})"));
  EXPECT_EQ(j["name"], "quoted: yes");
  EXPECT_EQ(j["model"]["dtype"], "f32");
  EXPECT_EQ(j["prompt"], "Answer: 42 # not a comment");
  EXPECT_EQ(j["single"], "it's");
  EXPECT_TRUE(j["empty"].is_null());
  EXPECT_EQ(j["hex"], 16);
  EXPECT_EQ(j["tagged"], "3");
  EXPECT_EQ(j["spaced"]["key"], "padded value");
}

TEST(ConfigOverride, CreatesMapsAndIndexesLists) {
  Config c = MustParse(kRecipe);
  ASSERT_TRUE(c.ApplyOverride("a.b.c=1").ok());
  EXPECT_EQ(c.json()["a"]["b"]["c"], 1);
  ASSERT_TRUE(c.ApplyOverride("data.files.0=x.jsonl").ok());
  EXPECT_EQ(c.json()["data"]["files"], Json({"x.jsonl", "b.jsonl"}));
  ASSERT_TRUE(c.ApplyOverride("data.seed.inner=1").ok());  // a null becomes a mapping
  EXPECT_EQ(c.json()["data"]["seed"]["inner"], 1);
  ASSERT_TRUE(c.ApplyOverride("l=[{k: 1}, {k: 2}]").ok());
  ASSERT_TRUE(c.ApplyOverride("l.1.k=5").ok());
  EXPECT_EQ(c.json()["l"][1]["k"], 5);
  ASSERT_TRUE(c.ApplyOverride("l.0.new.deep=5").ok());
  EXPECT_EQ(c.json()["l"][0]["new"]["deep"], 5);

  EXPECT_EQ(ErrorOf(c.ApplyOverride("data.files.2=y")),
            "--set 'data.files.2=y': index 2 is out of range, 'data.files' has 2 elements");
  EXPECT_EQ(ErrorOf(c.ApplyOverride("data.files.x=y")),
            "--set 'data.files.x=y': 'data.files' is a list and 'x' is not an index");
  EXPECT_EQ(ErrorOf(c.ApplyOverride("data.files.-1=y")),
            "--set 'data.files.-1=y': 'data.files' is a list and '-1' is not an index");
  EXPECT_EQ(ErrorOf(c.ApplyOverride("l.9.k=1")),
            "--set 'l.9.k=1': index 9 is out of range, 'l' has 2 elements");
  EXPECT_EQ(ErrorOf(c.ApplyOverride("train.steps.x=1")),
            "--set 'train.steps.x=1': cannot set 'train.steps.x': 'train.steps' is an integer "
            "(recipe.yaml:7), not a mapping");
  EXPECT_EQ(ErrorOf(c.ApplyOverride("name.a.b=1")),
            "--set 'name.a.b=1': cannot set 'name.a.b': 'name' is a string (recipe.yaml:2), not "
            "a mapping");
  // Failed overrides change nothing.
  EXPECT_EQ(c.json()["train"]["steps"], 100);
  EXPECT_EQ(c.json()["name"], "nano-r1");
}

TEST(ConfigOverride, MalformedAssignments) {
  Config c = MustParse(kRecipe);
  EXPECT_EQ(ErrorOf(c.ApplyOverride("train.lr")), "--set 'train.lr': expected key=value");
  EXPECT_EQ(ErrorOf(c.ApplyOverride("=3")), "--set '=3': empty key before '='");
  EXPECT_EQ(ErrorOf(c.ApplyOverride("  =3")), "--set '  =3': empty key before '='");
  EXPECT_THAT(ErrorOf(c.ApplyOverride("a..b=3")), HasSubstr("empty key between dots"));
  EXPECT_THAT(ErrorOf(c.ApplyOverride(".a=3")), HasSubstr("empty key between dots"));
  EXPECT_THAT(ErrorOf(c.ApplyOverride("a=[1, 2")),
              HasSubstr("--set 'a=[1, 2': column 1: end of sequence flow not found"));
  EXPECT_THAT(ErrorOf(c.ApplyOverride("a={k: 1, k: 2}")),
              HasSubstr("duplicate key 'a.k'"));
  EXPECT_THAT(ErrorOf(c.ApplyOverride("a=!!int x")), HasSubstr("is not a valid !!int"));
  EXPECT_THAT(ErrorOf(c.ApplyOverride("a=1e999")), HasSubstr("out of range"));
  EXPECT_FALSE(c.Has("a"));
  // ApplyOverrides stops at the first error.
  absl::Status s = c.ApplyOverrides({"x=1", "bad", "y=2"});
  EXPECT_EQ(ErrorOf(s), "--set 'bad': expected key=value");
  EXPECT_TRUE(c.Has("x"));
  EXPECT_FALSE(c.Has("y"));
}

TEST(ConfigOverride, OverriddenValuesReportSetAsOrigin) {
  Config c = MustParse(kRecipe);
  ASSERT_TRUE(c.ApplyOverride("train.lr=abc").ok());
  EXPECT_EQ(ErrorOf(c.GetDouble("train.lr")),
            "--set: key 'train.lr': expected a number, got \"abc\"");
  ASSERT_TRUE(c.ApplyOverride("model={path: p, size: big}").ok());
  EXPECT_EQ(ErrorOf(c.GetInt("model.size")),
            "--set: key 'model.size': expected an integer, got \"big\"");
  EXPECT_FALSE(c.Has("model.dtype"));  // the whole subtree was replaced
  EXPECT_EQ(c.OriginOf("model.path").ToString(), "--set");
  EXPECT_EQ(c.OriginOf("train.steps").ToString(), "recipe.yaml:7");
  // And in a Sub.
  EXPECT_EQ(ErrorOf(c.Sub("model").value().GetInt("path")),
            "--set: key 'model.path': expected an integer, got \"p\"");
  // Overrides on a Sub use paths relative to it and report full paths.
  Config train = c.Sub("train").value();
  EXPECT_EQ(ErrorOf(train.ApplyOverride("steps.x=1")),
            "--set 'steps.x=1': cannot set 'train.steps.x': 'train.steps' is an integer "
            "(recipe.yaml:7), not a mapping");
}

// ---------------------------------------------------------------------------------------------
// Schema checks.

const std::vector<std::string> kSchema = {
    "name",          "model.path",   "model.dtype",  "model.overrides", "train.steps",
    "train.lr",      "train.batch",  "train.clip",   "train.kl",        "train.use_kl",
    "data.files",    "data.shuffle", "data.seed",    "data.answer",     "data.mixed",
    "rewards.*.name", "rewards.*.weight",
};

TEST(ConfigSchema, AcceptsKnownKeys) {
  Config c = MustParse(std::string(kRecipe) +
                       "rewards:\n  - name: a\n    weight: 1\n"
                       "model_extra: 1\n");
  EXPECT_EQ(ErrorOf(c.CheckKnownKeys(kSchema)),
            "recipe.yaml:24: unknown key 'model_extra'");
  Config ok = MustParse(std::string(kRecipe) + "rewards:\n  - name: a\n    weight: 1\n");
  EXPECT_TRUE(ok.CheckKnownKeys(kSchema).ok()) << ok.CheckKnownKeys(kSchema).ToString();
  // Everything beneath an allowed path is free-form.
  ASSERT_TRUE(ok.ApplyOverride("model.overrides={rope_theta: 1e6, anything: {deep: 1}}").ok());
  EXPECT_TRUE(ok.CheckKnownKeys(kSchema).ok());
}

TEST(ConfigSchema, TyposFailWithLineAndSuggestion) {
  Config c = MustParse("name: x\ntrain:\n  steps: 3\n  lrr: 1\n");
  EXPECT_EQ(ErrorOf(c.CheckKnownKeys(kSchema)),
            "recipe.yaml:4: unknown key 'train.lrr' (did you mean 'train.lr'?)");
  Config swapped = MustParse("trian:\n  lr: 1\n");
  EXPECT_EQ(ErrorOf(swapped.CheckKnownKeys(kSchema)),
            "recipe.yaml:1: unknown key 'trian' (did you mean 'train'?)");
  Config far = MustParse("name: x\ncompletely_different: 1\n");
  EXPECT_EQ(ErrorOf(far.CheckKnownKeys(kSchema)),
            "recipe.yaml:2: unknown key 'completely_different'");
  Config misplaced = MustParse("lr: 1\n");
  EXPECT_EQ(ErrorOf(misplaced.CheckKnownKeys(kSchema)),
            "recipe.yaml:1: unknown key 'lr' (did you mean 'train.lr'?)");
  Config in_list = MustParse("rewards:\n  - name: a\n    wieght: 2\n");
  EXPECT_EQ(ErrorOf(in_list.CheckKnownKeys(kSchema)),
            "recipe.yaml:3: unknown key 'rewards.0.wieght' (did you mean 'rewards.0.weight'?)");
  // The first in file order is reported, with a count of the rest.
  Config many = MustParse("zzz: 1\ntrain:\n  stesp: 1\naaa: 2\n");
  EXPECT_EQ(ErrorOf(many.CheckKnownKeys(kSchema)),
            "recipe.yaml:1: unknown key 'zzz' (and 2 more unknown keys)");
  // Unknown keys from overrides.
  Config over = MustParse("name: x\n");
  ASSERT_TRUE(over.ApplyOverride("train.lrr=1").ok());
  EXPECT_EQ(ErrorOf(over.CheckKnownKeys(kSchema)),
            "--set: unknown key 'train.lrr' (did you mean 'train.lr'?)");
  // On a Sub, allowed paths are relative and messages use full paths.
  Config sub = c.Sub("train").value();
  EXPECT_EQ(ErrorOf(sub.CheckKnownKeys({"steps", "lr"})),
            "recipe.yaml:4: unknown key 'train.lrr' (did you mean 'train.lr'?)");
}

// ---------------------------------------------------------------------------------------------
// Dump.

TEST(ConfigDump, BlockYamlWithSortedKeys) {
  Config c = MustParse(
      "z: 1\na: 1.0\nm:\n  s: hello world\n  t: \"true\"\n  n: ~\n  e: []\n  o: {}\n"
      "l:\n  - x\n  - {k: 1, j: [1, 2]}\n  - [a, [b]]\n  - \"123\"\n"
      "q: \"line\\nbreak \\\"quoted\\\" \\\\\"\n");
  const std::string expected =
      "a: 1.0\n"
      "l:\n"
      "  - x\n"
      "  - j:\n"
      "      - 1\n"
      "      - 2\n"
      "    k: 1\n"
      "  -\n"  // yaml-cpp's emitter starts a list inside a list on its own line
      "    - a\n"
      "    -\n"
      "      - b\n"
      "  - \"123\"\n"
      "m:\n"
      "  e: []\n"
      "  n: null\n"
      "  o: {}\n"
      "  s: \"hello world\"\n"
      "  t: \"true\"\n"
      "q: \"line\\nbreak \\\"quoted\\\" \\\\\"\n"
      "z: 1\n";
  EXPECT_EQ(c.Dump(), expected);
  std::string where;
  EXPECT_TRUE(StrictEqual(MustParse(c.Dump()).json(), c.json(), &where)) << where;
}

TEST(ConfigDump, TrickyStringsRoundTrip) {
  Json tree = Json::object();
  const std::vector<std::string> tricky = {
      "", "true", "False", "null", "~", "123", "-1", "1.5", "1e5", ".inf", ".nan", "0x1F",
      "0o7", "yes", "<<", "- x", "? x", ": x", "#c", "a #b", "a: b", "[x]", "{x}", "&a", "*a",
      "!t", "|", ">", "%", "@", "`", "'", "\"", "\\", "...", "---", "  lead", "trail  ", "\t",
      "\n", "\r\n", std::string("\0z", 2), "\x7f", "\xc2\x85", "\xe2\x80\xa8", "\xef\xbb\xbf",
      "\xc3\xa9", "\xf0\x9f\x98\x80", "\xef\xbf\xbe", "a.b", "/abs/path", "x-y", "1.2.3",
  };
  for (size_t i = 0; i < tricky.size(); ++i) {
    tree["v" + std::to_string(i)] = tricky[i];
    tree[tricky[i]] = static_cast<int64_t>(i);
  }
  tree[std::string(3000, 'k')] = Json{{"inner", 1}};
  tree[std::string(1500, '\x01')] = Json::array({1, Json{{std::string(2000, ' '), "v"}}});
  tree["floats"] = Json::array({0.0, -0.0, 1.0, 0.1, 1e300, 5e-324, 1.7976931348623157e308,
                                std::numeric_limits<double>::infinity(),
                                -std::numeric_limits<double>::infinity()});
  tree["ints"] = Json::array({std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max(),
                              std::numeric_limits<uint64_t>::max()});
  auto c = Config::FromJson(tree, "tricky");
  ASSERT_TRUE(c.ok());
  std::string dumped = c->Dump();
  auto back = Config::Parse(dumped, "dump.yaml");
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << dumped;
  std::string where;
  EXPECT_TRUE(StrictEqual(back->json(), tree, &where)) << where << "\n" << dumped;
}

TEST(ConfigDump, NoncharactersAndLongKeysRoundTrip) {
  // yaml-cpp's emitter would write noncharacters as U+FFFD; Dump escapes them instead.
  const std::vector<std::string> strings = {
      "\xef\xb7\x90",          // U+FDD0
      "a\xef\xbf\xbf" "b",     // U+FFFF
      "\xf0\x9f\xbf\xbe",      // U+1FFFE
      "\xf4\x8f\xbf\xbf",      // U+10FFFF
      "\xee\x80\x80" "000041",  // U+E000 (the marker Dump uses) and hex digits
      "\xee\x80\x80\xef\xb7\x90\xee\x80\x80",
  };
  Json tree = Json::object();
  for (size_t i = 0; i < strings.size(); ++i) {
    tree["v" + std::to_string(i)] = strings[i];
    tree[strings[i]] = static_cast<int64_t>(i);
  }
  // Keys whose quoted form is longer than the 1024 characters yaml-cpp reads as a simple key.
  tree[std::string(300, '\x01')] = 1;
  tree[std::string(1023, 'k')] = 2;
  tree[std::string(201, 'k')] = Json::array({Json::object(), Json::array()});
  auto c = Config::FromJson(tree, "tree");
  ASSERT_TRUE(c.ok());
  const std::string dumped = c->Dump();
  EXPECT_THAT(dumped, HasSubstr("v0: \"\\U0000FDD0\"\n"));
  auto back = Config::Parse(dumped, "dump.yaml");
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << dumped;
  std::string where;
  EXPECT_TRUE(StrictEqual(back->json(), tree, &where)) << where << "\n" << dumped;
  EXPECT_EQ(back->Dump(), dumped);
}

// ---------------------------------------------------------------------------------------------
// Property: Dump then Parse gives the same tree.

class TreeGen {
 public:
  explicit TreeGen(uint32_t seed) : rng_(seed) {}

  Json Tree() {
    Json obj = Json::object();
    int n = Uniform(0, 6);
    for (int i = 0; i < n; ++i) obj[String()] = Value(0);
    return obj;
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  std::string String() {
    static const std::vector<std::string> kPieces = {
        "a", "b", "z", "lr", "0", "7", "-", ".", " ", ":", "#", "'", "\"", "\\", "\n", "\t",
        "[", "]", "{", "}", ",", "&", "*", "!", "|", ">", "?", "%", "@", "`", "~", "true",
        "null", "1e5", ".inf", "<<", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "\xe2\x80\xa8", "\xc2\x85", std::string(1, '\0'), "\x01", "\x7f", "---", "...", "0x1F"};
    int kind = Uniform(0, 3);
    if (kind == 0) {
      // Identifier-like (the common case in real configs).
      static const char kChars[] = "abcdefghijklmnopqrstuvwxyz_0123456789./-";
      std::string s;
      int len = Uniform(1, 10);
      for (int i = 0; i < len; ++i) s += kChars[Uniform(0, sizeof(kChars) - 2)];
      return s;
    }
    std::string s;
    int len = Uniform(0, 5);
    for (int i = 0; i < len; ++i) s += kPieces[Uniform(0, kPieces.size() - 1)];
    return s;
  }

  double Double() {
    switch (Uniform(0, 6)) {
      case 0: return Uniform(-1000, 1000) / 8.0;
      case 1: return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
      case 2: {
        // Any finite bit pattern, subnormals included.
        uint64_t bits = std::uniform_int_distribution<uint64_t>()(rng_);
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return std::isfinite(d) ? d : 1.5;
      }
      case 3: return Uniform(0, 1) ? std::numeric_limits<double>::infinity()
                                   : -std::numeric_limits<double>::infinity();
      case 4: return Uniform(0, 1) ? 0.0 : -0.0;
      case 5: return std::pow(10.0, Uniform(-300, 300));
      default: return static_cast<double>(Uniform(-5, 5));  // whole floats stay floats
    }
  }

  Json Value(int depth) {
    int kind = Uniform(0, depth >= 4 ? 5 : 7);
    switch (kind) {
      case 0: return nullptr;
      case 1: return Uniform(0, 1) == 1;
      case 2: {
        switch (Uniform(0, 3)) {
          case 0: return static_cast<int64_t>(Uniform(-100, 100));
          case 1: return std::uniform_int_distribution<int64_t>(
                             std::numeric_limits<int64_t>::min(),
                             std::numeric_limits<int64_t>::max())(rng_);
          case 2: return std::numeric_limits<int64_t>::min();
          default: return std::uniform_int_distribution<uint64_t>(
                              uint64_t{1} << 63, std::numeric_limits<uint64_t>::max())(rng_);
        }
      }
      case 3: return Double();
      case 4:
      case 5: return String();
      case 6: {
        Json arr = Json::array();
        int n = Uniform(0, 4);
        for (int i = 0; i < n; ++i) arr.push_back(Value(depth + 1));
        return arr;
      }
      default: {
        Json obj = Json::object();
        int n = Uniform(0, 4);
        for (int i = 0; i < n; ++i) obj[String()] = Value(depth + 1);
        return obj;
      }
    }
  }

  std::mt19937_64 rng_;
};

TEST(ConfigProperty, DumpThenParseGivesAnEqualTree) {
  TreeGen gen(20240601);
  for (int i = 0; i < 1000; ++i) {
    Json tree = gen.Tree();
    auto c = Config::FromJson(tree, "random");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    std::string dumped = c->Dump();
    auto back = Config::Parse(dumped, "dump.yaml");
    ASSERT_TRUE(back.ok()) << "tree " << i << ": " << back.status().ToString() << "\n"
                           << dumped;
    std::string where;
    ASSERT_TRUE(StrictEqual(back->json(), tree, &where))
        << "tree " << i << " differs at " << where << "\n" << dumped;
    // Dumping is stable.
    ASSERT_EQ(back->Dump(), dumped);
  }
}

// JSON written by nlohmann (compact, indented, ASCII-escaped with surrogate pairs) reads back
// as the same tree through the YAML path.
Json NormalizeInts(const Json& v) {
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Json(static_cast<int64_t>(v.get<uint64_t>()));
  }
  if (v.is_object()) {
    Json out = Json::object();
    for (auto it = v.begin(); it != v.end(); ++it) out[it.key()] = NormalizeInts(it.value());
    return out;
  }
  if (v.is_array()) {
    Json out = Json::array();
    for (const auto& e : v) out.push_back(NormalizeInts(e));
    return out;
  }
  return v;
}

TEST(ConfigProperty, JsonTextMatchesNlohmann) {
  TreeGen gen(777);
  for (int i = 0; i < 500; ++i) {
    Json tree = gen.Tree();
    const std::string texts[] = {
        tree.dump(),
        tree.dump(2),
        tree.dump(1, '\t', /*ensure_ascii=*/true),
    };
    for (const std::string& text : texts) {
      Json expected = NormalizeInts(Json::parse(text));  // inf/nan were written as null
      auto c = Config::Parse(text, "config.json");
      ASSERT_TRUE(c.ok()) << c.status().ToString() << "\n" << text;
      std::string where;
      ASSERT_TRUE(StrictEqual(c->json(), expected, &where)) << where << "\n" << text;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Robustness: random and mutated inputs give an error or a config, never a crash.

TEST(ConfigRobustness, RandomAndMutatedYamlNeverCrash) {
  const std::vector<std::string> seeds = {
      kRecipe,
      "a: &x {b: [1, 2, *x]}\n",
      "{\"a\": [1, 2.5, \"s\", null, true], \"b\": {\"c\": \"\\u00e9\\ud83d\\ude00\"}}",
      "l:\n  - a: 1\n    b: [x, {y: z}]\n  - - n\n    - m\n",
      "base: &b {t: 1}\nuse:\n  <<: *b\n  u: 2\n",
      "s: |\n  literal\n  text\nf: >\n  folded\n  text\n",
      "? complex\n: value\n'q': \"d\"\n!!str t: !!int 3\n",
      "%YAML 1.2\n---\na: 1\n...\n",
  };
  const std::string kSpecial = "[]{}:,-?&*!|>'\"#%@`\\\n\t .0123456789~<";
  std::mt19937 rng(12345);
  auto uniform = [&](size_t lo, size_t hi) {
    return std::uniform_int_distribution<size_t>(lo, hi)(rng);
  };
  int parsed = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s;
    if (iter % 5 == 0) {
      // Purely random bytes, biased to YAML syntax.
      size_t len = uniform(0, 200);
      for (size_t i = 0; i < len; ++i) {
        s += uniform(0, 3) == 0 ? static_cast<char>(uniform(0, 255))
                                : kSpecial[uniform(0, kSpecial.size() - 1)];
      }
    } else {
      s = seeds[uniform(0, seeds.size() - 1)];
      size_t mutations = uniform(1, 8);
      for (size_t m = 0; m < mutations; ++m) {
        size_t pos = s.empty() ? 0 : uniform(0, s.size() - 1);
        switch (uniform(0, 4)) {
          case 0:
            if (!s.empty()) s[pos] = kSpecial[uniform(0, kSpecial.size() - 1)];
            break;
          case 1: s.insert(pos, 1, kSpecial[uniform(0, kSpecial.size() - 1)]); break;
          case 2:
            if (!s.empty()) s.erase(pos, uniform(1, 8));
            break;
          case 3: {
            if (s.empty()) break;
            size_t len = uniform(1, std::min<size_t>(32, s.size() - pos));
            s.insert(uniform(0, s.size()), s.substr(pos, len));
            break;
          }
          default:
            if (!s.empty()) s[pos] = static_cast<char>(uniform(0, 255));
            break;
        }
      }
    }
    auto c = Config::Parse(s, "fuzz.yaml");
    if (c.ok()) {
      ++parsed;
      // Whatever parses dumps and parses back to the same tree.
      auto back = Config::Parse(c->Dump(), "dump.yaml");
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      std::string where;
      ASSERT_TRUE(StrictEqual(back->json(), c->json(), &where)) << where;
      (void)c->ApplyOverride(s.substr(0, 40));
      (void)c->CheckKnownKeys(kSchema);
    } else {
      EXPECT_FALSE(c.status().message().empty());
    }
    Config target;
    (void)target.ApplyOverride("k=" + s);
    (void)target.ApplyOverride(s);
  }
  EXPECT_GT(parsed, 100);  // the mutations leave plenty of valid documents
}

}  // namespace
}  // namespace grpo
