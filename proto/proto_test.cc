// Tests of the grpo.v1 wire contract: round trips of the stored and streamed messages, unknown
// field tolerance, that the generated gRPC code links and serves, and that every element of the
// .proto files carries a documentation comment.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/file.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "proto/reward.grpc.pb.h"
#include "proto/reward.pb.h"
#include "proto/rollout.grpc.pb.h"
#include "proto/rollout.pb.h"
#include "proto/sample.pb.h"
#include "proto/trajectory.pb.h"

namespace grpo::v1 {
namespace {

Sample MakeSample() {
  Sample s;
  for (int32_t id : {151644, 42, 7, 151645}) s.add_token_ids(id);
  for (float lp : {-0.25f, -1.5f, -0.0625f, 0.0f}) s.add_logprobs(lp);
  for (float lp : {-0.5f, -1.75f, -0.125f, -0.001f}) s.add_raw_logprobs(lp);
  s.set_finish_reason(FINISH_REASON_STOP);
  WeightVersionSpan* v0 = s.add_weight_versions();
  v0->set_version(11);
  v0->set_first_token(0);
  WeightVersionSpan* v1 = s.add_weight_versions();
  v1->set_version(12);
  v1->set_first_token(3);
  TokenRouting* r = s.mutable_routing();
  r->set_num_moe_layers(2);
  r->set_top_k(2);
  for (uint32_t e = 0; e < 4 * 2 * 2; ++e) r->add_experts(e * 5 % 64);
  s.set_text("<think>ok</think><answer>42</answer>");
  s.set_seed(0xDEADBEEFCAFEull);
  s.set_sample_index(3);
  return s;
}

TEST(ProtoTest, TrajectoryRoundTrip) {
  Trajectory t;
  t.set_format_version(1);
  t.set_run_name("nano-r1-zero");
  t.set_step(17);
  t.set_prompt_index(5);
  t.set_sample_index(3);
  t.set_group_id(17 * 64 + 5);
  *t.mutable_sample() = MakeSample();
  RewardResult* rw = t.mutable_reward();
  rw->set_id("17/5/3");
  rw->set_reward(1.1);
  RuleScore* acc = rw->add_rules();
  acc->set_rule("accuracy");
  acc->set_score(1.0);
  acc->set_weight(1.0);
  acc->set_detail("extracted 42, expected 42");
  RuleScore* fmt = rw->add_rules();
  fmt->set_rule("format");
  fmt->set_score(1.0);
  fmt->set_weight(0.1);
  t.set_advantage(0.875f);
  t.set_dataset_row_id("gsm8k-train-1234");
  t.mutable_generated_at()->set_seconds(1700000000);
  t.mutable_generated_at()->set_nanos(500);
  t.mutable_stored_at()->set_seconds(1700000001);

  std::string bytes;
  ASSERT_TRUE(t.SerializeToString(&bytes));
  Trajectory u;
  ASSERT_TRUE(u.ParseFromString(bytes));

  EXPECT_EQ(u.format_version(), 1u);
  EXPECT_EQ(u.run_name(), "nano-r1-zero");
  EXPECT_EQ(u.step(), 17u);
  EXPECT_EQ(u.prompt_index(), 5u);
  EXPECT_EQ(u.sample_index(), 3u);
  EXPECT_EQ(u.group_id(), 17u * 64 + 5);
  const Sample& s = u.sample();
  EXPECT_EQ(std::vector<int32_t>(s.token_ids().begin(), s.token_ids().end()),
            (std::vector<int32_t>{151644, 42, 7, 151645}));
  ASSERT_EQ(s.logprobs_size(), 4);
  EXPECT_FLOAT_EQ(s.logprobs(1), -1.5f);
  ASSERT_EQ(s.raw_logprobs_size(), 4);
  EXPECT_FLOAT_EQ(s.raw_logprobs(3), -0.001f);
  EXPECT_EQ(s.finish_reason(), FINISH_REASON_STOP);
  ASSERT_EQ(s.weight_versions_size(), 2);
  EXPECT_EQ(s.weight_versions(0).version(), 11u);
  EXPECT_EQ(s.weight_versions(0).first_token(), 0u);
  EXPECT_EQ(s.weight_versions(1).version(), 12u);
  EXPECT_EQ(s.weight_versions(1).first_token(), 3u);
  ASSERT_TRUE(s.has_routing());
  EXPECT_EQ(s.routing().num_moe_layers(), 2u);
  EXPECT_EQ(s.routing().top_k(), 2u);
  ASSERT_EQ(s.routing().experts_size(), s.token_ids_size() * 2 * 2);
  // experts[(t * L + l) * K + k]: token 2, layer 1, rank 0 -> index 10 -> 50 % 64.
  EXPECT_EQ(s.routing().experts((2 * 2 + 1) * 2 + 0), 50u);
  EXPECT_EQ(s.text(), "<think>ok</think><answer>42</answer>");
  EXPECT_EQ(s.seed(), 0xDEADBEEFCAFEull);
  EXPECT_EQ(s.sample_index(), 3u);
  ASSERT_TRUE(u.reward().has_reward());
  EXPECT_DOUBLE_EQ(u.reward().reward(), 1.1);
  EXPECT_TRUE(u.reward().error().empty());
  ASSERT_EQ(u.reward().rules_size(), 2);
  EXPECT_EQ(u.reward().rules(0).rule(), "accuracy");
  EXPECT_EQ(u.reward().rules(0).detail(), "extracted 42, expected 42");
  EXPECT_EQ(u.reward().rules(1).rule(), "format");
  EXPECT_DOUBLE_EQ(u.reward().rules(1).weight(), 0.1);
  EXPECT_FLOAT_EQ(u.advantage(), 0.875f);
  EXPECT_EQ(u.dataset_row_id(), "gsm8k-train-1234");
  EXPECT_EQ(u.generated_at().seconds(), 1700000000);
  EXPECT_EQ(u.generated_at().nanos(), 500);
  EXPECT_EQ(u.stored_at().seconds(), 1700000001);
  // Serialization is deterministic for a message without maps: same bytes again.
  EXPECT_EQ(u.SerializeAsString(), bytes);
}

TEST(ProtoTest, RewardErrorIsNotAReward) {
  RewardResult r;
  r.set_id("x");
  r.set_error("rule accuracy: malformed gold answer");
  RewardResult u;
  ASSERT_TRUE(u.ParseFromString(r.SerializeAsString()));
  // `optional` gives presence: an unscored item is distinguishable from a reward of 0.
  EXPECT_FALSE(u.has_reward());
  EXPECT_EQ(u.error(), "rule accuracy: malformed gold answer");
  u.set_reward(0.0);
  RewardResult z;
  ASSERT_TRUE(z.ParseFromString(u.SerializeAsString()));
  EXPECT_TRUE(z.has_reward());
  EXPECT_EQ(z.reward(), 0.0);
}

TEST(ProtoTest, WeightUpdateChunkRoundTrip) {
  WeightUpdateChunk c;
  c.set_version(12);
  c.set_tensor_name("model.layers.3.mlp.experts.7.up_proj.weight");
  c.set_dtype(DTYPE_F8_E4M3);
  c.add_shape(2048);
  c.add_shape(7168);
  c.set_offset(4u << 20);
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  c.set_data(data);
  c.set_crc32c(0xE3069283u);  // high bit set: fixed32 must keep all 32 bits.
  c.set_is_last(true);
  c.mutable_fp8()->add_block_shape(128);
  c.mutable_fp8()->add_block_shape(128);
  c.mutable_fp8()->set_scale_tensor_name("model.layers.3.mlp.experts.7.up_proj.weight_scale_inv");
  WeightUpdateSummary* sum = c.mutable_summary();
  sum->set_version(12);
  sum->set_num_tensors(1234);
  sum->set_total_bytes(671ull << 30);
  sum->set_crc32c(0x1234ABCDu);

  WeightUpdateChunk u;
  ASSERT_TRUE(u.ParseFromString(c.SerializeAsString()));
  EXPECT_EQ(u.version(), 12u);
  EXPECT_EQ(u.tensor_name(), "model.layers.3.mlp.experts.7.up_proj.weight");
  EXPECT_EQ(u.dtype(), DTYPE_F8_E4M3);
  ASSERT_EQ(u.shape_size(), 2);
  EXPECT_EQ(u.shape(0), 2048u);
  EXPECT_EQ(u.shape(1), 7168u);
  EXPECT_EQ(u.offset(), 4u << 20);
  EXPECT_EQ(u.data(), data);
  EXPECT_EQ(u.crc32c(), 0xE3069283u);
  EXPECT_TRUE(u.is_last());
  ASSERT_TRUE(u.has_fp8());
  ASSERT_EQ(u.fp8().block_shape_size(), 2);
  EXPECT_EQ(u.fp8().block_shape(0), 128u);
  EXPECT_EQ(u.fp8().block_shape(1), 128u);
  EXPECT_EQ(u.fp8().scale_tensor_name(), "model.layers.3.mlp.experts.7.up_proj.weight_scale_inv");
  ASSERT_TRUE(u.has_summary());
  EXPECT_EQ(u.summary().version(), 12u);
  EXPECT_EQ(u.summary().num_tensors(), 1234u);
  EXPECT_EQ(u.summary().total_bytes(), 671ull << 30);
  EXPECT_EQ(u.summary().crc32c(), 0x1234ABCDu);
}

// A newer writer may add fields; an older reader must parse the record, keep what it knows, and
// carry the unknown field through a re-serialization (proto3 keeps unknown fields).
TEST(ProtoTest, UnknownFieldsAreTolerated) {
  Sample s = MakeSample();
  std::string bytes = s.SerializeAsString();
  // Field 1000, wire type 2 (length-delimited): tag varint (1000 << 3 | 2) = 8002 = 0xC2 0x3E,
  // then length 3 and "new".
  const std::string unknown_string("\xC2\x3E\x03new", 6);
  // Field 1001, wire type 0 (varint): tag (1001 << 3 | 0) = 8008 = 0xC8 0x3E, value 150.
  const std::string unknown_varint("\xC8\x3E\x96\x01", 4);
  bytes += unknown_string + unknown_varint;

  Sample u;
  ASSERT_TRUE(u.ParseFromString(bytes));
  EXPECT_EQ(u.token_ids_size(), 4);
  EXPECT_EQ(u.text(), s.text());
  EXPECT_EQ(u.seed(), s.seed());
  EXPECT_EQ(u.GetReflection()->GetUnknownFields(u).field_count(), 2);
  std::string again = u.SerializeAsString();
  EXPECT_NE(again.find(unknown_string), std::string::npos);
  EXPECT_NE(again.find(unknown_varint), std::string::npos);

  // Also inside a nested message: a Trajectory whose Sample carries the unknown fields.
  Trajectory t;
  t.set_format_version(1);
  std::string nested = t.SerializeAsString();
  // Field 7 (sample), wire type 2: tag 0x3A, then the sample bytes' length (< 2^14) as a varint.
  nested += '\x3A';
  size_t n = bytes.size();
  ASSERT_LT(n, 1u << 14);
  nested += static_cast<char>(0x80 | (n & 0x7F));
  nested += static_cast<char>(n >> 7);
  nested += bytes;
  Trajectory tu;
  ASSERT_TRUE(tu.ParseFromString(nested));
  EXPECT_EQ(tu.sample().seed(), s.seed());
  EXPECT_EQ(tu.sample().GetReflection()->GetUnknownFields(tu.sample()).field_count(), 2);
}

class FakeRewardService final : public RewardService::Service {
 public:
  grpc::Status Health(grpc::ServerContext*, const RewardHealthRequest*,
                      RewardHealthResponse* response) override {
    response->set_status(RewardHealthResponse::SERVING);
    response->set_version("proto_test");
    return grpc::Status::OK;
  }
  grpc::Status Score(grpc::ServerContext*, const ScoreRequest* request,
                     ScoreResponse* response) override {
    for (const RewardRequestItem& item : request->items()) {
      RewardResult* r = response->add_results();
      r->set_id(item.id());
      if (item.answer().empty()) {
        r->set_error("no gold answer");
      } else {
        r->set_reward(item.completion() == item.answer() ? 1.0 : 0.0);
      }
    }
    return grpc::Status::OK;
  }
};

TEST(ProtoTest, RewardServiceOverInProcessGrpc) {
  FakeRewardService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);

  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::InsecureChannelCredentials());
  std::unique_ptr<RewardService::Stub> stub = RewardService::NewStub(channel);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    RewardHealthResponse health;
    grpc::Status status = stub->Health(&ctx, RewardHealthRequest(), &health);
    ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
    EXPECT_EQ(health.status(), RewardHealthResponse::SERVING);
    EXPECT_EQ(health.version(), "proto_test");
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ScoreRequest req;
    RewardRequestItem* a = req.add_items();
    a->set_id("a");
    a->set_completion("42");
    a->set_answer("42");
    a->mutable_meta()->insert({"target", "42"});
    RewardRequestItem* b = req.add_items();
    b->set_id("b");
    b->set_completion("41");
    ScoreResponse resp;
    grpc::Status status = stub->Score(&ctx, req, &resp);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(resp.results_size(), 2);
    EXPECT_EQ(resp.results(0).id(), "a");
    ASSERT_TRUE(resp.results(0).has_reward());
    EXPECT_EQ(resp.results(0).reward(), 1.0);
    EXPECT_EQ(resp.results(1).id(), "b");
    EXPECT_FALSE(resp.results(1).has_reward());
    EXPECT_EQ(resp.results(1).error(), "no gold answer");
  }
  {
    // Not implemented by the fake: the generated base class answers UNIMPLEMENTED.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ListRulesResponse rules;
    EXPECT_EQ(stub->ListRules(&ctx, ListRulesRequest(), &rules).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->Wait();
}

// The rollout stubs link too (client streaming and server streaming signatures exist).
TEST(ProtoTest, RolloutServiceStubsLink) {
  RolloutService::Service service;  // every method UNIMPLEMENTED
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  std::unique_ptr<RolloutService::Stub> stub = RolloutService::NewStub(channel);
  ASSERT_NE(stub, nullptr);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  WeightUpdateAck ack;
  std::unique_ptr<grpc::ClientWriter<WeightUpdateChunk>> writer = stub->UpdateWeights(&ctx, &ack);
  ASSERT_NE(writer, nullptr);
  writer->WritesDone();
  EXPECT_FALSE(writer->Finish().ok());  // nothing listens on port 1
}

// Every message, field, enum, enum value, service and method in proto/*.proto has a comment.
TEST(ProtoTest, EverythingIsDocumented) {
  absl::StatusOr<std::string> bytes = grpo::ReadFile("proto/grpo_v1_descriptor_set.pb");
  ASSERT_TRUE(bytes.ok()) << "descriptor set missing from runfiles: " << bytes.status();
  google::protobuf::FileDescriptorSet set;
  ASSERT_TRUE(set.ParseFromString(*bytes));
  google::protobuf::DescriptorPool pool;
  for (const auto& file : set.file()) ASSERT_NE(pool.BuildFile(file), nullptr) << file.name();

  std::vector<std::string> undocumented;
  int checked = 0;
  auto check = [&](const auto* d) {
    google::protobuf::SourceLocation loc;
    ++checked;
    if (!d->GetSourceLocation(&loc) ||
        (loc.leading_comments.find_first_not_of(" \n") == std::string::npos &&
         loc.trailing_comments.find_first_not_of(" \n") == std::string::npos)) {
      undocumented.push_back(d->full_name());
    }
  };
  std::function<void(const google::protobuf::Descriptor*)> message =
      [&](const google::protobuf::Descriptor* m) {
        check(m);
        for (int i = 0; i < m->field_count(); ++i) check(m->field(i));
        for (int i = 0; i < m->oneof_decl_count(); ++i) {
          if (!m->oneof_decl(i)->is_synthetic()) check(m->oneof_decl(i));
        }
        for (int i = 0; i < m->nested_type_count(); ++i) {
          if (!m->nested_type(i)->options().map_entry()) message(m->nested_type(i));
        }
        for (int i = 0; i < m->enum_type_count(); ++i) {
          check(m->enum_type(i));
          for (int j = 0; j < m->enum_type(i)->value_count(); ++j) check(m->enum_type(i)->value(j));
        }
      };
  int files = 0;
  for (const char* name :
       {"proto/sample.proto", "proto/reward.proto", "proto/rollout.proto",
        "proto/trajectory.proto"}) {
    const google::protobuf::FileDescriptor* f = pool.FindFileByName(name);
    ASSERT_NE(f, nullptr) << name;
    ++files;
    EXPECT_EQ(f->package(), "grpo.v1");
    for (int i = 0; i < f->message_type_count(); ++i) message(f->message_type(i));
    for (int i = 0; i < f->enum_type_count(); ++i) {
      check(f->enum_type(i));
      for (int j = 0; j < f->enum_type(i)->value_count(); ++j) check(f->enum_type(i)->value(j));
    }
    for (int i = 0; i < f->service_count(); ++i) {
      check(f->service(i));
      for (int j = 0; j < f->service(i)->method_count(); ++j) check(f->service(i)->method(j));
    }
  }
  EXPECT_EQ(files, 4);
  EXPECT_GT(checked, 150);
  std::string list;
  for (const std::string& n : undocumented) list += "\n  " + n;
  EXPECT_TRUE(undocumented.empty()) << "undocumented:" << list;
}

}  // namespace
}  // namespace grpo::v1
