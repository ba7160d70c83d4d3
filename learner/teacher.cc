#include "learner/teacher.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/time/clock.h"
#include "proto/rollout.grpc.pb.h"

namespace grpo {
namespace {

class Embedded final : public Teacher {
 public:
  explicit Embedded(std::unique_ptr<CausalLM> model) : model_(std::move(model)) {}

  absl::StatusOr<std::vector<std::vector<float>>> Logprobs(
      const std::vector<std::vector<int32_t>>& sequences) override {
    GRPO_ASSIGN_OR_RETURN(ForwardOutput out, model_->Forward(TokenBatch::FromSequences(sequences), {}));
    std::vector<std::vector<float>> result;
    size_t at = 0;
    for (const auto& s : sequences) {
      const size_t n = s.empty() ? 0 : s.size() - 1;
      result.emplace_back(out.logprobs.begin() + at, out.logprobs.begin() + at + n);
      at += n;
    }
    return result;
  }

 private:
  std::unique_ptr<CausalLM> model_;
};

// The absl::Status of a failed RPC, naming the key and the endpoint.
absl::Status RpcError(const std::string& endpoint, const char* rpc, const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      "distill.teacher_server " + endpoint + ": " + rpc + " failed: " + s.error_message());
}

class Remote final : public Teacher {
 public:
  explicit Remote(TeacherServerOptions o) : o_(std::move(o)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(o_.max_message_mb << 20);
    args.SetMaxSendMessageSize(o_.max_message_mb << 20);
    stub_ = grpo::v1::RolloutService::NewStub(
        grpc::CreateCustomChannel(o_.endpoint, grpc::InsecureChannelCredentials(), args));
  }

  absl::Status Check() {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + o_.timeout));
    ctx.set_wait_for_ready(true);  // a server still starting is waited for, within the deadline
    grpo::v1::RolloutHealthResponse health;
    grpc::Status s = stub_->Health(&ctx, grpo::v1::RolloutHealthRequest(), &health);
    if (!s.ok()) return RpcError(o_.endpoint, "Health", s);
    const std::string who = "distill.teacher_server " + o_.endpoint;
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

  absl::StatusOr<std::vector<std::vector<float>>> Logprobs(
      const std::vector<std::vector<int32_t>>& sequences) override {
    grpo::v1::LogprobsRequest req;
    req.set_request_id("distill-" + std::to_string(++calls_));
    for (const auto& s : sequences) req.add_sequences()->mutable_token_ids()->Add(s.begin(), s.end());
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + o_.timeout));
    grpo::v1::LogprobsResponse resp;
    grpc::Status s = stub_->Logprobs(&ctx, req, &resp);
    if (!s.ok()) return RpcError(o_.endpoint, "Logprobs", s);
    if (resp.sequences_size() != static_cast<int>(sequences.size())) {
      return absl::InternalError("distill.teacher_server " + o_.endpoint + " answered " +
                                 std::to_string(resp.sequences_size()) + " sequences for " +
                                 std::to_string(sequences.size()));
    }
    std::vector<std::vector<float>> result;
    for (size_t i = 0; i < sequences.size(); ++i) {
      const auto& lp = resp.sequences(static_cast<int>(i)).logprobs();
      if (lp.size() + 1 != static_cast<int>(sequences[i].size())) {
        return absl::InternalError("distill.teacher_server " + o_.endpoint + " answered " +
                                   std::to_string(lp.size()) + " logprobs for a sequence of " +
                                   std::to_string(sequences[i].size()) + " tokens");
      }
      result.emplace_back(lp.begin(), lp.end());
    }
    return result;
  }

 private:
  TeacherServerOptions o_;
  std::unique_ptr<grpo::v1::RolloutService::Stub> stub_;
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
