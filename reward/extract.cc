#include "reward/extract.h"

#include <algorithm>
#include <cctype>

#include "core/strings.h"
#include "reward/rule.h"

namespace grpo::reward {
namespace {

constexpr size_t kMaxBoxedScan = 64 * 1024;  // longest \boxed{} content looked at
constexpr size_t kPhraseWindow = 64 * 1024;
constexpr size_t kMaxPhraseBytes = 512;

std::string_view Tail(std::string_view s, size_t n) {
  return s.size() > n ? s.substr(s.size() - n) : s;
}

// Content of the braced group starting at s[open] == '{', or nullopt when unterminated.
std::optional<std::string_view> Braced(std::string_view s, size_t open) {
  int depth = 0;
  size_t end = std::min(s.size(), open + kMaxBoxedScan);
  for (size_t i = open; i < end; ++i) {
    char c = s[i];
    if (c == '\\' && i + 1 < end) {
      ++i;  // \{ and \} do not count
      continue;
    }
    if (c == '{') {
      ++depth;
    } else if (c == '}') {
      if (--depth == 0) return s.substr(open + 1, i - open - 1);
    }
  }
  return std::nullopt;
}

// Position of the last occurrence of `a` or `b` strictly before `before`.
size_t LastOf(std::string_view s, std::string_view a, std::string_view b, size_t before,
              size_t* len) {
  size_t pa = before == 0 ? std::string_view::npos : s.rfind(a, before - 1);
  size_t pb = before == 0 ? std::string_view::npos : s.rfind(b, before - 1);
  if (pa == std::string_view::npos && pb == std::string_view::npos) return pa;
  if (pb == std::string_view::npos || (pa != std::string_view::npos && pa > pb)) {
    *len = a.size();
    return pa;
  }
  *len = b.size();
  return pb;
}

bool ILess(char a, char b) {
  return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
}

// Last case-insensitive occurrence of `needle` in `hay`.
size_t IRFind(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return std::string_view::npos;
  for (size_t i = hay.size() - needle.size() + 1; i-- > 0;) {
    bool ok = true;
    for (size_t j = 0; j < needle.size() && ok; ++j) ok = ILess(hay[i + j], needle[j]);
    if (ok) return i;
  }
  return std::string_view::npos;
}

std::string_view RestOfLine(std::string_view s, size_t from) {
  s = s.substr(from);
  size_t nl = s.find('\n');
  if (nl != std::string_view::npos) s = s.substr(0, nl);
  return s.substr(0, kMaxPhraseBytes);
}

std::string_view StripPhraseEnd(std::string_view s) {
  s = StripAsciiWhitespace(s);
  while (!s.empty() && (s.front() == ':' || s.front() == '*')) s = StripAsciiWhitespace(s.substr(1));
  while (!s.empty() && (s.back() == '.' || s.back() == '*')) s = StripAsciiWhitespace(s.substr(0, s.size() - 1));
  return s;
}

}  // namespace

const std::vector<ExtractMethod>& DefaultExtractMethods() {
  static const std::vector<ExtractMethod> kDefault = {
      ExtractMethod::kBoxed, ExtractMethod::kAnswerTag, ExtractMethod::kPhrase};
  return kDefault;
}

std::string_view ExtractMethodName(ExtractMethod m) {
  switch (m) {
    case ExtractMethod::kBoxed: return "boxed";
    case ExtractMethod::kAnswerTag: return "answer_tag";
    case ExtractMethod::kPhrase: return "phrase";
    case ExtractMethod::kHashes: return "hashes";
  }
  return "?";
}

absl::StatusOr<std::vector<ExtractMethod>> ParseExtractMethods(const std::vector<std::string>& names) {
  std::vector<ExtractMethod> out;
  for (const std::string& n : names) {
    bool found = false;
    for (ExtractMethod m : {ExtractMethod::kBoxed, ExtractMethod::kAnswerTag,
                            ExtractMethod::kPhrase, ExtractMethod::kHashes}) {
      if (n == ExtractMethodName(m)) {
        out.push_back(m);
        found = true;
      }
    }
    if (!found)
      return absl::InvalidArgumentError("unknown extraction method '" + n +
                                     "' (expected boxed, answer_tag, phrase or hashes)");
  }
  if (out.empty()) return absl::InvalidArgumentError("no extraction method given");
  return out;
}

std::optional<std::string> ExtractBoxed(std::string_view text) {
  text = Tail(text, Limits::kMaxCompletionBytes);
  size_t before = text.size();
  for (int attempt = 0; attempt < 16; ++attempt) {
    size_t len = 0;
    size_t p = LastOf(text, "\\boxed", "\\fbox", before, &len);
    if (p == std::string_view::npos) return std::nullopt;
    size_t q = p + len;
    while (q < text.size() && text[q] == ' ') ++q;
    if (q < text.size() && text[q] == '{') {
      if (auto c = Braced(text, q)) return std::string(StripAsciiWhitespace(*c));
    } else if (q > p + len && q < text.size()) {
      // \boxed 5: the next word.
      size_t e = q;
      while (e < text.size() && !std::isspace(static_cast<unsigned char>(text[e])) &&
             text[e] != '$' && e - q < kMaxPhraseBytes)
        ++e;
      if (e > q) return std::string(text.substr(q, e - q));
    }
    before = p;
  }
  return std::nullopt;
}

std::optional<std::string> ExtractAnswerTag(std::string_view text) {
  text = Tail(text, Limits::kMaxCompletionBytes);
  size_t open = text.rfind("<answer>");
  if (open == std::string_view::npos) return std::nullopt;
  size_t b = open + 8;
  size_t close = text.find("</answer>", b);
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view content = text.substr(b, close - b);
  if (auto boxed = ExtractBoxed(content)) return boxed;
  return std::string(StripAsciiWhitespace(content));
}

std::optional<std::string> ExtractPhrase(std::string_view text) {
  std::string_view win = Tail(text, kPhraseWindow);
  size_t a = IRFind(win, "answer is");
  size_t b = IRFind(win, "answer:");
  size_t p, len;
  if (a == std::string_view::npos && b == std::string_view::npos) return std::nullopt;
  if (b == std::string_view::npos || (a != std::string_view::npos && a > b)) {
    p = a;
    len = 9;
  } else {
    p = b;
    len = 7;
  }
  std::string_view rest = RestOfLine(win, p + len);
  if (auto boxed = ExtractBoxed(rest)) return boxed;
  rest = StripPhraseEnd(rest);
  if (rest.empty()) return std::nullopt;
  return std::string(rest);
}

std::optional<std::string> ExtractHashes(std::string_view text) {
  std::string_view win = Tail(text, kPhraseWindow);
  size_t p = win.rfind("####");
  if (p == std::string_view::npos) return std::nullopt;
  std::string_view rest = StripPhraseEnd(RestOfLine(win, p + 4));
  if (rest.empty()) return std::nullopt;
  return std::string(rest);
}

std::optional<std::string> ExtractAnswer(std::string_view completion,
                                         const std::vector<ExtractMethod>& methods) {
  for (ExtractMethod m : methods) {
    std::optional<std::string> r;
    switch (m) {
      case ExtractMethod::kBoxed: r = ExtractBoxed(completion); break;
      case ExtractMethod::kAnswerTag: r = ExtractAnswerTag(completion); break;
      case ExtractMethod::kPhrase: r = ExtractPhrase(completion); break;
      case ExtractMethod::kHashes: r = ExtractHashes(completion); break;
    }
    if (r) return r;
  }
  return std::nullopt;
}

}  // namespace grpo::reward
