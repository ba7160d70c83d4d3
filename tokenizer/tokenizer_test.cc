#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/test_tokenizer.h"
#include "tokenizer/unicode.h"

namespace grpo::tokenizer {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

Tokenizer Make(const json& tj = testing::TinyTokenizer(), const json& cj = testing::TinyConfig()) {
  auto t = Tokenizer::FromJson(tj.dump(), cj.dump());
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return *t;
}

Ids Enc(const Tokenizer& t, const std::string& s, EncodeOptions o = {}) {
  auto r = t.Encode(s, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Ids{};
}

TEST(Tokenizer, BpeMergesByRank) {
  Tokenizer t = Make();
  EXPECT_EQ(Enc(t, "hello"), (Ids{259}));
  EXPECT_EQ(Enc(t, "hello world"), (Ids{259, 264}));
  EXPECT_EQ(Enc(t, "aaa"), (Ids{265, 'a'}));          // equal ranks: leftmost first
  EXPECT_EQ(Enc(t, "hellohe"), (Ids{259, 256}));
  EXPECT_EQ(Enc(t, "wor"), (Ids{'w', 261}));
  EXPECT_EQ(Enc(t, ""), Ids{});
}

TEST(Tokenizer, BothMergeFormatsAgree) {
  Tokenizer strings = Make(testing::TinyTokenizer(false));
  Tokenizer pairs = Make(testing::TinyTokenizer(true));
  for (const char* s : {"hello world", "aaaa hell", "Ġ"}) EXPECT_EQ(Enc(strings, s), Enc(pairs, s)) << s;
}

TEST(Tokenizer, AddedTokensBeforePreTokenization) {
  Tokenizer t = Make();
  EXPECT_EQ(Enc(t, "hello<|im_end|>hello"), (Ids{259, 300, 259}));
  EXPECT_EQ(Enc(t, "<|im_end|><|endoftext|>"), (Ids{300, 301}));
  // lstrip/rstrip swallow the whitespace beside <x>.
  EXPECT_EQ(Enc(t, "hello  <x>  hello"), (Ids{259, 302, 259}));
  // Turned off, the same text is ordinary bytes.
  EXPECT_EQ(Enc(t, "<|im_end|>", {.match_added_tokens = false}).size(), 10u);  // bytes
  EXPECT_EQ(Enc(t, "<|im_end|"), Enc(t, "<|im_end|", {.match_added_tokens = false}));
}

TEST(Tokenizer, AddSpecialTokens) {
  json cj = testing::TinyConfig();
  Tokenizer qwen = Make(testing::TinyTokenizer(), cj);
  EXPECT_EQ(Enc(qwen, "hello", {.add_special_tokens = true}), (Ids{259}));  // Qwen adds nothing
  cj["tokenizer_class"] = "LlamaTokenizerFast";
  cj["add_bos_token"] = true;
  Tokenizer llama = Make(testing::TinyTokenizer(), cj);
  EXPECT_EQ(Enc(llama, "hello", {.add_special_tokens = true}), (Ids{303, 259}));
  EXPECT_EQ(Enc(llama, "hello"), (Ids{259}));
  json tj = testing::TinyTokenizer();
  tj["post_processor"] = json{{"type", "TemplateProcessing"},
                              {"single", json::array({json{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                      json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                      json{{"SpecialToken", {{"id", "<|im_end|>"}, {"type_id", 0}}}}})},
                              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {303}}, {"tokens", {"<s>"}}}},
                                                  {"<|im_end|>", {{"id", "<|im_end|>"}, {"ids", {300}}, {"tokens", {"<|im_end|>"}}}}}}};
  Tokenizer templ = Make(tj);
  EXPECT_EQ(Enc(templ, "hello", {.add_special_tokens = true}), (Ids{303, 259, 300}));
}

TEST(Tokenizer, NfcBeforeEncoding) {
  Tokenizer t = Make();
  EXPECT_EQ(Enc(t, "caf\xC3\xA9"), Enc(t, "cafe\xCC\x81"));
  json tj = testing::TinyTokenizer();
  tj["normalizer"] = nullptr;
  Tokenizer raw = Make(tj);
  EXPECT_NE(Enc(raw, "caf\xC3\xA9"), Enc(raw, "cafe\xCC\x81"));
}

