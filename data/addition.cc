#include "data/addition.h"

#include <cmath>

namespace grpo::data {
namespace {

int64_t Pow10(int digits) {
  int64_t p = 1;
  for (int i = 0; i < digits; ++i) p *= 10;
  return p;
}

}  // namespace

absl::Status Validate(const AdditionOptions& options) {
  if (options.digits < 1 || options.digits > 9) {
    return absl::InvalidArgumentError("addition: digits must be in [1, 9], got " + std::to_string(options.digits));
  }
  if (!(options.held_out_fraction >= 0.0 && options.held_out_fraction < 1.0)) {
    return absl::InvalidArgumentError("addition: held_out_fraction must be in [0, 1)");
  }
  return absl::OkStatus();
}

absl::Status Validate(const TeacherMix& mix) {
  for (double p : {mix.careful, mix.guess, mix.plain, mix.tool}) {
    if (!(p >= 0.0) || !std::isfinite(p)) {
      return absl::InvalidArgumentError("teacher mix: probabilities must be finite and >= 0");
    }
  }
  if (mix.careful + mix.guess + mix.plain + mix.tool <= 0.0) {
    return absl::InvalidArgumentError("teacher mix: careful + guess + plain + tool must be > 0");
  }
  return absl::OkStatus();
}

bool IsHeldOut(int64_t a, int64_t b, const AdditionOptions& options) {
  SplitMix64 hash(static_cast<uint64_t>(a) * 0x100000001B3ull ^ static_cast<uint64_t>(b) * 0x9E3779B1ull ^
                  static_cast<uint64_t>(options.digits) << 56);
  const double u = static_cast<double>(hash.Next() >> 11) * 0x1.0p-53;
  return u < options.held_out_fraction;
}

std::string ColumnAdditionTrace(int64_t a, int64_t b, int digits) {
  std::string trace;
  int64_t carry = 0;
  for (int column = 0; column < digits; ++column) {
    const int64_t x = a % 10, y = b % 10;
    const int64_t s = x + y + carry;
    if (column > 0) trace += ",";
    trace += std::to_string(x) + "+" + std::to_string(y);
    if (carry) trace += "+1";
    trace += "=" + std::to_string(s);
    carry = s >= 10 ? 1 : 0;
    a /= 10;
    b /= 10;
  }
  return trace;
}

Example GenerateAddition(SplitMix64& rng, const AdditionOptions& options, AdditionSplit split) {
  const int64_t limit = Pow10(options.digits);
  const bool want_held_out = split == AdditionSplit::kHeldOut;
  int64_t a = 0, b = 0;
  // Rejection sampling; the held-out split is non-empty for any fraction > 0 with enough pairs,
  // and a fraction of 0 with kHeldOut falls back to any pair after many tries.
  for (int attempt = 0; attempt < 100000; ++attempt) {
    a = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(limit)));
    b = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(limit)));
    if (IsHeldOut(a, b, options) == want_held_out) break;
  }
  Example example;
  example.task = "addition";
  example.question = std::to_string(a) + "+" + std::to_string(b);
  example.answer = std::to_string(a + b);
  example.solution = ColumnAdditionTrace(a, b, options.digits);
  example.fields = {{"question", example.question}, {"answer", example.answer}};
  example.meta = nlohmann::json{{"a", a}, {"b", b}};
  return example;
}

std::string TeacherCompletion(SplitMix64& rng, const Example& example, const AdditionOptions& options,
                              const TeacherMix& mix) {
  const double total = mix.careful + mix.guess + mix.plain + mix.tool;
  const double u = static_cast<double>(rng.Next() >> 11) * 0x1.0p-53 * total;
  const auto random_answer = [&] {
    return std::to_string(rng.Below(static_cast<uint64_t>(2 * Pow10(options.digits))));
  };
  if (u < mix.careful) {
    return "<think>" + example.solution + "</think><answer>" + example.answer + "</answer>";
  }
  if (u < mix.careful + mix.guess) return "<think>guess</think><answer>" + random_answer() + "</answer>";
  if (u >= mix.careful + mix.guess + mix.plain) {
    const ToolMarkers& m = mix.markers;
    return "<think>" + m.call_start + example.question + m.call_end + m.result_start + example.answer + m.result_end +
           "</think><answer>" + example.answer + "</answer>";
  }
  return "the answer is " + random_answer();
}

}  // namespace grpo::data
