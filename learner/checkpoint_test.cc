#include "learner/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/ops/cpu_guarded/guarded_backend.h"
#include "model/presets.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

TEST(Checkpoint, RoundTripsModelOptimizerAndStateAndKeepsTheNewest) {
  const std::string run = (fs::path(::testing::TempDir()) / "ckpt_run").string();
  fs::remove_all(run);
  auto config = PresetConfig("qwen3_moe-nano");
  ASSERT_TRUE(config.ok());
  auto model = CausalLM::Create(*config, InitParameters(*config, 4), BackendForTests());
  ASSERT_TRUE(model.ok());
  auto opt = AdamW::Create((*model)->backend(), (*model)->parameter_specs(), {});
  ASSERT_TRUE(opt.ok());
  std::vector<Buffer> grads;
  for (const auto& spec : (*model)->parameter_specs()) {
    std::vector<float> g(NumElements(spec.shape));
    for (size_t i = 0; i < g.size(); ++i) g[i] = 0.001f * static_cast<float>(i % 7);
    grads.push_back(Upload((*model)->backend(), g));
  }
  ASSERT_TRUE(opt->Step(&(*model)->parameter_buffers(), grads, 1e-3).ok());

  EXPECT_FALSE(FindLatestCheckpoint(run)->has_value());
  TrainerState st;
  st.stage = "rl";
  for (int step = 1; step <= 3; ++step) {
    st.step = step;
    st.weight_version = 10 + step;
    st.data_cursor = {2, step};
    st.elapsed_seconds = 1.5 * step;
    ASSERT_TRUE(SaveCheckpoint(run, CheckpointName("rl", step), **model, &*opt, st, "", 2).ok());
  }
  auto latest = FindLatestCheckpoint(run);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ(fs::path((*latest)->dir).filename(), "rl-000003");
  EXPECT_EQ((*latest)->state.step, 3);
  EXPECT_EQ((*latest)->state.weight_version, 13u);
  EXPECT_EQ((*latest)->state.data_cursor, (data::Cursor{2, 3}));
  EXPECT_FALSE(fs::exists(run + "/checkpoints/rl-000001"));  // keep = 2
  EXPECT_TRUE(fs::exists(run + "/checkpoints/rl-000002"));

  auto loaded = CausalLM::Load((*latest)->dir, BackendForTests());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const std::vector<Parameter> want = (*model)->ReadParameters(), got = (*loaded)->ReadParameters();
  for (size_t i = 0; i < want.size(); ++i) {
    const Tensor& a = want[i].value;
    const Tensor& b = got[i].value;
    ASSERT_EQ(a.nbytes(), b.nbytes());
    EXPECT_EQ(std::memcmp(a.data<float>(), b.data<float>(), a.nbytes()), 0) << want[i].spec.name;
  }
  auto opt2 = AdamW::Create((*loaded)->backend(), (*loaded)->parameter_specs(), {});
  ASSERT_TRUE(LoadOptimizerState(**latest, &*opt2).ok());
  EXPECT_EQ(opt2->step(), 1);
  for (size_t i = 0; i < want.size(); ++i) {
    if (!want[i].spec.trainable) continue;
    const Tensor a = opt->exp_avg_sq(i), b = opt2->exp_avg_sq(i);
    EXPECT_EQ(std::memcmp(a.data<float>(), b.data<float>(), a.nbytes()), 0);
  }
}

TEST(Checkpoint, DamagedStateIsNamed) {
  const std::string run = (fs::path(::testing::TempDir()) / "ckpt_bad").string();
  fs::remove_all(run);
  fs::create_directories(run + "/checkpoints/rl-000001");
  std::ofstream(run + "/checkpoints/latest") << "rl-000001\n";
  std::ofstream(run + "/checkpoints/rl-000001/trainer_state.json") << "{\"format\": \"other\"}";
  auto r = FindLatestCheckpoint(run);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("trainer_state.json"), std::string::npos);
  std::ofstream(run + "/checkpoints/latest") << "rl-000009\n";
  r = FindLatestCheckpoint(run);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rl-000009"), std::string::npos);
}

// Writes one small checkpoint "rl-000001" into `run` and returns its directory.
std::string SaveSmallCheckpoint(const std::string& run) {
  fs::remove_all(run);
  auto config = PresetConfig("qwen3_moe-nano");
  EXPECT_TRUE(config.ok());
  auto model = CausalLM::Create(*config, InitParameters(*config, 4), BackendForTests());
  EXPECT_TRUE(model.ok());
  auto opt = AdamW::Create((*model)->backend(), (*model)->parameter_specs(), {});
  EXPECT_TRUE(opt.ok());
  TrainerState st;
  st.stage = "rl";
  st.step = 1;
  EXPECT_TRUE(SaveCheckpoint(run, CheckpointName("rl", 1), **model, &*opt, st, "", 2).ok());
  return run + "/checkpoints/rl-000001";
}

void FlipByte(const std::string& path, std::streamoff offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.get(c);
  f.seekp(offset);
  f.put(static_cast<char>(c ^ 0x01));
}

TEST(Checkpoint, CarriesAChecksumManifestThatFindLatestVerifies) {
  const std::string run = (fs::path(::testing::TempDir()) / "ckpt_sums").string();
  const std::string dir = SaveSmallCheckpoint(run);
  ASSERT_TRUE(fs::exists(dir + "/checksums.json"));
  auto ok = FindLatestCheckpoint(run);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE((*ok)->checksummed);
  // One flipped bit anywhere in a file: in the weights (past the safetensors header, so the file
  // still parses), in the optimizer state, in the trainer state. Each is named.
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"}) {
    SaveSmallCheckpoint(run);
    const std::string path = dir + "/" + file;
    FlipByte(path, static_cast<std::streamoff>(fs::file_size(path) - 7));
    auto r = FindLatestCheckpoint(run);
    ASSERT_FALSE(r.ok()) << file;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << file;
    EXPECT_NE(std::string(r.status().message()).find(path + " is damaged"), std::string::npos) << r.status();
  }
  // A truncated file is named with both sizes.
  SaveSmallCheckpoint(run);
  fs::resize_file(dir + "/optimizer.safetensors", 100);
  auto r = FindLatestCheckpoint(run);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("optimizer.safetensors is damaged: 100 bytes"), std::string::npos)
      << r.status();
}

TEST(Checkpoint, ACheckpointWithoutAManifestLoadsUnverified) {
  const std::string run = (fs::path(::testing::TempDir()) / "ckpt_old").string();
  const std::string dir = SaveSmallCheckpoint(run);
  fs::remove(dir + "/checksums.json");  // as written before checkpoints had manifests
  auto r = FindLatestCheckpoint(run);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE((*r)->checksummed);
  EXPECT_EQ((*r)->state.step, 1);
}

}  // namespace
}  // namespace grpo