TEST(Tokenizer, DecodeAndErrors) {
  Tokenizer t = Make();
  EXPECT_EQ(*t.Decode(Ids{259, 264, 300}), "hello world<|im_end|>");
  EXPECT_EQ(*t.Decode(Ids{259, 300}, {.skip_special_tokens = true}), "hello");
  EXPECT_EQ(*t.Decode(Ids{0xE4, 0xBD}), "\xEF\xBF\xBD");  // a partial character at the end
  EXPECT_EQ(*t.Decode(Ids{0xE4, 0xBD, 0xA0}), "\xE4\xBD\xA0");
  EXPECT_FALSE(t.Decode(Ids{270}).ok());  // a gap in the vocabulary
  EXPECT_FALSE(t.Decode(Ids{-1}).ok());
  EXPECT_FALSE(t.Encode("bad \xFF utf8").ok());
  EXPECT_EQ(t.vocab_size(), 304);
  EXPECT_EQ(t.bos_id(), 303);
  EXPECT_EQ(t.eos_id(), 300);
  EXPECT_EQ(t.pad_id(), 301);
  EXPECT_EQ(t.TokenToId("Ġworld"), 264);
  EXPECT_EQ(t.TokenToId("<|im_end|>"), 300);
  EXPECT_TRUE(t.IsSpecial(300));
  EXPECT_FALSE(t.IsSpecial(302));
}

TEST(Tokenizer, CleanUpSpacesFollowsConfig) {
  json cj = testing::TinyConfig();
  cj.erase("clean_up_tokenization_spaces");
  Tokenizer t = Make(testing::TinyTokenizer(), cj);
  EXPECT_EQ(*t.Decode(*t.Encode("a . b")), "a. b");
  EXPECT_EQ(*t.Decode(*t.Encode("a . b"), {.clean_up_tokenization_spaces = false}), "a . b");
}

TEST(StreamDecoder, NeverEmitsABrokenCharacter) {
  Tokenizer t = Make();
  StreamDecoder d(t);
  EXPECT_EQ(*d.Push('h'), "h");
  EXPECT_EQ(*d.Push(0xF0), "");
  EXPECT_EQ(*d.Push(0x9F), "");
  EXPECT_EQ(*d.Push(0x98), "");
  EXPECT_EQ(*d.Push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(*d.Push(0xE4), "");
  EXPECT_EQ(*d.Push(300), "\xEF\xBF\xBD<|im_end|>");  // the broken character is settled
  EXPECT_EQ(*d.Push(0xFF), "\xEF\xBF\xBD");           // never valid: replaced at once
  EXPECT_EQ(*d.Push(0xC3), "");
  EXPECT_EQ(d.Finish(), "\xEF\xBF\xBD");
  EXPECT_FALSE(d.Push(9999).ok());
}

TEST(Tokenizer, RoundTripOnRandomUnicode) {
  json tj = testing::TinyTokenizer();
  tj["normalizer"] = nullptr;  // without NFC the round trip is exact
  Tokenizer t = Make(tj);
  Tokenizer nfc = Make();
  std::mt19937 rng(11);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s;
    const int n = rng() % 30;
    for (int k = 0; k < n; ++k) {
      char32_t cp;
      switch (rng() % 4) {
        case 0: cp = 0x20 + rng() % 0x5F; break;
        case 1: cp = " \t\n\r"[rng() % 4]; break;
        default:
          do cp = rng() % 0x110000; while (cp >= 0xD800 && cp <= 0xDFFF);
      }
      AppendUtf8(cp, &s);
    }
    if (rng() % 4 == 0) s += "<|im_end|>";
    auto ids = t.Encode(s);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*t.Decode(*ids, {.clean_up_tokenization_spaces = false}), s);
    StreamDecoder d(t);
    std::string streamed;
    for (int32_t id : *ids) {
      std::string piece = *d.Push(id);
      ASSERT_TRUE(IsValidUtf8(piece));
      streamed += piece;
    }
    streamed += d.Finish();
    EXPECT_EQ(streamed, s);
    auto nfc_ids = nfc.Encode(s);
    ASSERT_TRUE(nfc_ids.ok());
    EXPECT_EQ(*nfc.Decode(*nfc_ids), ToNfc(s));
  }
}

