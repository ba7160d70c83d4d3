#include "learner/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model/parameters.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

Status FsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Status::IoError("cannot open " + path + " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IoError("fsync failed on " + path);
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out.good()) return Status::IoError("cannot write " + tmp);
  }
  GRPO_RETURN_IF_ERROR(FsyncPath(tmp));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::IoError("cannot rename " + tmp + " to " + path + ": " + ec.message());
  return Status::Ok();
}

nlohmann::json StateToJson(const TrainerState& s) {
  return {{"format", "grpo.trainer_state.v1"},
          {"stage", s.stage},
          {"step", s.step},
          {"pretrain_steps_done", s.pretrain_steps_done},
          {"weight_version", s.weight_version},
          {"data_cursor", {{"epoch", s.data_cursor.epoch}, {"position", s.data_cursor.position}}},
          {"elapsed_seconds", s.elapsed_seconds}};
}

Result<TrainerState> StateFromJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("checkpoint state " + path + " is missing");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != "grpo.trainer_state.v1") {
    return Status::Corruption(path + " is not a grpo trainer state (format grpo.trainer_state.v1)");
  }
  try {
    TrainerState s;
    s.stage = j.at("stage").get<std::string>();
    s.step = j.at("step").get<int64_t>();
    s.pretrain_steps_done = j.at("pretrain_steps_done").get<int64_t>();
    s.weight_version = j.at("weight_version").get<uint64_t>();
    s.data_cursor.epoch = j.at("data_cursor").at("epoch").get<int64_t>();
    s.data_cursor.position = j.at("data_cursor").at("position").get<int64_t>();
    s.elapsed_seconds = j.at("elapsed_seconds").get<double>();
    return s;
  } catch (const std::exception& e) {
    return Status::Corruption(path + ": " + e.what());
  }
}

}  // namespace

std::string CheckpointName(const std::string& stage, int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s-%06lld", stage.c_str(), static_cast<long long>(step));
  return buf;
}

Status SaveCheckpoint(const std::string& run_dir, const std::string& name, const CausalLM& model,
                      const AdamW* optimizer, const TrainerState& state,
                      const std::string& tokenizer_dir, int keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path tmp = root / (name + ".tmp");
  const fs::path final_dir = root / name;
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Status::IoError("cannot create " + root.string() + ": " + ec.message());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return Status::IoError("cannot create " + tmp.string() + ": " + ec.message());
  GRPO_RETURN_IF_ERROR(SaveModel(model.config(), model.parameters(), tmp.string()));
  if (optimizer != nullptr) GRPO_RETURN_IF_ERROR(optimizer->SaveState((tmp / "optimizer.safetensors").string()));
  if (!tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path src = fs::path(tokenizer_dir) / f;
      if (fs::exists(src)) {
        fs::copy_file(src, tmp / f, fs::copy_options::overwrite_existing, ec);
        if (ec) return Status::IoError("cannot copy " + src.string() + ": " + ec.message());
      }
    }
  }
  GRPO_RETURN_IF_ERROR(WriteFileAtomic((tmp / "trainer_state.json").string(), StateToJson(state).dump(2) + "\n"));
  for (const auto& entry : fs::directory_iterator(tmp)) GRPO_RETURN_IF_ERROR(FsyncPath(entry.path().string()));
  GRPO_RETURN_IF_ERROR(FsyncPath(tmp.string()));
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) return Status::IoError("cannot rename " + tmp.string() + ": " + ec.message());
  GRPO_RETURN_IF_ERROR(FsyncPath(root.string()));  // the new directory entry before `latest`
  GRPO_RETURN_IF_ERROR(WriteFileAtomic((root / "latest").string(), name + "\n"));
  GRPO_RETURN_IF_ERROR(FsyncPath(root.string()));
  if (keep > 0) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(root)) {
      const std::string n = entry.path().filename().string();
      if (entry.is_directory() && n.size() > 4 && n.substr(n.size() - 4) != ".tmp" &&
          n.rfind(state.stage + "-", 0) == 0) {
        names.push_back(n);
      }
    }
    std::sort(names.begin(), names.end());
    for (size_t i = 0; i + keep < names.size(); ++i) {
      if (names[i] != name) fs::remove_all(root / names[i], ec);
    }
  }
  return Status::Ok();
}

Result<std::optional<LoadedCheckpoint>> FindLatestCheckpoint(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path latest = root / "latest";
  if (!fs::exists(latest)) return std::optional<LoadedCheckpoint>();
  std::ifstream in(latest);
  std::string name;
  std::getline(in, name);
  if (name.empty() || name.find('/') != std::string::npos) {
    return Status::Corruption(latest.string() + " does not name a checkpoint");
  }
  LoadedCheckpoint c;
  c.dir = (root / name).string();
  if (!fs::is_directory(c.dir)) return Status::NotFound("checkpoint " + c.dir + " named by " + latest.string() + " is missing");
  GRPO_ASSIGN_OR_RETURN(c.state, StateFromJson(c.dir + "/trainer_state.json"));
  return std::optional<LoadedCheckpoint>(std::move(c));
}

Status LoadOptimizerState(const LoadedCheckpoint& checkpoint, AdamW* optimizer) {
  return optimizer->LoadState(checkpoint.dir + "/optimizer.safetensors");
}

}  // namespace grpo
