// libFuzzer target: the request path of RewardService.Score. Not a Bazel target:
// tools/fuzz_smoke.sh builds it with clang, ASan and UBSan and runs it under its memory limits.
//
// The input is a serialized grpo.v1.ScoreRequest, taken as the server takes it: each item is
// converted to a RewardItem (FromProto), scored by two small rule sets of math and format rules
// (one with a rule for every task, one with task-specific rules only, so unknown tasks are
// errors) and converted back (ToRewardResult); the results form the ScoreResponse.
// Properties: no crash or sanitizer report; FromProto/ToProto round-trip the item (its known
// fields); each item is
// scored within 2 s; each result has exactly one of reward and error; a reward is finite and is
// the weighted sum of its rules' scores, each in [0, 1] (the math and format rules' range); the
// rules listed are those whose tasks admit the item, in configuration order; the response
// serializes and parses back to itself; the service's batch path (ScoreBatch) refuses a batch
// over its item limit, gives an item over its byte limit a per-item error, scores every other
// item exactly as above, and stops at an expired deadline.
// With GRPO_FUZZ_SEED_DIR set, a few well-formed requests are written there first (the corpus).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include "core/config.h"
#include "reward/rule_set.h"
#include "reward/service.h"

namespace {

using grpo::reward::RuleSet;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "reward_request_fuzz: property failed: %s\n", #cond); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

constexpr const char* kEveryTask = R"(rules:
  - type: math
    name: accuracy
    tasks: [math, gsm8k]
  - type: format
    mode: strict
    weight: 0.1
  - type: format
    name: format_lenient
    mode: lenient
    think_prefilled: true
    weight: 0.25
    tasks: [gsm8k]
)";

constexpr const char* kTaskSpecific = R"(rules:
  - type: math
    extract: [boxed, answer_tag]
    tasks: [math]
  - type: format
    mode: tag_count
    weight: 0.5
    tasks: [math, countdown]
)";

// Small limits for ScoreBatch, so that the fuzzer reaches both refusals.
constexpr size_t kFuzzMaxItems = 16;
constexpr size_t kFuzzMaxItemBytes = 512;

// The bytes the service counts for an item's limit (text fields and meta keys and values).
size_t ItemBytes(const grpo::v1::RewardRequestItem& p) {
  size_t n = p.completion().size() + p.answer().size() + p.prompt().size() + p.task().size();
  for (const auto& [k, v] : p.meta()) n += k.size() + v.size();
  return n;
}

const RuleSet& Rules(int which) {
  static const std::vector<RuleSet>* sets = [] {
    auto* v = new std::vector<RuleSet>;
    for (const char* text : {kEveryTask, kTaskSpecific}) {
      auto config = grpo::Config::Parse(text, "fuzz rules");
      if (!config.ok()) std::abort();
      auto rules = RuleSet::FromConfig(*config, {});
      if (!rules.ok()) {
        std::fprintf(stderr, "%s\n", std::string(rules.status().message()).c_str());
        std::abort();
      }
      v->push_back(std::move(*rules));
    }
    return v;
  }();
  return (*sets)[which];
}

