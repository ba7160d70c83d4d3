#include "reward/math_normalize.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

namespace grpo::reward {
namespace {

bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

struct Replacement {
  const char* from;
  const char* to;
};
// UTF-8 symbols that models write instead of LaTeX.
constexpr Replacement kUnicode[] = {
    {"\xe2\x88\x92", "-"},          {"\xc3\x97", "\\times "},      {"\xc3\xb7", "\\div "},
    {"\xc2\xb7", "\\cdot "},        {"\xe2\x8b\x85", "\\cdot "},   {"\xe2\x89\xa4", "\\le "},
    {"\xe2\x89\xa5", "\\ge "},      {"\xe2\x89\xa0", "\\ne "},     {"\xcf\x80", "\\pi "},
    {"\xe2\x88\x9e", "\\infty "},   {"\xe2\x88\x9a", "\\sqrt "},   {"\xc2\xb0", ""},
    {"\xc2\xb1", "\\pm "},          {"\xe2\x88\xaa", "\\cup "},    {"\xe2\x88\x88", "\\in "},
};

// Commands dropped with no trace.
bool IsDroppedCommand(std::string_view n) {
  static constexpr const char* kDrop[] = {
      "left", "right", "displaystyle", "textstyle", "scriptstyle", "big", "Big", "bigl",
      "bigr", "Bigl", "Bigr", "bigg", "Bigg", "biggl", "biggr", "limits", "circ", "degree",
      "mathstrut", "middle", "rm", "bf", "it", "hfill", "nonumber", "notag"};
  for (const char* d : kDrop)
    if (n == d) return true;
  return false;
}

// Commands replaced by their braced argument.
bool IsUnwrapCommand(std::string_view n) {
  static constexpr const char* kUnwrap[] = {
      "text", "textbf", "textit", "textrm", "textnormal", "mathrm", "mathbf", "mathit",
      "mathsf", "mathtt", "mbox", "hbox", "operatorname", "boxed", "fbox", "mathbb",
      "emph", "textup", "mathnormal", "ensuremath"};
  for (const char* d : kUnwrap)
    if (n == d) return true;
  return false;
}

// Text-mode wrappers: their content is prose ("12 \text{ apples}"), not math. (`\mathbf`,
// `\mathit` and `\operatorname` hold symbols and are not among them.)
bool IsTextCommand(std::string_view n) {
  static constexpr const char* kText[] = {"text",   "textbf", "textit", "textrm", "textnormal",
                                          "textup", "emph",   "mbox",   "hbox",   "mathrm"};
  for (const char* d : kText)
    if (n == d) return true;
  return false;
}

// Words that change the value of the number before them or add another one
// ("12 \text{ thousand}", "3 \text{ and a half}", "2 \text{ squared}", "5 \text{ tenths}"): a
// trailing text run holding one of them is kept, so the answer stays unequal to the bare number.
bool IsValueWord(std::string_view w) {
  static constexpr const char* kWords[] = {
      // scale
      "hundred", "hundreds", "thousand", "thousands", "million", "millions", "mn", "billion",
      "billions", "bn", "trillion", "trillions", "dozen", "dozens", "gross", "score", "lakh",
      "lakhs", "crore", "crores",
      // fractions
      "half", "halves", "third", "thirds", "quarter", "quarters", "fourth", "fourths", "fifth",
      "fifths", "sixth", "sixths", "seventh", "sevenths", "eighth", "eighths", "ninth", "ninths",
      "tenth", "tenths", "hundredth", "hundredths", "thousandth", "thousandths", "millionth",
      "millionths", "percent", "percentage", "pct", "permille",
      // number words
      "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
      "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
      "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
      "point", "twice", "thrice", "double", "triple", "pi",
      // operations, signs, bounds, alternatives
      "or", "and", "to", "plus", "minus", "over", "divided", "by", "into", "power", "root",
      "roots", "factorial", "squared", "cubed", "negative", "below", "than", "least", "most",
      "not", "no", "except", "approximately", "approx", "about", "around", "nearly", "almost",
      "under", "up", "between"};
  for (const char* d : kWords)
    if (w == d) return true;
  return false;
}

bool IsUnitWord(std::string_view w) {
  static constexpr const char* kUnits[] = {
      "cm", "mm", "m", "km", "kg", "g", "mg", "s", "sec", "secs", "second", "seconds", "min",
      "mins", "minute", "minutes", "h", "hr", "hrs", "hour", "hours", "day", "days", "week",
      "weeks", "month", "months", "year", "years", "inch", "inches", "ft", "foot", "feet",
      "yard", "yards", "mile", "miles", "meter", "meters", "metre", "metres", "centimeter",
      "centimeters", "kilometer", "kilometers", "millimeter", "millimeters", "unit", "units",
      "sq", "square", "cubic", "dollar", "dollars", "cent", "cents", "degree", "degrees",
      "radian", "radians", "mph", "liter", "liters", "litre", "litres", "l", "ml", "gram",
      "grams", "kilogram", "kilograms", "pound", "pounds", "lb", "lbs", "oz", "ounce",
      "ounces", "gallon", "gallons", "people", "persons", "students", "times", "ways",
      "points", "p.m.", "a.m.", "mps", "kph", "km/h", "m/s", "cm^2", "m^2", "cm^3", "m^3"};
  for (const char* u : kUnits)
    if (w == u) return true;
  return false;
}

void Trim(std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  s = s.substr(b, e - b);
}

// Strips trailing unit words ("5 cm", "3 square units") that follow a number.
void StripUnits(std::string& s) {
  for (int round = 0; round < 4; ++round) {
    Trim(s);
    size_t e = s.size(), b = e;
    while (b > 0 && (IsLetter(s[b - 1]) || s[b - 1] == '^' || IsDigit(s[b - 1]) ||
                     s[b - 1] == '/' || s[b - 1] == '.')) {
      if (e - b > 16) return;
      --b;
    }
    if (b == e || b == 0 || !std::isspace(static_cast<unsigned char>(s[b - 1]))) return;
    std::string word = s.substr(b, e - b);
    for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t p = b;
    while (p > 0 && std::isspace(static_cast<unsigned char>(s[p - 1]))) --p;
    if (p == 0) return;
    char before = s[p - 1];
    if (word == "percent") {
      s = s.substr(0, p) + "%";
      return;
    }
    if (!IsUnitWord(word)) return;
    if (!(IsDigit(before) || before == '}' || before == ')' || IsLetter(before))) return;
    // A unit after a plain letter only when that letter is itself part of a unit phrase.
    if (IsLetter(before)) {
      size_t wb = p;
      while (wb > 0 && IsLetter(s[wb - 1])) --wb;
      std::string prev = s.substr(wb, p - wb);
      if (prev != "square" && prev != "cubic" && prev != "sq") return;
    }
    s.resize(p);
  }
}

// Output span [begin, end) of the content of an unwrapped text-mode group (`\text{...}`).
struct TextSpan {
  size_t begin, end;
};

// Drops a run of plain words at the end of `s` that follows a number and was written in
// text-mode groups: "12  apples " (from `12 \text{ apples}` or `\text{12 apples}`) -> "12".
// Conservative: every letter of the run must come from a text-mode group (`spans`, ordered by
// end), the run holds at most 6 words of letters (with `-`, `'`, `.` inside) of two or more
// letters each, none a value word (IsValueWord), and what precedes it is a digit, `}`, `)` or `%`.
// Single letters and known units are left to StripUnits.
void DropTrailingTextNoun(std::string& s, const std::vector<TextSpan>& spans) {
  constexpr size_t kMaxRun = 96;
  size_t e = s.size();
  while (e > 0 && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  size_t b = e;
  auto in_run = [](char c) {
    return IsLetter(c) || c == ' ' || c == '-' || c == '\'' || c == '.';
  };
  while (b > 0 && in_run(s[b - 1])) {
    if (e - b >= kMaxRun) return;
    --b;
  }
  while (b < e && s[b] == ' ') ++b;  // the run starts at its first word
  if (b == e || !IsLetter(s[b])) return;
  size_t p = b;
  while (p > 0 && std::isspace(static_cast<unsigned char>(s[p - 1]))) --p;
  if (p == 0) return;
  const char before = s[p - 1];
  if (!(IsDigit(before) || before == '}' || before == ')' || before == '%')) return;
  // Every character of [b, e) lies in a text-mode span.
  for (size_t i = b; i < e;) {
    size_t covered = i;
    for (size_t k = spans.size(); k-- > 0 && spans[k].end > i;) {
      if (spans[k].begin <= i) covered = std::max(covered, spans[k].end);
    }
    if (covered == i) return;
    i = covered;
  }
  int words = 0;
  for (size_t i = b; i < e;) {
    while (i < e && (s[i] == ' ' || s[i] == '-')) ++i;
    if (i == e) break;
    std::string w;
    size_t letters = 0;
    while (i < e && s[i] != ' ' && s[i] != '-') {
      if (IsLetter(s[i])) {
        w.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(s[i]))));
        ++letters;
      }
      ++i;
    }
    if (++words > 6 || letters < 2 || IsValueWord(w)) return;
  }
  s.resize(b);
}

}  // namespace

