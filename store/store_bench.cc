// Trajectory store benchmark: writes realistic steps (long completions with logprobs and,
// optionally, MoE routing) through TrajectoryStore::WriteStep and exports them, reporting
// samples/s and MB/s. Run through bench/store_bench.sh, which runs db_bench fillseq with the
// same value size beside it. Not a test (tagged manual).
//
// Usage: store_bench DIR [--samples N] [--tokens T] [--group G] [--moe-layers L] [--top-k K]
//                        [--experts E] [--raw-logprobs] [--sync]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/jsonl.h"
#include "store/export.h"
#include "store/test_fixture.h"
#include "store/trajectory_store.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "store_bench: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: store_bench DIR [--samples N] [--tokens T] [--group G] [--moe-layers L] "
                         "[--top-k K] [--experts E] [--raw-logprobs] [--sync]\n");
    return 2;
  }
  const std::string dir = argv[1];
  uint64_t num_samples = 1024;
  grpo::store::testing::SyntheticShape shape;
  shape.tokens = 4096;
  shape.group_size = 16;
  shape.prompts = 1;
  grpo::store::Options options;
  for (int i = 2; i < argc; ++i) {
    auto next = [&]() -> uint64_t { return i + 1 < argc ? std::strtoull(argv[++i], nullptr, 10) : 0; };
    if (!std::strcmp(argv[i], "--samples")) num_samples = next();
    else if (!std::strcmp(argv[i], "--tokens")) shape.tokens = next();
    else if (!std::strcmp(argv[i], "--group")) shape.group_size = next();
    else if (!std::strcmp(argv[i], "--moe-layers")) shape.moe_layers = next();
    else if (!std::strcmp(argv[i], "--top-k")) shape.top_k = next();
    else if (!std::strcmp(argv[i], "--experts")) shape.num_experts = next();
    else if (!std::strcmp(argv[i], "--raw-logprobs")) shape.raw_logprobs = true;
    else if (!std::strcmp(argv[i], "--sync")) options.sync = true;
    else {
      std::fprintf(stderr, "store_bench: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  // A step is one group of G samples (prompts=1), so a write batch is G samples.
  const uint64_t num_steps = (num_samples + shape.group_size - 1) / shape.group_size;
  std::filesystem::remove_all(dir);

  // Generate the records first: only WriteStep (validation, serialization, RocksDB) is timed.
  std::vector<grpo::store::StepRecords> steps;
  uint64_t value_bytes = 0;
  for (uint64_t s = 0; s < num_steps; ++s) {
    steps.push_back(grpo::store::testing::SyntheticStep(s, shape));
    for (const auto& t : steps.back().trajectories) value_bytes += t.ByteSizeLong();
  }
  const uint64_t samples = num_steps * shape.group_size;

  auto store = grpo::store::TrajectoryStore::Open(dir, options);
  if (!store.ok()) return Fail(store.status());
  if (auto s = (*store)->CreateRun(grpo::store::testing::DemoRunMetadata("bench")); !s.ok()) return Fail(s);
  auto start = Clock::now();
  for (auto& step : steps) {
    if (auto s = (*store)->WriteStep("bench", &step); !s.ok()) return Fail(s);
  }
  const double write_s = Seconds(start);
  steps.clear();
  // Not timed: WriteStep's WAL write is the commit; table files are written in the background.
  if (auto s = (*store)->Flush(); !s.ok()) return Fail(s);
  store->reset();

  auto reader = grpo::store::TrajectoryStore::OpenReadOnly(dir);
  if (!reader.ok()) return Fail(reader.status());
  grpo::store::ExportOptions eo;
  grpo::store::ExportStats stats;
  auto out = grpo::JsonlWriter::Open(dir + ".export.jsonl");
  if (!out.ok()) return Fail(out.status());
  start = Clock::now();
  if (auto s = grpo::store::Export(**reader, eo, out->get(), &stats); !s.ok()) return Fail(s);
  const double export_s = Seconds(start);  // as before: without the final flush and fsync
  if (auto s = (*out)->Close(); !s.ok()) return Fail(s);
  std::filesystem::remove(dir + ".export.jsonl");

  const double mb = value_bytes / 1e6;
  std::printf("store_bench: samples=%llu tokens=%u moe_layers=%u top_k=%u raw_logprobs=%d sync=%d group=%u\n",
              static_cast<unsigned long long>(samples), shape.tokens, shape.moe_layers, shape.top_k,
              shape.raw_logprobs ? 1 : 0, options.sync ? 1 : 0, shape.group_size);
  std::printf("store_bench: value_size=%llu total_MB=%.1f\n", static_cast<unsigned long long>(value_bytes / samples),
              mb);
  std::printf("store_bench: write seconds=%.3f samples_per_s=%.1f MB_per_s=%.1f\n", write_s, samples / write_s,
              mb / write_s);
  std::printf("store_bench: export seconds=%.3f samples_per_s=%.1f MB_per_s=%.1f jsonl_MB=%.1f\n", export_s,
              stats.scanned / export_s, stats.bytes_in / 1e6 / export_s, stats.bytes_out / 1e6);
  return 0;
}