void WriteSeeds(const std::string& dir) {
  auto item = [](grpo::v1::ScoreRequest& r, const char* id, const char* completion, const char* answer,
                 const char* task) {
    auto* it = r.add_items();
    it->set_id(id);
    it->set_completion(completion);
    it->set_answer(answer);
    it->set_task(task);
    it->set_prompt("What is 6 * 7?");
    return it;
  };
  std::vector<grpo::v1::ScoreRequest> seeds(3);
  item(seeds[0], "a", "<think>6*7</think><answer>42</answer>", "42", "math");
  item(seeds[0], "b", "<think>hm</think> \\boxed{\\frac{1}{2}}", "0.5", "gsm8k");
  item(seeds[1], "c", "The answer is 3.", "3", "");
  (*item(seeds[1], "d", "<answer>x^2+1</answer>", "1+x^2", "countdown")->mutable_meta())["target"] = "24";
  item(seeds[2], "e", "<think></think><answer>", "", "poetry");
  int n = 0;
  for (const auto& s : seeds) {
    std::ofstream(dir + "/seed" + std::to_string(n++), std::ios::binary) << s.SerializeAsString();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // not a line per invalid UTF-8 string refused
  if (const char* dir = std::getenv("GRPO_FUZZ_SEED_DIR")) WriteSeeds(dir);
  Rules(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  grpo::v1::ScoreRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  for (int which = 0; which < 2; ++which) {
    const RuleSet& rules = Rules(which);
    grpo::v1::ScoreResponse response;
    for (const grpo::v1::RewardRequestItem& p : request.items()) {
      const grpo::reward::RewardItem item = grpo::reward::FromProto(p);
      grpo::v1::RewardRequestItem known = p;  // fields of a newer client are not carried
      known.DiscardUnknownFields();
      CHECK(google::protobuf::util::MessageDifferencer::Equals(grpo::reward::ToProto(item, p.id()), known));

      const auto start = std::chrono::steady_clock::now();
      const grpo::reward::ItemResult r = rules.Score(item);
      CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
      grpo::v1::RewardResult* out = response.add_results();
      grpo::reward::ToRewardResult(p.id(), r, out);

      CHECK(out->id() == p.id());
      CHECK(out->has_reward() == out->error().empty());
      // The rules whose tasks admit the item, in configuration order.
      std::vector<std::string> applied;
      for (const auto& c : rules.rules()) {
        bool applies = c.tasks.empty();
        for (const auto& t : c.tasks) applies |= t == p.task();
        if (applies) applied.push_back(c.name);
      }
      if (out->rules_size() > 0) {
        CHECK(out->rules_size() == static_cast<int>(applied.size()));
      } else {
        CHECK(!out->error().empty());
      }
      double total = 0;
      for (int i = 0; i < out->rules_size(); ++i) {
        const grpo::v1::RuleScore& s = out->rules(i);
        CHECK(s.rule() == applied[i]);
        CHECK(std::isfinite(s.score()) && s.score() >= 0 && s.score() <= 1);
        if (!s.error().empty()) CHECK(s.score() == 0);
        total += s.weight() * s.score();
      }
      if (out->has_reward()) {
        CHECK(std::isfinite(out->reward()));
        CHECK(out->reward() == total);
      }
    }
    CHECK(response.results_size() == request.items_size());
    grpo::v1::ScoreResponse back;
    CHECK(back.ParseFromString(response.SerializeAsString()));
    CHECK(google::protobuf::util::MessageDifferencer::Equals(back, response));

    // The service's own batch path (ScoreBatch) under small limits: a batch above the item limit
    // is refused whole; an item above the byte limit gets a per-item error; every other item
    // gets exactly the result scored above.
    const grpo::reward::ScoreLimits limits{kFuzzMaxItems, kFuzzMaxItemBytes};
    grpo::v1::ScoreResponse served;
    const absl::Status st = grpo::reward::ScoreBatch(rules, request, limits, [] { return false; }, nullptr, &served);
    if (static_cast<size_t>(request.items_size()) > kFuzzMaxItems) {
      CHECK(absl::IsResourceExhausted(st));
      CHECK(served.results_size() == 0);
      continue;
    }
    CHECK(st.ok());
    CHECK(served.results_size() == request.items_size());
    for (int i = 0; i < request.items_size(); ++i) {
      const grpo::v1::RewardResult& got = served.results(i);
      if (ItemBytes(request.items(i)) > kFuzzMaxItemBytes) {
        CHECK(!got.has_reward() && got.rules_size() == 0);
        CHECK(got.error().find("exceeds the limit of") != std::string::npos);
        CHECK(got.id() == request.items(i).id());
      } else {
        CHECK(google::protobuf::util::MessageDifferencer::Equals(got, response.results(i)));
      }
    }
    // An expired deadline ends the batch with DeadlineExceeded, whatever it holds.
    if (request.items_size() > 0) {
      CHECK(absl::IsDeadlineExceeded(
          grpo::reward::ScoreBatch(rules, request, limits, [] { return true; }, nullptr, &served)));
    }
  }
  return 0;
}
