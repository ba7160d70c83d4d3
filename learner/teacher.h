// The teacher of on-policy distillation (recipe distill.*): the log-probability it gives every
// token of the student's samples.
//
// Contract:
//  - Logprobs(sequences): for each sequence (prompt + completion token ids, at least one token)
//    the len - 1 values log p(t_i | t_<i), i >= 1, at temperature 1, in sequence order.
//  - Logits(sequences): for each sequence its (len - 1) x vocab next-token logits (row i - 1
//    predicts t_i), row-major: what full-distribution distillation (distill.divergence
//    reverse_kl / forward_kl) needs. The embedded teacher only; a teacher server answers
//    Unimplemented (its RPC carries the sampled tokens' logprobs, not distributions).
//  - EmbeddedTeacher: a CausalLM in this process (distill.teacher), one Forward per call.
//  - ConnectTeacher: `grpo rollout serve --serve-logprobs` servers (distill.teacher_server, one
//    or a list). Connecting checks each server with one Health call within connect_timeout
//    (waiting for a server still starting): SERVING, serves Logprobs, the student's vocabulary
//    size. Any server failing it fails the connect at once, naming distill.teacher_server, the
//    endpoint and, for no answer, the connect deadline (a wrong address costs connect_timeout,
//    not the RPC timeout).
//  - Logprobs: one Logprobs RPC per call with a deadline (timeout), sent round robin over the
//    servers (call k starts at server k mod n). A call a server fails (unreachable, deadline,
//    any error but INVALID_ARGUMENT, or an answer of the wrong shape) marks that server down and
//    the same request goes to the next server; servers marked down are tried after the others,
//    and one that answers again is marked up. INVALID_ARGUMENT (the request is over the
//    server's limits, and would be on every server) fails the call at once. When every server
//    fails, Unavailable naming each endpoint with its error. The servers serve the same model,
//    so where a call runs does not change its result.
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
  virtual absl::StatusOr<std::vector<std::vector<float>>> Logits(
      const std::vector<std::vector<int32_t>>& sequences) = 0;
};

std::unique_ptr<Teacher> EmbeddedTeacher(std::unique_ptr<CausalLM> model);

struct TeacherServerOptions {
  std::vector<std::string> endpoints;                   // HOST:PORT of each server
  int64_t student_vocab_size = 0;                       // each server's must equal it
  absl::Duration connect_timeout = absl::Seconds(10);   // the Health check of each server
  absl::Duration timeout = absl::Minutes(5);            // deadline of each Logprobs RPC
  int max_message_mb = 512;                             // largest response accepted
};

absl::StatusOr<std::unique_ptr<Teacher>> ConnectTeacher(const TeacherServerOptions& options);

}  // namespace grpo

#endif  // GRPO_LEARNER_TEACHER_H_
