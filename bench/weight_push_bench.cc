// Weight push speed: FP8 (or bf16) quantization of a model's f32 masters, then the whole
// UpdateWeights stream over loopback gRPC into an in-process engine that verifies and assembles
// it with WeightAssembler (crc per chunk, summary, dequantization to f32), side by side with a
// plain memcpy of the same number of wire bytes. Run by bench/weight_push_bench.sh.
//   weight_push_bench PRESET [LAYERS] [REPEATS] [FORMAT: fp8|bf16|f32]
// Prints one JSON object per line (one per repeat) with the timings.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "core/thread_pool.h"
#include "learner/weight_push.h"
#include "model/presets.h"
#include "rollout/weight_stream.h"

namespace grpo {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class BenchEngine final : public grpo::v1::RolloutService::Service {
 public:
  explicit BenchEngine(ModelConfig c) : config_(std::move(c)) {}
  grpc::Status UpdateWeights(grpc::ServerContext*, grpc::ServerReader<v1::WeightUpdateChunk>* reader,
                             v1::WeightUpdateAck* ack) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto a = WeightAssembler::Create(config_);
    v1::WeightUpdateChunk c;
    absl::Status s = a.status();
    while (s.ok() && reader->Read(&c)) s = a->Add(c);
    const auto t0 = Clock::now();
    absl::StatusOr<StagedWeights> staged = s.ok() ? a->Finish() : absl::StatusOr<StagedWeights>(s);
    finish_seconds = Since(t0);
    if (!staged.ok()) {
      ack->set_reason(staged.status().ToString());
      return grpc::Status::OK;
    }
    ack->set_accepted(true);
    ack->set_serving_version(staged->version);
    ack->set_bytes_received(staged->bytes);
    weights_ = std::move(staged->params);
    return grpc::Status::OK;
  }
  double finish_seconds = 0;

 private:
  const ModelConfig config_;
  std::mutex mu_;
  std::vector<Parameter> weights_;
};

// Random f32 masters, uniform in [-0.05, 0.05) (a fast generator: initialization is not what
// is being measured); norm weights 1.
std::vector<Parameter> RandomMasters(const ModelConfig& config) {
  std::vector<Parameter> params;
  for (const ParameterSpec& spec : ExpectedParameters(config)) {
    params.push_back({spec, Tensor::Zeros(DType::kF32, spec.shape)});
  }
  ThreadPool::Default().ParallelFor(static_cast<int64_t>(params.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* v = params[i].value.mutable_data<float>();
      uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1);
      const bool norm = params[i].spec.name.find("norm") != std::string::npos;
      for (int64_t k = 0; k < params[i].value.numel(); ++k) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[k] = norm ? 1.0f : (static_cast<float>(x >> 40) / 16777216.0f - 0.5f) * 0.1f;
      }
    }
  });
  return params;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: weight_push_bench PRESET [LAYERS] [REPEATS] [fp8|bf16|f32]\n");
    return 2;
  }
  auto config = PresetConfig(argv[1]);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  if (argc > 2 && std::atoi(argv[2]) > 0) config->num_hidden_layers = std::atoi(argv[2]);
  const int repeats = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
  auto format = ParseWeightFormat(argc > 4 ? argv[4] : "fp8", kWireWeightFormats);
  if (!format.ok()) {
    std::fprintf(stderr, "%s\n", format.status().ToString().c_str());
    return 2;
  }
  WeightPushOptions o;
  o.format = *format;

  const std::vector<Parameter> masters = RandomMasters(*config);
  uint64_t master_bytes = 0;
  for (const Parameter& p : masters) master_bytes += p.value.nbytes();

  BenchEngine engine(*config);
  int port = 0;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&engine);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  auto stub = v1::RolloutService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  for (int r = 0; r < repeats; ++r) {
    const uint64_t version = r + 1;
    const auto t0 = Clock::now();
    auto encoded = EncodeWeights(masters, version, o);
    const double encode_s = Since(t0);
    if (!encoded.ok()) {
      std::fprintf(stderr, "%s\n", encoded.status().ToString().c_str());
      return 1;
    }
    const auto t1 = Clock::now();
    auto ack = PushWeights(*stub, *encoded, o.chunk_bytes, absl::Now() + absl::Minutes(10));
    const double push_s = Since(t1);
    if (!ack.ok()) {
      std::fprintf(stderr, "%s\n", ack.status().ToString().c_str());
      return 1;
    }
    // The peers: a memcpy of the same number of bytes into a pre-touched buffer (best of 3), and
    // into freshly allocated memory (what first-touching new pages costs on this machine).
    const uint64_t wire = encoded->total_bytes;
    std::vector<uint8_t> src(wire, 1), dst(wire, 0);
    double memcpy_s = 1e9;
    for (int k = 0; k < 3; ++k) {
      const auto t2 = Clock::now();
      std::memcpy(dst.data(), src.data(), wire);
      memcpy_s = std::min(memcpy_s, Since(t2));
    }
    const auto t3 = Clock::now();
    {
      std::unique_ptr<uint8_t[]> fresh(new uint8_t[wire]);
      std::memcpy(fresh.get(), src.data(), wire);
      dst[wire / 3] = fresh[wire / 2];
    }
    const double fresh_s = Since(t3);
    const double total_s = encode_s + push_s;
    std::printf(
        "{\"preset\": \"%s\", \"layers\": %lld, \"format\": \"%s\", \"threads\": %d, "
        "\"master_bytes\": %llu, \"wire_bytes\": %llu, \"encode_s\": %.4f, \"push_s\": %.4f, "
        "\"receiver_finish_s\": %.4f, \"total_s\": %.4f, \"total_gb_s\": %.4f, "
        "\"memcpy_s\": %.5f, \"memcpy_gb_s\": %.3f, \"ratio\": %.2f, \"fresh_memcpy_s\": %.4f, "
        "\"fresh_memcpy_gb_s\": %.3f, \"dst_check\": %d}\n",
        argv[1], static_cast<long long>(config->num_hidden_layers), WeightFormatName(*format),
        ThreadPool::Default().num_threads(), static_cast<unsigned long long>(master_bytes),
        static_cast<unsigned long long>(wire), encode_s, push_s, engine.finish_seconds, total_s,
        wire / total_s / 1e9, memcpy_s, wire / memcpy_s / 1e9, total_s / memcpy_s,
        fresh_s, wire / fresh_s / 1e9, dst[wire / 3]);
    std::fflush(stdout);
  }
  server->Shutdown(std::chrono::system_clock::now());
  return 0;
}

}  // namespace
}  // namespace grpo

int main(int argc, char** argv) { return grpo::Main(argc, argv); }
