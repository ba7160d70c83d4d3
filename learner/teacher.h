// The teacher of on-policy distillation (recipe distill.*): the log-probability it gives every
// token of the student's samples.
//
// Contract:
//  - Logprobs(sequences): for each sequence (prompt + completion token ids, at least one token)
//    the len - 1 values log p(t_i | t_<i), i >= 1, at temperature 1, in sequence order.
//  - EmbeddedTeacher: a CausalLM in this process (distill.teacher), one Forward per call.
//  - ConnectTeacher: a `grpo rollout serve --serve-logprobs` server (distill.teacher_server),
//    one Logprobs RPC per call with a deadline. Connecting checks, with one Health call within
//    the deadline, that the server is SERVING, serves Logprobs, and has the student's
//    vocabulary size; errors name distill.teacher_server and the endpoint. A failed call
//    (unreachable, deadline, a request over the server's limits) fails the step with the
//    server's message; nothing is retried (the teacher is one server).
//  - Thread-compatible: one trainer thread calls it.
#ifndef GRPO_LEARNER_TEACHER_H_
#define GRPO_LEARNER_TEACHER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"
#include "model/causal_lm.h"

namespace grpo {

class Teacher {
 public:
  virtual ~Teacher() = default;
  virtual absl::StatusOr<std::vector<std::vector<float>>> Logprobs(
      const std::vector<std::vector<int32_t>>& sequences) = 0;
};

std::unique_ptr<Teacher> EmbeddedTeacher(std::unique_ptr<CausalLM> model);

struct TeacherServerOptions {
  std::string endpoint;                          // HOST:PORT
  int64_t student_vocab_size = 0;                // the server's must equal it
  absl::Duration timeout = absl::Minutes(5);     // deadline of each RPC
  int max_message_mb = 512;                      // largest response accepted
};

absl::StatusOr<std::unique_ptr<Teacher>> ConnectTeacher(const TeacherServerOptions& options);

}  // namespace grpo

#endif  // GRPO_LEARNER_TEACHER_H_