TEST(Tokenizer, ConcurrentEncodingMatchesSequential) {
  Tokenizer t = Make();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("hello world " + std::to_string(i * 7919) + " aaa<|im_end|>hell");
  std::vector<Ids> want;
  for (const auto& s : texts) want.push_back(Enc(t, s));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      Tokenizer copy = t;  // copies share state
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t i = k; i < texts.size(); i += 1 + k) {
          auto got = copy.Encode(texts[i]);
          if (!got.ok() || *got != want[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(Tokenizer, MalformedFilesAreErrorsNeverCrashes) {
  const std::string good = testing::TinyTokenizer().dump();
  EXPECT_FALSE(Tokenizer::FromJson("", "").ok());
  EXPECT_FALSE(Tokenizer::FromJson("[]", "").ok());
  EXPECT_FALSE(Tokenizer::FromJson(good, "[1]").ok());
  json bad_merge = testing::TinyTokenizer();
  bad_merge["model"]["merges"].push_back("x y z");
  EXPECT_NE(Tokenizer::FromJson(bad_merge.dump(), "").status().message().find("merges[10]"), std::string::npos);
  json missing = testing::TinyTokenizer();
  missing["model"]["merges"].push_back("zz qq");
  EXPECT_FALSE(Tokenizer::FromJson(missing.dump(), "").ok());
  json unknown = testing::TinyTokenizer();
  unknown["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_EQ(Tokenizer::FromJson(unknown.dump(), "").status().code(), absl::StatusCode::kUnimplemented);
  // Mutations: flipped bytes, truncations, and values of the wrong type. Load must return (an
  // error or a tokenizer that encodes without crashing).
  std::mt19937 rng(5);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s = good;
    const int kind = iter % 3;
    if (kind == 0) {
      for (int k = 0; k < 4; ++k) s[rng() % s.size()] = static_cast<char>(rng() % 256);
    } else if (kind == 1) {
      s.resize(rng() % s.size());
    } else {
      json j = testing::TinyTokenizer();
      const char* keys[] = {"model", "pre_tokenizer", "normalizer", "decoder", "post_processor", "added_tokens"};
      const json values[] = {json(), json(3), json("x"), json::array({1, "a"}), json::object(), json{{"type", "Split"}}};
      j[keys[rng() % 6]] = values[rng() % 6];
      s = j.dump();
    }
    auto t = Tokenizer::FromJson(s, "");
    if (t.ok()) {
      auto ids = t->Encode("hello world <|im_end|> 123 \xE4\xBD\xA0");
      if (ids.ok()) (void)t->Decode(*ids);
    }
  }
}

TEST(PreTokenizer, SplitBehaviors) {
  auto pieces = [](const char* behavior, bool invert) {
    json config = {{"type", "Sequence"},
                   {"pretokenizers", json::array({json{{"type", "Split"},
                                                       {"pattern", {{"String", "-"}}},
                                                       {"behavior", behavior},
                                                       {"invert", invert}},
                                                  json{{"type", "ByteLevel"}, {"use_regex", false}}})}};
    auto p = PreTokenizer::FromJson(config);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    const std::string text = "a-b--c";
    std::vector<Piece> out;
    EXPECT_TRUE(p->Split(text, out).ok());
    std::vector<std::string> s;
    for (const Piece& x : out) s.push_back(text.substr(x.begin, x.end - x.begin));
    return s;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("Isolated", false), (V{"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(pieces("Removed", false), (V{"a", "b", "c"}));
  EXPECT_EQ(pieces("MergedWithPrevious", false), (V{"a-", "b-", "-", "c"}));
  EXPECT_EQ(pieces("MergedWithNext", false), (V{"a", "-b", "-", "-c"}));
  EXPECT_EQ(pieces("Contiguous", false), (V{"a", "-", "b", "--", "c"}));
  EXPECT_EQ(pieces("Removed", true), (V{"-", "-", "-"}));
}

TEST(PreTokenizer, ByteLevelPrefixSpaceAndGpt2Regex) {
  json config = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  auto p = PreTokenizer::FromJson(config);
  ASSERT_TRUE(p.ok());
  std::vector<Piece> out;
  const std::string text = "hi there";
  ASSERT_TRUE(p->Split(text, out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].prefix_space);
  EXPECT_EQ(text.substr(out[0].begin, out[0].end - out[0].begin), "hi");
  EXPECT_EQ(text.substr(out[1].begin, out[1].end - out[1].begin), " there");
  EXPECT_EQ(PreTokenizer::FromJson(json{{"type", "Metaspace"}}).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace grpo::tokenizer
