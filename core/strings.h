// Small string helpers over std::string_view that Abseil would give if absl::string_view were
// std::string_view in this build (Debian's Abseil 20220623 has its own string_view type, so
// absl::StripAsciiWhitespace and friends do not take std::string_view arguments).
#ifndef GRPO_CORE_STRINGS_H_
#define GRPO_CORE_STRINGS_H_

#include <string_view>

namespace grpo {

// `s` without leading and trailing ASCII white space (space, \t, \n, \v, \f, \r), like
// absl::StripAsciiWhitespace. Bytes >= 0x80 are never white space.
inline std::string_view StripAsciiWhitespace(std::string_view s) {
  auto is_space = [](char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
  };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace grpo

#endif  // GRPO_CORE_STRINGS_H_
