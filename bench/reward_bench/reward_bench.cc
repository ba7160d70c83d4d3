// Reward benchmark (see docs/PERFORMANCE.md). Usage:
//   bazel run -c opt //bench/reward_bench -- [--items N] [--seconds S]
// Builds a deterministic mix of math items (integers, fractions, decimals, radicals, sets,
// intervals, symbolic expressions; half correct, half wrong) inside ~600-byte R1-style
// completions, then measures on ONE thread:
//   1. the math rule alone (extraction + parse + equivalence), per call latency p50/p99;
//   2. a rule set math + format (what a trainer typically runs);
// and over gRPC on loopback (server scoring on one thread, one client thread):
//   3. Score calls with batches of 64 (a GRPO group) and of 1, per call latency p50/p99.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "reward/client.h"
#include "reward/math_rule.h"
#include "reward/rule_set.h"
#include "reward/service.h"

namespace {

using Clock = std::chrono::steady_clock;
using grpo::reward::RewardItem;

struct Pair {
  const char* gold;
  const char* right;
  const char* wrong;
};

constexpr Pair kPairs[] = {
    {"42", "42", "41"},
    {"1000000", "1,000,000", "100000"},
    {"\\frac{1}{2}", "0.5", "\\frac{1}{3}"},
    {"\\frac{3}{4}", "\\dfrac{3}{4}", "\\frac{4}{3}"},
    {"2\\sqrt{3}", "\\sqrt{12}", "\\sqrt{13}"},
    {"\\frac{\\pi}{2}", "\\pi/2", "\\pi"},
    {"-7", "-7", "7"},
    {"3.14", "3.140", "3.41"},
    {"\\{1, 2, 3\\}", "\\{3, 2, 1\\}", "\\{1, 2\\}"},
    {"(1, 3]", "1 < x \\le 3", "[1, 3]"},
    {"x^2+2x+1", "(x+1)^2", "(x-1)^2"},
    {"50\\%", "0.5", "5"},
    {"2^{10}", "1024", "1000"},
    {"\\frac{5}{2}", "2\\frac{1}{2}", "2\\frac{1}{3}"},
    {"12", "\\$12", "\\$13"},
    {"90", "90^\\circ", "45^\\circ"},
};

std::vector<RewardItem> MakeItems(size_t n) {
  std::vector<RewardItem> items;
  items.reserve(n);
  const std::string reasoning =
      "We need to find the value. First, consider the given conditions and simplify the "
      "expression step by step. Substituting the known quantities, we get an equation that "
      "can be solved directly. Checking the arithmetic carefully: the terms combine, the "
      "common factors cancel, and the remaining quantity is what we were asked for. Let me "
      "verify once more by plugging the result back into the original statement; it holds. ";
  for (size_t i = 0; i < n; ++i) {
    const Pair& p = kPairs[i % (sizeof(kPairs) / sizeof(kPairs[0]))];
    bool right = (i / 16) % 2 == 0;
    RewardItem it;
    it.answer = p.gold;
    it.completion = "<think>\n" + reasoning + "\n</think>\n<answer>\nThe answer is $\\boxed{" +
                    std::string(right ? p.right : p.wrong) + "}$.\n</answer>";
    items.push_back(std::move(it));
  }
  return items;
}

struct Stats {
  double per_second = 0, p50_us = 0, p99_us = 0;
  size_t calls = 0;
};

Stats Summarize(std::vector<double>& us, double total_s, size_t units) {
  std::sort(us.begin(), us.end());
  Stats s;
  s.calls = us.size();
  s.per_second = units / total_s;
  s.p50_us = us[us.size() / 2];
  s.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  return s;
}

template <typename F>
Stats Measure(size_t n_items, double seconds, size_t units_per_call, F call) {
  std::vector<double> us;
  auto start = Clock::now();
  size_t i = 0;
  while (true) {
    auto t0 = Clock::now();
    call(i++ % n_items);
    auto t1 = Clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    if (std::chrono::duration<double>(t1 - start).count() >= seconds && us.size() >= 100) break;
  }
  double total = std::chrono::duration<double>(Clock::now() - start).count();
  return Summarize(us, total, us.size() * units_per_call);
}

void Print(const char* what, const Stats& s, const char* unit) {
  std::printf("%-44s %10.0f %s/s   p50 %8.1f us   p99 %8.1f us   (%zu calls)\n", what,
              s.per_second, unit, s.p50_us, s.p99_us, s.calls);
}

}  // namespace

int main(int argc, char** argv) {
  size_t n_items = 4096;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; ++i) {
    std::string a = argv[i];
    if (a == "--items") n_items = std::strtoul(argv[++i], nullptr, 10);
    if (a == "--seconds") seconds = std::strtod(argv[++i], nullptr);
  }
  std::vector<RewardItem> items = MakeItems(n_items);

  grpo::reward::MathRule math;
  size_t correct = 0, expected = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    correct += math.Score(items[i])->score == 1.0;
    expected += (i / 16) % 2 == 0;
  }
  std::printf("items: %zu (%zu judged correct, %zu expected)\n", items.size(), correct, expected);

  Print("in-process math rule, 1 thread", Measure(items.size(), seconds, 1, [&](size_t i) {
          auto r = math.Score(items[i]);
          if (!r.ok()) std::abort();
        }), "checks");

  auto cfg = grpo::Config::Parse(
      "rules:\n  - {type: math, name: accuracy}\n  - {type: format, weight: 0.1}\n", "bench");
  auto set = grpo::reward::RuleSet::FromConfig(*cfg, {});
  if (!set.ok()) {
    std::fprintf(stderr, "%s\n", set.status().ToString().c_str());
    return 1;
  }
  Print("in-process rule set math+format, 1 thread", Measure(items.size(), seconds, 1, [&](size_t i) {
          if (!set->Score(items[i]).reward) std::abort();
        }), "items");

  grpo::reward::ServeOptions so;
  so.listen = "127.0.0.1:0";
  so.threads = 1;
  auto shared = std::make_shared<const grpo::reward::RuleSet>(std::move(set).value());
  auto server = grpo::reward::RewardServer::Start(shared, so);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  grpo::reward::ClientOptions co;
  co.targets = {"127.0.0.1:" + std::to_string((*server)->port())};
  auto client = grpo::reward::RewardClient::Create(co);
  std::vector<grpo::v1::RewardRequestItem> protos;
  for (size_t i = 0; i < items.size(); ++i)
    protos.push_back(grpo::reward::ToProto(items[i], std::to_string(i)));
  for (size_t batch : {size_t{64}, size_t{1}}) {
    size_t n_batches = protos.size() / batch;
    std::vector<std::vector<grpo::v1::RewardRequestItem>> batches(n_batches);
    for (size_t b = 0; b < n_batches; ++b)
      batches[b].assign(protos.begin() + b * batch, protos.begin() + (b + 1) * batch);
    std::string label = "gRPC loopback, batch " + std::to_string(batch) + " (latency per call)";
    Print(label.c_str(), Measure(n_batches, seconds, batch, [&](size_t b) {
            if (!(*client)->Score(batches[b]).ok()) std::abort();
          }), "items");
  }
  (*server)->Shutdown();
  return 0;
}
