// ConnectTeacher against rollout servers in this process: a dead address fails within the
// connect deadline, calls go round robin, a server that stops is failed over, and with every
// server down the error names them all.
#include "learner/teacher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "learner/rl_test_util.h"
#include "model/presets.h"

namespace grpo {
namespace {

constexpr const char* kPreset = "llama-nano";

std::unique_ptr<CausalLM> MakeModel(uint64_t seed) { return rl_test::MakeModel(kPreset, seed); }

// `grpo rollout serve --serve-logprobs` in this process: Logprobs answers with the weights of
// `seed`.
struct ServedTeacher : rl_test::ServedEngine {
  explicit ServedTeacher(uint64_t seed) : ServedEngine(kPreset, seed, "127.0.0.1:0", /*serve_logprobs=*/true) {}
};

TeacherServerOptions Options(std::vector<std::string> endpoints) {
  TeacherServerOptions o;
  o.endpoints = std::move(endpoints);
  o.student_vocab_size = PresetConfig(kPreset)->vocab_size;
  o.timeout = absl::Seconds(30);
  return o;
}

// The embedded teacher's logits are those its logprobs come from; a teacher server has none.
TEST(EmbeddedTeacher, LogitsGiveItsLogprobs) {
  std::unique_ptr<Teacher> teacher = EmbeddedTeacher(MakeModel(3));
  const int64_t V = PresetConfig(kPreset)->vocab_size;
  const std::vector<std::vector<int32_t>> seqs = {{1, 5, 9, 2}, {7}, {4, 4}};
  auto lp = teacher->Logprobs(seqs);
  auto logits = teacher->Logits(seqs);
  ASSERT_TRUE(lp.ok() && logits.ok()) << lp.status() << logits.status();
  ASSERT_EQ(logits->size(), 3u);
  for (size_t s = 0; s < seqs.size(); ++s) {
    ASSERT_EQ((*logits)[s].size(), (seqs[s].size() - 1) * V) << s;
    for (size_t i = 0; i + 1 < seqs[s].size(); ++i) {
      const float* z = (*logits)[s].data() + i * V;
      const double mx = *std::max_element(z, z + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(z[v] - mx);
      EXPECT_NEAR((*lp)[s][i], z[seqs[s][i + 1]] - mx - std::log(sum), 1e-5) << s << " " << i;
    }
  }
  ServedTeacher server(3);
  auto remote = ConnectTeacher(Options({server.endpoint}));
  ASSERT_TRUE(remote.ok()) << remote.status();
  const absl::Status st = (*remote)->Logits(seqs).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("distill.teacher"), std::string::npos) << st;
}

TEST(ConnectTeacher, ADeadAddressFailsWithinTheConnectDeadlineNamingIt) {
  ServedTeacher gone(1);
  const std::string dead = gone.endpoint;  // nothing listens there once stopped
  gone.Stop();
  TeacherServerOptions o = Options({dead});
  o.connect_timeout = absl::Seconds(1);
  const absl::Time t0 = absl::Now();
  auto teacher = ConnectTeacher(o);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  ASSERT_FALSE(teacher.ok());
  EXPECT_EQ(teacher.status().code(), absl::StatusCode::kUnavailable);
  const std::string message(teacher.status().message());
  EXPECT_NE(message.find("distill.teacher_server " + dead), std::string::npos) << message;
  EXPECT_NE(message.find("1s connect deadline"), std::string::npos) << message;
}

TEST(ConnectTeacher, EveryServerIsCheckedAtConnect) {
  ServedTeacher good(1);
  TeacherServerOptions o = Options({good.endpoint, "127.0.0.1:1"});
  o.connect_timeout = absl::Milliseconds(500);
  auto teacher = ConnectTeacher(o);
  ASSERT_FALSE(teacher.ok());
  EXPECT_NE(std::string(teacher.status().message()).find("127.0.0.1:1"), std::string::npos);
  o.student_vocab_size += 1;
  o.endpoints = {good.endpoint};
  teacher = ConnectTeacher(o);
  ASSERT_FALSE(teacher.ok());
  EXPECT_NE(std::string(teacher.status().message()).find("vocab_size"), std::string::npos);
}

// Two servers holding different models (seeds 7 and 8), so each answer says who gave it.
TEST(ConnectTeacher, CallsGoRoundRobinAndFailOverToTheServersLeft) {
  ServedTeacher a(7), b(8);
  const std::vector<std::vector<int32_t>> seqs = {{5, 9, 200, 31, 64}, {5, 9, 7}};
  auto from_a = EmbeddedTeacher(MakeModel(7))->Logprobs(seqs);
  auto from_b = EmbeddedTeacher(MakeModel(8))->Logprobs(seqs);
  ASSERT_TRUE(from_a.ok() && from_b.ok());
  ASSERT_NE(*from_a, *from_b);
  auto teacher = ConnectTeacher(Options({a.endpoint, b.endpoint}));
  ASSERT_TRUE(teacher.ok()) << teacher.status().ToString();
  for (int call = 0; call < 4; ++call) {
    auto got = (*teacher)->Logprobs(seqs);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, call % 2 == 0 ? *from_a : *from_b) << "call " << call;
  }
  a.Stop();
  for (int call = 4; call < 7; ++call) {  // call 4 is a's turn: retried on b
    auto got = (*teacher)->Logprobs(seqs);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, *from_b) << "call " << call;
  }
  b.Stop();
  auto none = (*teacher)->Logprobs(seqs);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  const std::string message(none.status().message());
  EXPECT_NE(message.find(a.endpoint), std::string::npos) << message;
  EXPECT_NE(message.find(b.endpoint), std::string::npos) << message;
}

}  // namespace
}  // namespace grpo