std::string NormalizeMathAnswer(std::string_view in) {
  std::string s;
  s.reserve(in.size() + 8);
  // Unicode symbols first.
  for (size_t i = 0; i < in.size();) {
    bool replaced = false;
    if (static_cast<unsigned char>(in[i]) >= 0x80) {
      for (const auto& r : kUnicode) {
        size_t n = std::strlen(r.from);
        if (in.substr(i, n) == r.from) {
          s += r.to;
          i += n;
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) s.push_back(in[i++]);
  }

  std::string out;
  out.reserve(s.size());
  struct Group {
    bool unwrapped;  // drop its '}' (an unwrapped command)
    bool text;       // a text-mode command (IsTextCommand)
    size_t begin;    // where its content starts in `out`
  };
  std::vector<Group> groups;    // per open '{'
  std::vector<TextSpan> spans;  // closed text-mode groups, in order of their end
  bool pending_unwrap = false, pending_text = false;
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    if (c == '$') {
      ++i;
      continue;
    }
    if (c == '~') {
      out.push_back(' ');
      ++i;
      continue;
    }
    if (c == '^') {
      // ^\circ, ^{\circ} are degrees: dropped.
      if (s.compare(i, 6, "^\\circ") == 0) {
        i += 6;
        continue;
      }
      if (s.compare(i, 8, "^{\\circ}") == 0) {
        i += 8;
        continue;
      }
    }
    if (c == '{') {
      if (i + 2 < s.size() && s[i + 1] == ',' && s[i + 2] == '}') {  // 1{,}000
        out.push_back(',');
        i += 3;
        continue;
      }
      groups.push_back({pending_unwrap, pending_unwrap && pending_text, out.size()});
      out.push_back(pending_unwrap ? ' ' : '{');
      pending_unwrap = false;
      ++i;
      continue;
    }
    pending_unwrap = false;
    if (c == '}') {
      bool drop = false;
      if (!groups.empty()) {
        drop = groups.back().unwrapped;
        if (groups.back().text) spans.push_back({groups.back().begin, out.size() + 1});
        groups.pop_back();
      }
      out.push_back(drop ? ' ' : '}');
      ++i;
      continue;
    }
    if (c != '\\') {
      out.push_back(c);
      ++i;
      continue;
    }
    // A backslash sequence.
    if (i + 1 >= s.size()) {
      ++i;
      continue;
    }
    char d = s[i + 1];
    if (!IsLetter(d)) {
      i += 2;
      switch (d) {
        case '$': case '(': case ')': case '[': case ']': case ',': case '!': break;
        case '%': out.push_back('%'); break;
        case ';': case ':': case ' ': case '\\': case '>': out.push_back(' '); break;
        case '{': out += "\\{"; break;
        case '}': out += "\\}"; break;
        case '|': out.push_back('|'); break;
        default: out.push_back('\\'); out.push_back(d); break;
      }
      continue;
    }
    size_t j = i + 1;
    while (j < s.size() && IsLetter(s[j])) ++j;
    std::string_view name(s.data() + i + 1, j - i - 1);
    i = j;
    if (IsDroppedCommand(name)) {
      out.push_back(' ');
      continue;
    }
    if (name == "quad" || name == "qquad") {
      out.push_back(' ');
      continue;
    }
    if (IsUnwrapCommand(name)) {
      while (i < s.size() && s[i] == ' ') ++i;
      pending_unwrap = i < s.size() && s[i] == '{';
      pending_text = IsTextCommand(name);
      out.push_back(' ');
      continue;
    }
    if (name == "dfrac" || name == "tfrac" || name == "cfrac") name = "frac";
    out.push_back('\\');
    out.append(name.data(), name.size());
    // Keep a separator so "\pi r" does not become "\pir" later.
    if (i < s.size() && IsLetter(s[i])) out.push_back(' ');
  }

  // Trailing whitespace and punctuation go now; leading whitespace stays until the text spans,
  // which index `out` as built, have been used.
  while (!out.empty() && (std::isspace(static_cast<unsigned char>(out.back())) ||
                          out.back() == '.' || out.back() == ';' || out.back() == ':' ||
                          out.back() == ',')) {
    out.pop_back();
  }
  DropTrailingTextNoun(out, spans);
  StripUnits(out);
  Trim(out);

  // A lone decimal comma: "3,5" -> "3.5" (not "3,500": that is a thousands separator).
  size_t k = 0;
  if (k < out.size() && (out[k] == '-' || out[k] == '+')) ++k;
  size_t d1 = k;
  while (k < out.size() && IsDigit(out[k])) ++k;
  if (k > d1 && k < out.size() && out[k] == ',') {
    size_t comma = k++;
    size_t d2 = k;
    while (k < out.size() && IsDigit(out[k])) ++k;
    if (k == out.size() && k > d2 && k - d2 != 3) out[comma] = '.';
  }
  return out;
}

}  // namespace grpo::reward
