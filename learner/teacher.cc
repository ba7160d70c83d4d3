#include "learner/teacher.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <utility>

#include "absl/time/clock.h"
#include "proto/rollout.grpc.pb.h"

namespace grpo {
namespace {

// Forward's per-target values (`width` per target, targets sequence after sequence) cut into
// one vector per sequence: its len - 1 targets.
std::vector<std::vector<float>> PerSequence(const std::vector<float>& flat,
                                            const std::vector<std::vector<int32_t>>& sequences, size_t width) {
  std::vector<std::vector<float>> result;
  size_t at = 0;
  for (const auto& s : sequences) {
    const size_t n = s.empty() ? 0 : (s.size() - 1) * width;
    result.emplace_back(flat.begin() + at, flat.begin() + at + n);
    at += n;
  }
  return result;
}

class Embedded final : public Teacher {
 public:
  explicit Embedded(std::unique_ptr<CausalLM> model) : model_(std::move(model)) {}

  absl::StatusOr<std::vector<std::vector<float>>> Logprobs(
      const std::vector<std::vector<int32_t>>& sequences) override {
    GRPO_ASSIGN_OR_RETURN(ForwardOutput out, model_->Forward(TokenBatch::FromSequences(sequences), {}));
    return PerSequence(out.logprobs, sequences, 1);
  }

  absl::StatusOr<std::vector<std::vector<float>>> Logits(
      const std::vector<std::vector<int32_t>>& sequences) override {
    GRPO_ASSIGN_OR_RETURN(ForwardOutput out,
                          model_->Forward(TokenBatch::FromSequences(sequences), {.return_logits = true}));
    return PerSequence(out.logits, sequences, static_cast<size_t>(model_->config().vocab_size));
  }

 private:
  std::unique_ptr<CausalLM> model_;
};

// What errors of the teacher name: the key and the endpoint.
std::string Who(const std::string& endpoint) { return "distill.teacher_server " + endpoint; }

// The absl::Status of a failed RPC, naming the key and the endpoint.
absl::Status RpcError(const std::string& endpoint, const char* rpc, const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      Who(endpoint) + ": " + rpc + " failed: " + s.error_message());
}

// One teacher server: its channel and whether its last call failed.
struct TeacherServer {
  std::string endpoint;
  std::unique_ptr<grpo::v1::RolloutService::Stub> stub;
  bool down = false;
};

class Remote final : public Teacher {
 public:
  explicit Remote(TeacherServerOptions o) : o_(std::move(o)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(o_.max_message_mb << 20);
    args.SetMaxSendMessageSize(o_.max_message_mb << 20);
    for (const std::string& e : o_.endpoints) {
      servers_.push_back({e, grpo::v1::RolloutService::NewStub(
                                 grpc::CreateCustomChannel(e, grpc::InsecureChannelCredentials(), args))});
    }
  }

