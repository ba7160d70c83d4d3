#include "store/test_fixture.h"

#include <cstdlib>
#include <filesystem>

namespace grpo::store::testing {
namespace {

using grpo::v1::PromptRecord;
using grpo::v1::Trajectory;

constexpr int64_t kFixedTime = 1795000000;  // 2026-11-18, fixed so golden files are stable

struct DemoSample {
  const char* text;
  int tokens;
  std::optional<double> math;  // nullopt: reward error
  double format;
  grpo::v1::FinishReason finish = grpo::v1::FINISH_REASON_STOP;
};

Trajectory MakeDemo(uint64_t step, uint32_t prompt, uint32_t sample, const DemoSample& d) {
  Trajectory t;
  t.set_step(step);
  t.set_prompt_index(prompt);
  t.set_sample_index(sample);
  t.set_group_id(step * 100 + prompt);
  t.set_advantage(0.0f);
  auto* s = t.mutable_sample();
  s->set_text(d.text);
  s->set_finish_reason(d.finish);
  s->set_sample_index(sample);
  s->set_seed(1000 * step + 10 * prompt + sample);
  for (int i = 0; i < d.tokens; ++i) {
    s->add_token_ids(100 + i);
    s->add_logprobs(-0.5f);
  }
  auto* span = s->add_weight_versions();
  span->set_version(step);
  span->set_first_token(0);
  auto* r = t.mutable_reward();
  r->set_id(std::to_string(step) + "/" + std::to_string(prompt) + "/" + std::to_string(sample));
  auto* math = r->add_rules();
  math->set_rule("math");
  math->set_weight(1.0);
  auto* format = r->add_rules();
  format->set_rule("format");
  format->set_weight(0.5);
  format->set_score(d.format);
  if (d.math) {
    math->set_score(*d.math);
    r->set_reward(*d.math + 0.5 * d.format);
  } else {
    math->set_error("malformed gold answer");
    r->set_error("rule 'math': malformed gold answer");
  }
  t.mutable_generated_at()->set_seconds(kFixedTime + step);
  t.mutable_stored_at()->set_seconds(kFixedTime + step);
  return t;
}

PromptRecord MakePrompt(uint64_t step, uint32_t prompt, const char* question, const char* answer) {
  PromptRecord p;
  p.set_step(step);
  p.set_prompt_index(prompt);
  p.set_group_id(step * 100 + prompt);
  p.set_prompt_text(question);
  p.set_answer(answer);
  p.set_dataset("demo-math");
  p.set_dataset_row_id("row-" + std::to_string(step * 2 + prompt));
  p.set_task("math");
  for (int i = 0; i < 5; ++i) p.add_prompt_token_ids(10 + i);
  return p;
}

}  // namespace

std::string FreshPath(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::filesystem::path p = std::filesystem::path(tmp ? tmp : "/tmp") / name;
  std::filesystem::remove_all(p);
  return p.string();
}

std::string FreshDir(const std::string& name) {
  const std::string p = FreshPath(name);
  std::filesystem::create_directories(p);
  return p;
}

grpo::v1::RunMetadata DemoRunMetadata(const std::string& run) {
  grpo::v1::RunMetadata m;
  m.set_run_name(run);
  m.set_recipe_yaml("name: " + run + "\nseed: 7\n");
  m.mutable_model()->set_path("models/nano");
  m.mutable_model()->set_model_type("qwen2");
  m.mutable_model()->set_config_sha256(std::string(64, 'a'));
  m.mutable_tokenizer()->set_path("models/nano/tokenizer.json");
  m.mutable_tokenizer()->set_tokenizer_sha256(std::string(64, 'b'));
  m.set_code_version("test");
  m.mutable_created_at()->set_seconds(kFixedTime);
  m.set_seed(7);
  return m;
}

absl::Status WriteDemoRun(TrajectoryStore& store) {
  GRPO_RETURN_IF_ERROR(store.CreateRun(DemoRunMetadata("demo")));
  using F = grpo::v1::FinishReason;
  // step 0, prompt 0: two correct (tie on total reward), one wrong.
  // step 0, prompt 1: a reward error, a truncated wrong one, an aborted one.
  // step 1, prompt 0: duplicate of step 0 prompt 0's first completion (same prompt text), one
  //                   without <think>, one long (40 tokens).
  // step 1, prompt 1: all wrong, different rewards; one with "é" and a quote to test escaping.
  const DemoSample s00[] = {
      {"<think>2+2 is 4.</think><answer>4</answer>", 12, 1.0, 1.0},
      {"<think>Two plus two: 4.</think><answer>4</answer>", 14, 1.0, 1.0},
      {"<think>maybe 5</think><answer>5</answer>", 8, 0.0, 1.0}};
  const DemoSample s01[] = {
      {"<think>3*3=9</think><answer>9</answer>", 10, std::nullopt, 1.0},
      {"<think>3*3 is 6, or", 30, 0.0, 0.0, F::FINISH_REASON_LENGTH},
      {"<think>hmm", 3, 0.0, 0.0, F::FINISH_REASON_ABORTED}};
  const DemoSample s10[] = {
      {"<think>2+2 is 4.</think><answer>4</answer>", 12, 1.0, 1.0},
      {"The answer is 4.", 5, 1.0, 0.0},
      {"<think>Let me count: 1, 2, 3, 4. So 2+2 = 4.</think>\n<answer>4</answer>", 40, 1.0, 1.0}};
  const DemoSample s11[] = {
      {"<think>Café \"prices\": 7?</think><answer>7</answer>", 15, 0.0, 1.0},
      {"<think>8</think><answer>8</answer>", 6, 0.0, 0.5},
      {"<answer>10</answer>", 4, 0.0, 0.0}};
  const DemoSample* groups[2][2] = {{s00, s01}, {s10, s11}};
  const char* questions[2] = {"What is 2+2?", "What is 3*3?"};
  const char* answers[2] = {"4", "9"};
  for (uint64_t step = 0; step < 2; ++step) {
    StepRecords rec;
    rec.step = step;
    for (uint32_t p = 0; p < 2; ++p) {
      const char* q = (step == 1 && p == 1) ? "Price of a café?" : questions[p];
      rec.prompts.push_back(MakePrompt(step, p, q, step == 1 && p == 1 ? "9.5" : answers[p]));
      for (uint32_t s = 0; s < 3; ++s) rec.trajectories.push_back(MakeDemo(step, p, s, groups[step][p][s]));
    }
    GRPO_RETURN_IF_ERROR(store.WriteStep("demo", &rec));
  }
  return absl::OkStatus();
}

namespace {

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

Trajectory SyntheticSample(uint64_t step, uint32_t p, uint32_t s, const SyntheticShape& shape) {
  Trajectory t;
  t.set_step(step);
  t.set_prompt_index(p);
  t.set_sample_index(s);
  t.set_group_id(step * shape.prompts + p);
  uint64_t seed = Mix(step * 1000003 + p * 1009 + s);
  auto* smp = t.mutable_sample();
  smp->set_sample_index(s);
  smp->set_seed(seed);
  smp->set_finish_reason(grpo::v1::FINISH_REASON_STOP);
  smp->mutable_token_ids()->Reserve(shape.tokens);
  smp->mutable_logprobs()->Reserve(shape.tokens);
  uint64_t x = seed;
  for (uint32_t i = 0; i < shape.tokens; ++i) {
    x = Mix(x + i);
    smp->add_token_ids(static_cast<int32_t>(x % 151000));
    smp->add_logprobs(-static_cast<float>((x >> 20) % 10000) / 1000.0f);
    if (shape.raw_logprobs) smp->add_raw_logprobs(-static_cast<float>((x >> 40) % 10000) / 1000.0f);
  }
  auto* span = smp->add_weight_versions();
  span->set_version(step);
  if (shape.moe_layers > 0) {
    auto* r = smp->mutable_routing();
    r->set_num_moe_layers(shape.moe_layers);
    r->set_top_k(shape.top_k);
    const size_t n = static_cast<size_t>(shape.tokens) * shape.moe_layers * shape.top_k;
    r->mutable_experts()->Resize(static_cast<int>(n), 0);
    uint64_t y = seed;
    for (size_t i = 0; i < n; ++i) {
      if (i % 8 == 0) y = Mix(y + i);
      r->set_experts(static_cast<int>(i), static_cast<uint32_t>((y >> (8 * (i % 8))) & 0xff) % shape.num_experts);
    }
  }
  smp->set_text("<think>synthetic " + std::to_string(seed) + "</think><answer>" + std::to_string(seed % 100) +
                "</answer>");
  auto* rw = t.mutable_reward();
  double score = (seed % 2) ? 1.0 : 0.0;
  rw->set_reward(score);
  auto* rule = rw->add_rules();
  rule->set_rule("math");
  rule->set_score(score);
  rule->set_weight(1.0);
  t.set_advantage(static_cast<float>(score - 0.5));
  return t;
}

}  // namespace

StepRecords SyntheticStep(uint64_t step, const SyntheticShape& shape) {
  StepRecords rec;
  rec.step = step;
  for (uint32_t p = 0; p < shape.prompts; ++p) {
    PromptRecord pr;
    pr.set_prompt_index(p);
    pr.set_group_id(step * shape.prompts + p);
    pr.set_prompt_text("synthetic prompt " + std::to_string(step) + "/" + std::to_string(p));
    pr.set_dataset_row_id(std::to_string(step * shape.prompts + p));
    rec.prompts.push_back(std::move(pr));
    for (uint32_t s = 0; s < shape.group_size; ++s) rec.trajectories.push_back(SyntheticSample(step, p, s, shape));
  }
  return rec;
}

absl::Status CheckSyntheticSample(const Trajectory& t, const SyntheticShape& shape) {
  Trajectory want = SyntheticSample(t.step(), t.prompt_index(), t.sample_index(), shape);
  // Fields the store fills on write.
  want.set_format_version(t.format_version());
  want.set_run_name(t.run_name());
  want.set_dataset_row_id(t.dataset_row_id());
  *want.mutable_stored_at() = t.stored_at();
  if (want.SerializeAsString() != t.SerializeAsString()) {
    return absl::DataLossError("step " + std::to_string(t.step()) + " prompt " + std::to_string(t.prompt_index()) +
                              " sample " + std::to_string(t.sample_index()) + " differs from what was written");
  }
  return absl::OkStatus();
}

}  // namespace grpo::store::testing
