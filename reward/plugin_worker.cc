#include "reward/plugin_worker.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "reward/plugin_abi.h"
#include "reward/plugin_wire.h"
#include "rollout/tool_plugin_abi.h"

namespace grpo::reward {
namespace {

int SendFatal(const std::string& why) {
  wire::Reply r;
  r.kind = wire::ReplyKind::kFatal;
  r.message = why;
  (void)wire::WriteAll(kReplyFd, wire::Frame(wire::EncodeReply(r)));
  return 1;
}

grpo_str Str(const std::string& s) { return grpo_str{s.data(), s.size()}; }

// Loads a tool plugin's table, or says why not.
absl::StatusOr<const grpo_tool_plugin*> LoadToolPlugin(const std::string& plugin_path) {
  void* lib = dlopen(plugin_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) return absl::InvalidArgumentError(std::string("dlopen failed: ") + dlerror());
  auto entry = reinterpret_cast<grpo_tool_plugin_entry_fn>(dlsym(lib, GRPO_TOOL_PLUGIN_ENTRY));
  if (!entry) return absl::InvalidArgumentError(plugin_path + ": no symbol " GRPO_TOOL_PLUGIN_ENTRY);
  const grpo_tool_plugin* p = entry();
  if (!p) return absl::InvalidArgumentError("tool plugin entry returned NULL");
  if (p->abi_version != GRPO_TOOL_PLUGIN_ABI_VERSION)
    return absl::InvalidArgumentError("tool plugin ABI version " + std::to_string(p->abi_version) +
                                      ", host expects " + std::to_string(GRPO_TOOL_PLUGIN_ABI_VERSION));
  if (p->struct_size < sizeof(grpo_tool_plugin) || !p->create || !p->destroy || !p->run)
    return absl::InvalidArgumentError("tool plugin table is incomplete");
  return p;
}

// One tool call: the input is the request's completion, the deadline its meta "deadline_ms".
wire::Reply RunToolCall(const grpo_tool_plugin* p, void* state, const RewardItem& item, std::string* buffer) {
  int64_t deadline_ms = 0;
  if (auto it = item.meta.find("deadline_ms"); it != item.meta.end()) deadline_ms = std::atoll(it->second.c_str());
  grpo_tool_output out{buffer->data(), buffer->size(), 0};
  const int rc = p->run(state, item.completion.data(), item.completion.size(), deadline_ms, &out);
  wire::Reply reply;
  reply.kind = rc == 0 ? wire::ReplyKind::kOk : wire::ReplyKind::kItemError;
  reply.message.assign(buffer->data(), std::min(out.size, buffer->size()));
  if (out.size > buffer->size()) reply.message += kToolOutputCut;
  return reply;
}

}  // namespace

int RunPluginWorker(const std::string& plugin_path, const std::string& config_json) {
  void* lib = dlopen(plugin_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) return SendFatal(std::string("dlopen failed: ") + dlerror());
  auto entry = reinterpret_cast<grpo_reward_plugin_entry_fn>(dlsym(lib, GRPO_REWARD_PLUGIN_ENTRY));
  if (!entry) return SendFatal(plugin_path + ": no symbol " GRPO_REWARD_PLUGIN_ENTRY);
  const grpo_reward_plugin* p = entry();
  if (!p) return SendFatal("plugin entry returned NULL");
  if (p->abi_version != GRPO_REWARD_PLUGIN_ABI_VERSION)
    return SendFatal("plugin ABI version " + std::to_string(p->abi_version) + ", host expects " +
                     std::to_string(GRPO_REWARD_PLUGIN_ABI_VERSION));
  if (p->struct_size < sizeof(grpo_reward_plugin) || !p->create || !p->destroy || !p->score)
    return SendFatal("plugin table is incomplete");
  char err[GRPO_REWARD_MESSAGE_SIZE] = {0};
  void* state = p->create(config_json.c_str(), err, sizeof err);
  if (!state) {
    err[sizeof err - 1] = '\0';
    return SendFatal(std::string("plugin create failed: ") + err);
  }
  wire::Reply hello;
  hello.message = std::string(p->name ? p->name : "") + "\t" + (p->description ? p->description : "");
  if (!wire::WriteAll(kReplyFd, wire::Frame(wire::EncodeReply(hello))).ok()) return 1;

  std::vector<grpo_str> keys, values;
  while (true) {
    absl::StatusOr<std::string> frame = wire::ReadFrame(kRequestFd);
    if (!frame.ok()) break;  // the host closed the pipe (or broke it): exit
    absl::StatusOr<RewardItem> item = wire::DecodeRequest(*frame);
    wire::Reply reply;
    if (!item.ok()) {
      reply.kind = wire::ReplyKind::kItemError;
      reply.message = std::string(item.status().message());
    } else {
      keys.clear();
      values.clear();
      for (const auto& [k, v] : item->meta) {
        keys.push_back(Str(k));
        values.push_back(Str(v));
      }
      grpo_reward_item in{Str(item->completion), Str(item->answer), Str(item->prompt),
                          Str(item->task),       keys.size(),       keys.data(),
                          values.data()};
      grpo_reward_output out;
      std::memset(&out, 0, sizeof out);
      int rc = p->score(state, &in, &out);
      out.message[sizeof out.message - 1] = '\0';
      reply.score = out.score;
      reply.message = out.message;
      if (rc != 0 || out.is_error) {
        reply.kind = wire::ReplyKind::kItemError;
        if (reply.message.empty()) reply.message = "plugin returned " + std::to_string(rc);
      }
    }
    if (!wire::WriteAll(kReplyFd, wire::Frame(wire::EncodeReply(reply))).ok()) break;
  }
  p->destroy(state);
  return 0;
}

int RunToolPluginWorker(const std::string& plugin_path, const std::string& config_json, size_t max_output) {
  absl::StatusOr<const grpo_tool_plugin*> p = LoadToolPlugin(plugin_path);
  if (!p.ok()) return SendFatal(std::string(p.status().message()));
  char err[GRPO_REWARD_MESSAGE_SIZE] = {0};
  void* state = (*p)->create(config_json.c_str(), err, sizeof err);
  if (!state) {
    err[sizeof err - 1] = '\0';
    return SendFatal(std::string("tool plugin create failed: ") + err);
  }
  wire::Reply hello;
  hello.message = std::string((*p)->name ? (*p)->name : "") + "\t" + ((*p)->description ? (*p)->description : "");
  if (!wire::WriteAll(kReplyFd, wire::Frame(wire::EncodeReply(hello))).ok()) return 1;
  std::string buffer(max_output, '\0');
  while (true) {
    absl::StatusOr<std::string> frame = wire::ReadFrame(kRequestFd);
    if (!frame.ok()) break;  // the host closed the pipe (or broke it): exit
    absl::StatusOr<RewardItem> item = wire::DecodeRequest(*frame);
    wire::Reply reply;
    if (item.ok()) {
      reply = RunToolCall(*p, state, *item, &buffer);
    } else {
      reply.kind = wire::ReplyKind::kItemError;
      reply.message = std::string(item.status().message());
    }
    if (!wire::WriteAll(kReplyFd, wire::Frame(wire::EncodeReply(reply))).ok()) break;
  }
  (*p)->destroy(state);
  return 0;
}

int PluginWorkerMain(int argc, char** argv) {
  std::string plugin, config = "{}", abi = "reward";
  size_t max_output = 1024;
  for (int i = 1; i + 1 < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--plugin") plugin = argv[++i];
    else if (a == "--config") config = argv[++i];
    else if (a == "--abi") abi = argv[++i];
    else if (a == "--max-output") max_output = std::strtoull(argv[++i], nullptr, 10);
  }
  if (plugin.empty()) return SendFatal("plugin worker: --plugin is required");
  if (abi == "tool") {
    if (max_output == 0 || max_output > kMaxToolOutputBytes) return SendFatal("plugin worker: bad --max-output");
    return RunToolPluginWorker(plugin, config, max_output);
  }
  if (abi != "reward") return SendFatal("plugin worker: --abi must be reward or tool");
  return RunPluginWorker(plugin, config);
}

}  // namespace grpo::reward
