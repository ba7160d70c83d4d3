// libFuzzer entry point for the config loader. Not a Bazel target (Bazel builds with gcc):
// tools/fuzz_smoke.sh builds it with clang from the sources of //core:config and their deps
// (core/file.cc, core/utf8.cc, core/status.cc, -lyaml-cpp, Abseil) and runs it.
// (Debian's libyaml-cpp is not instrumented; linking it is fine.) Every input must give a
// config or an error with a message; an accepted config must dump to YAML that parses back to
// the same tree, kinds and float bits included. The input is also used as an override, both
// whole ("a.b=value" form) and as the value of one.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/config.h"

namespace {

bool SameTree(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case nlohmann::json::value_t::number_float: {
      double x = a.get<double>(), y = b.get<double>();
      if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
      return x == y && std::signbit(x) == std::signbit(y);
    }
    case nlohmann::json::value_t::object: {
      if (a.size() != b.size()) return false;
      for (auto it = a.begin(); it != a.end(); ++it) {
        auto jt = b.find(it.key());
        if (jt == b.end() || !SameTree(it.value(), *jt)) return false;
      }
      return true;
    }
    case nlohmann::json::value_t::array: {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (!SameTree(a[i], b[i])) return false;
      }
      return true;
    }
    default:
      return a == b;
  }
}

void CheckRoundTrip(const grpo::Config& c) {
  const std::string dumped = c.Dump();
  absl::StatusOr<grpo::Config> back = grpo::Config::Parse(dumped, "dump.yaml");
  if (!back.ok() || !SameTree(back->json(), c.json())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<grpo::Config> parsed = grpo::Config::Parse(text, "fuzz.yaml");
  if (!parsed.ok()) {
    if (parsed.status().message().empty()) std::abort();
  } else {
    grpo::Config& c = *parsed;
    CheckRoundTrip(c);
    // Typed reads of whatever keys there are: errors are fine, crashes are not.
    int n = 0;
    for (auto it = c.json().begin(); it != c.json().end() && n < 8; ++it, ++n) {
      const std::string& key = it.key();
      (void)c.Has(key);
      (void)c.GetInt(key);
      (void)c.GetDouble(key);
      (void)c.GetBool(key);
      (void)c.GetString(key);
      (void)c.GetStringList(key);
      (void)c.GetIntOr(key + ".0", 1);
      (void)c.Sub(key);
      (void)c.SubList(key);
    }
    (void)c.CheckKnownKeys({"train.lr", "train.steps", "model.*.name", "data"});
    if (!c.ApplyOverride(text.substr(0, 256)).ok()) {
      // A failed override leaves a config that still round-trips.
    }
    CheckRoundTrip(c);
  }

  grpo::Config target;
  absl::Status whole = target.ApplyOverride(text);
  if (!whole.ok() && whole.message().empty()) std::abort();
  absl::Status value = target.ApplyOverride("fuzz.value=" + text);
  if (!value.ok() && value.message().empty()) std::abort();
  CheckRoundTrip(target);
  return 0;
}