  // Every server, one after another; the first that fails the check fails the connect.
  absl::Status Check() {
    if (servers_.empty()) return absl::InvalidArgumentError("distill.teacher_server: no endpoints");
    for (const TeacherServer& server : servers_) GRPO_RETURN_IF_ERROR(CheckOne(server));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::vector<float>>> Logits(
      const std::vector<std::vector<int32_t>>&) override {
    return absl::UnimplementedError(
        "distill.teacher_server gives the sampled tokens' logprobs, not whole distributions: "
        "distill.divergence reverse_kl / forward_kl need an embedded teacher (distill.teacher)");
  }

  absl::StatusOr<std::vector<std::vector<float>>> Logprobs(
      const std::vector<std::vector<int32_t>>& sequences) override {
    grpo::v1::LogprobsRequest req;
    req.set_request_id("distill-" + std::to_string(++calls_));
    for (const auto& s : sequences) req.add_sequences()->mutable_token_ids()->Add(s.begin(), s.end());
    std::string errors;
    for (size_t i : AttemptOrder()) {
      TeacherServer& server = servers_[i];
      absl::StatusOr<std::vector<std::vector<float>>> result = CallOne(server, req, sequences);
      if (result.ok()) {
        if (server.down) std::fprintf(stderr, "grpo train: teacher server %s is back\n", server.endpoint.c_str());
        server.down = false;
        return result;
      }
      if (result.status().code() == absl::StatusCode::kInvalidArgument) return result.status();
      if (!server.down) {
        std::fprintf(stderr, "grpo train: teacher server %s marked down (%s)\n", server.endpoint.c_str(),
                     std::string(result.status().message()).c_str());
      }
      server.down = true;
      errors += (errors.empty() ? "" : "; ") + std::string(result.status().message());
    }
    std::string all;
    for (const TeacherServer& server : servers_) all += (all.empty() ? "" : ", ") + server.endpoint;
    return absl::UnavailableError("distill.teacher_server: every teacher server failed (" + all + "): " + errors);
  }

 private:
  absl::Status CheckOne(const TeacherServer& server) const {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + o_.connect_timeout));
    ctx.set_wait_for_ready(true);  // a server still starting is waited for, within the deadline
    grpo::v1::RolloutHealthResponse health;
    grpc::Status s = server.stub->Health(&ctx, grpo::v1::RolloutHealthRequest(), &health);
    const std::string who = Who(server.endpoint);
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::UnavailableError(who + ": no answer to Health within the " +
                                    absl::FormatDuration(o_.connect_timeout) +
                                    " connect deadline; is `grpo rollout serve --serve-logprobs` listening there? (" +
                                    s.error_message() + ")");
    }
    if (!s.ok()) return RpcError(server.endpoint, "Health", s);
    if (health.status() != grpo::v1::RolloutHealthResponse::SERVING) {
      return absl::UnavailableError(who + " is not serving");
    }
    if (!health.serves_logprobs()) {
      return absl::FailedPreconditionError(who + " does not serve Logprobs: start it with "
                                                 "`grpo rollout serve --serve-logprobs`");
    }
    if (health.vocab_size() != o_.student_vocab_size) {
      return absl::InvalidArgumentError(who + " has vocab_size " + std::to_string(health.vocab_size()) +
                                        ", the student " + std::to_string(o_.student_vocab_size) +
                                        ": they must share the tokenizer");
    }
    return absl::OkStatus();
  }

  // The servers the current call (number calls_, from 1) tries, in order: round robin from
  // (calls_ - 1) mod n, those marked down last.
  std::vector<size_t> AttemptOrder() const {
    std::vector<size_t> up, down;
    for (size_t k = 0; k < servers_.size(); ++k) {
      const size_t i = (calls_ - 1 + k) % servers_.size();
      (servers_[i].down ? down : up).push_back(i);
    }
    up.insert(up.end(), down.begin(), down.end());
    return up;
  }

  // One Logprobs RPC to `server`, its answer checked against `sequences`.
  absl::StatusOr<std::vector<std::vector<float>>> CallOne(const TeacherServer& server,
                                                          const grpo::v1::LogprobsRequest& req,
                                                          const std::vector<std::vector<int32_t>>& sequences) const {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + o_.timeout));
    grpo::v1::LogprobsResponse resp;
    grpc::Status s = server.stub->Logprobs(&ctx, req, &resp);
    if (!s.ok()) return RpcError(server.endpoint, "Logprobs", s);
    if (resp.sequences_size() != static_cast<int>(sequences.size())) {
      return absl::InternalError(Who(server.endpoint) + " answered " + std::to_string(resp.sequences_size()) +
                                 " sequences for " + std::to_string(sequences.size()));
    }
    std::vector<std::vector<float>> result;
    for (size_t i = 0; i < sequences.size(); ++i) {
      const auto& lp = resp.sequences(static_cast<int>(i)).logprobs();
      if (lp.size() + 1 != static_cast<int>(sequences[i].size())) {
        return absl::InternalError(Who(server.endpoint) + " answered " + std::to_string(lp.size()) +
                                   " logprobs for a sequence of " + std::to_string(sequences[i].size()) + " tokens");
      }
      result.emplace_back(lp.begin(), lp.end());
    }
    return result;
  }

  TeacherServerOptions o_;
  std::vector<TeacherServer> servers_;
  uint64_t calls_ = 0;
};

}  // namespace

std::unique_ptr<Teacher> EmbeddedTeacher(std::unique_ptr<CausalLM> model) {
  return std::make_unique<Embedded>(std::move(model));
}

absl::StatusOr<std::unique_ptr<Teacher>> ConnectTeacher(const TeacherServerOptions& options) {
  auto teacher = std::make_unique<Remote>(options);
  GRPO_RETURN_IF_ERROR(teacher->Check());
  return std::unique_ptr<Teacher>(std::move(teacher));
}

}  // namespace grpo
