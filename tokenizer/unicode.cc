#include "tokenizer/unicode.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace grpo::tokenizer {
namespace {

struct CccEntry {
  uint32_t cp;
  uint8_t ccc;
};
struct DecompEntry {
  uint32_t cp;
  uint32_t offset;
  uint32_t length;
};
struct CompEntry {
  uint32_t first;
  uint32_t second;
  uint32_t composite;
};
struct RangeEntry {
  uint32_t lo;
  uint32_t hi;
};

#include "tokenizer/unicode_data.inc"

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

uint8_t Ccc(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::lower_bound(std::begin(kCcc), std::end(kCcc), cp,
                             [](const CccEntry& e, char32_t v) { return e.cp < v; });
  return (it != std::end(kCcc) && it->cp == cp) ? it->ccc : 0;
}

void Decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const int s = static_cast<int>(cp - kSBase);
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecomp), std::end(kDecomp), cp,
                             [](const DecompEntry& e, char32_t v) { return e.cp < v; });
  if (it != std::end(kDecomp) && it->cp == cp) {
    for (uint32_t k = 0; k < it->length; ++k) out.push_back(kDecompData[it->offset + k]);
  } else {
    out.push_back(cp);
  }
}

// The primary composite of (a, b), or 0.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  auto it = std::lower_bound(std::begin(kComp), std::end(kComp), std::pair<char32_t, char32_t>(a, b),
                             [](const CompEntry& e, std::pair<char32_t, char32_t> v) {
                               return e.first != v.first ? e.first < v.first : e.second < v.second;
                             });
  return (it != std::end(kComp) && it->first == a && it->second == b) ? it->composite : 0;
}

bool NfcUnsafe(char32_t cp) {
  if (cp < 0x300) return false;
  auto it = std::upper_bound(std::begin(kNfcUnsafe), std::end(kNfcUnsafe), cp,
                             [](char32_t v, const RangeEntry& e) { return v < e.lo; });
  if (it == std::begin(kNfcUnsafe)) return false;
  --it;
  return cp >= it->lo && cp <= it->hi;
}

}  // namespace

size_t IncompleteUtf8Suffix(std::string_view bytes) {
  // A character is at most 4 bytes: the lead byte is among the last 3.
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t start = n - back;
    const unsigned char c = static_cast<unsigned char>(bytes[start]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: keep looking back
    if (c < 0xC2 || c > 0xF4) return 0;
    const size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (back >= need) return 0;  // complete (or ill-formed): not waiting for more
    // Incomplete only if every byte so far can start a valid sequence.
    size_t maximal;
    const size_t len = DecodeUtf8(bytes, start, nullptr, &maximal);
    return (len == 0 && start + maximal == n) ? back : 0;
  }
  return 0;
}


bool IsNfcQuick(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Eight ASCII bytes at a time.
    if (i + 8 <= s.size()) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0xCC) {  // everything below U+0300 is NFC-safe
      i += c < 0x80 ? 1 : 2;
      continue;
    }
    if (NfcUnsafe(NextCodePoint(s, &i))) return false;
  }
  return true;
}

std::string ToNfc(std::string_view s) {
  if (IsNfcQuick(s)) return std::string(s);
  // 1. Full canonical decomposition.
  std::vector<char32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) Decompose(NextCodePoint(s, &i), cps);
  // 2. Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (Ccc(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && Ccc(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](char32_t a, char32_t b) { return Ccc(a) < Ccc(b); });
    i = j;
  }
  // 3. Canonical composition (UAX #15): a character composes with the last starter unless a
  // character in between has a combining class of 0 or >= its own.
  std::vector<char32_t> out;
  out.reserve(cps.size());
  long starter = -1;  // index in `out` of the last starter
  int last_ccc = 0;   // combining class of the last character appended after the starter
  for (char32_t cp : cps) {
    const int ccc = Ccc(cp);
    if (starter >= 0) {
      const bool adjacent = static_cast<size_t>(starter) + 1 == out.size();
      if (adjacent || last_ccc < ccc) {
        if (char32_t c = Compose(out[starter], cp); c != 0) {
          out[starter] = c;
          continue;
        }
      }
    }
    if (ccc == 0) starter = static_cast<long>(out.size());
    last_ccc = ccc;
    out.push_back(cp);
  }
  std::string result;
  result.reserve(s.size());
  for (char32_t cp : out) AppendUtf8(cp, &result);
  return result;
}

}  // namespace grpo::tokenizer
