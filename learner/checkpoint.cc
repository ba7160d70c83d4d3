#include "learner/checkpoint.h"
#include "learner/sharded_optimizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/checksum_manifest.h"
#include "core/file.h"
#include "model/parameters.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

nlohmann::json StateToJson(const TrainerState& s) {
  return {{"format", "grpo.trainer_state.v1"},
          {"stage", s.stage},
          {"step", s.step},
          {"pretrain_steps_done", s.pretrain_steps_done},
          {"weight_version", s.weight_version},
          {"data_cursor", {{"epoch", s.data_cursor.epoch}, {"position", s.data_cursor.position}}},
          {"elapsed_seconds", s.elapsed_seconds}};
}

absl::StatusOr<TrainerState> StateFromJson(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (text.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError("checkpoint state " + path + " is missing");
  }
  GRPO_RETURN_IF_ERROR(text.status());
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != "grpo.trainer_state.v1") {
    return absl::DataLossError(path + " is not a grpo trainer state (format grpo.trainer_state.v1)");
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
    return absl::DataLossError(path + ": " + e.what());
  }
}

}  // namespace

std::string CheckpointName(const std::string& stage, int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s-%06lld", stage.c_str(), static_cast<long long>(step));
  return buf;
}

absl::Status SaveCheckpoint(const std::string& run_dir, const std::string& name, const CausalLM& model,
                      const AdamW* optimizer, const TrainerState& state,
                      const std::string& tokenizer_dir, int keep,
                      const std::function<absl::Status(const std::string& dir)>& write_more) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path tmp = root / (name + ".tmp");
  const fs::path final_dir = root / name;
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::UnknownError("cannot create " + root.string() + ": " + ec.message());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return absl::UnknownError("cannot create " + tmp.string() + ": " + ec.message());
  // Everything is written into `tmp` first. On an error (a full disk) `tmp` is removed again:
  // a failed checkpoint takes no space, and the earlier ones stay as they were.
  const absl::Status filled = [&]() -> absl::Status {
    GRPO_RETURN_IF_ERROR(SaveModel(model.config(), model.ReadParameters(), tmp.string()));
    if (optimizer != nullptr) GRPO_RETURN_IF_ERROR(optimizer->SaveState((tmp / "optimizer.safetensors").string()));
    if (write_more) GRPO_RETURN_IF_ERROR(write_more(tmp.string()));
    if (!tokenizer_dir.empty()) {
      for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
        const fs::path src = fs::path(tokenizer_dir) / f;
        if (fs::exists(src)) {
          fs::copy_file(src, tmp / f, fs::copy_options::overwrite_existing, ec);
          if (ec) return ErrnoError("cannot copy " + src.string() + " to " + (tmp / f).string(), ec.value());
        }
      }
    }
    GRPO_RETURN_IF_ERROR(WriteFileAtomic((tmp / "trainer_state.json").string(), StateToJson(state).dump(2) + "\n"));
    // Last: the sizes and CRC-32Cs of every file above, verified by FindLatestCheckpoint.
    return WriteChecksumManifest(tmp.string());
  }();
  if (!filled.ok()) {
    fs::remove_all(tmp, ec);
    return filled;
  }
  // Durable in place (files, directory, its entry in `root`) before `latest` names it.
  GRPO_RETURN_IF_ERROR(ReplaceDirectory(tmp.string(), final_dir.string()));
  GRPO_RETURN_IF_ERROR(WriteFileAtomic((root / "latest").string(), name + "\n"));
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
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LoadedCheckpoint>> FindLatestCheckpoint(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path latest = root / "latest";
  if (!fs::exists(latest)) return std::optional<LoadedCheckpoint>();
  GRPO_ASSIGN_OR_RETURN(std::string name, ReadFile(latest.string(), /*max_bytes=*/4096));
  name.resize(std::min(name.find('\n'), name.size()));
  if (name.empty() || name.find('/') != std::string::npos) {
    return absl::DataLossError(latest.string() + " does not name a checkpoint");
  }
  LoadedCheckpoint c;
  c.dir = (root / name).string();
  if (!fs::is_directory(c.dir)) return absl::NotFoundError("checkpoint " + c.dir + " named by " + latest.string() + " is missing");
  // Every file is checked before any is trusted (a damaged one is named, nothing else is touched).
  GRPO_ASSIGN_OR_RETURN(c.checksummed, VerifyChecksumManifest(c.dir));
  GRPO_ASSIGN_OR_RETURN(c.state, StateFromJson(c.dir + "/trainer_state.json"));
  return std::optional<LoadedCheckpoint>(std::move(c));
}

absl::Status LoadOptimizerState(const LoadedCheckpoint& checkpoint, AdamW* optimizer) {
  return LoadAnyOptimizerState(checkpoint.dir, optimizer, optimizer->specs());
}

}  // namespace grpo
