#include "cli/rollout_commands.h"

#include <signal.h>
#include <sys/stat.h>

#include <memory>
#include <optional>
#include <string>

#include "cli/subcommand.h"
#include "model/causal_lm.h"
#include "rollout/engine.h"
#include "rollout/service.h"
#include "tokenizer/tokenizer.h"

namespace grpo::cli {
namespace {

struct ServeArgs {
  std::string model, listen = "127.0.0.1:50061", tokenizer;
  int64_t max_batch = 256, kv_memory_mb = 1024, block_size = 16, max_prefill_tokens = 2048;
  int64_t max_group_size = 1024, max_prompt_tokens = 0;
  double grace_seconds = 30;
};

Status RunServe(const ServeArgs& a) {
  // Block SIGTERM/SIGINT before any thread starts (the engine's loop, the kernel pool, gRPC's),
  // so that they reach only the sigwait of ServeRolloutUntilSignal.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (a.kv_memory_mb <= 0) return Status::InvalidArgument("--kv-memory-mb must be positive");
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model, CausalLM::Load(a.model));
  std::optional<tokenizer::Tokenizer> tok;
  std::string tok_path = a.tokenizer;
  struct stat st;
  if (tok_path.empty() && stat((a.model + "/tokenizer.json").c_str(), &st) == 0) tok_path = a.model;
  if (!tok_path.empty()) {
    GRPO_ASSIGN_OR_RETURN(tokenizer::Tokenizer t, tokenizer::Tokenizer::Load(tok_path));
    tok = std::move(t);
  }
  EngineOptions eo;
  eo.kv_memory_bytes = a.kv_memory_mb << 20;
  eo.block_size = a.block_size;
  eo.max_running_sequences = a.max_batch;
  eo.max_prefill_tokens_per_step = a.max_prefill_tokens;
  eo.tokenizer = tok ? &*tok : nullptr;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<RolloutEngine> engine, RolloutEngine::Create(std::move(model), eo));
  const EngineStats s = engine->stats();
  std::fprintf(stderr, "grpo rollout serve: %s, KV cache %lld blocks of %lld positions, max batch %lld%s\n",
               a.model.c_str(), static_cast<long long>(s.total_blocks), static_cast<long long>(a.block_size),
               static_cast<long long>(a.max_batch), tok ? ", tokenizer loaded" : ", no tokenizer");
  RolloutServeOptions so;
  so.listen = a.listen;
  so.max_group_size = a.max_group_size;
  so.max_prompt_tokens = a.max_prompt_tokens;
  so.shutdown_grace_seconds = a.grace_seconds;
  return ServeRolloutUntilSignal(*engine, eo.tokenizer, so);
}

}  // namespace

void AddRolloutCommands(CLI::App& rollout) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* serve = AddSubcommand(rollout, "serve", "Serve RolloutService over gRPC", [a] { return RunServe(*a); });
  serve->add_option("--model", a->model, "model directory (HF layout)")->required();
  serve->add_option("--listen", a->listen, "HOST:PORT (default 127.0.0.1:50061, loopback; port 0 picks one)");
  serve->add_option("--max-batch", a->max_batch, "most sequences decoding at once (default 256)");
  serve->add_option("--kv-memory-mb", a->kv_memory_mb, "KV cache budget in MiB (default 1024)");
  serve->add_option("--tokenizer", a->tokenizer, "tokenizer.json or its directory (default: the model's, if any)");
  serve->add_option("--block-size", a->block_size, "KV cache positions per block (default 16)");
  serve->add_option("--max-prefill-tokens", a->max_prefill_tokens, "prompt tokens prefilled per step (default 2048)");
  serve->add_option("--max-group-size", a->max_group_size, "largest group_size accepted (default 1024)");
  serve->add_option("--max-prompt-tokens", a->max_prompt_tokens, "longest prompt accepted (default: context - 1)");
  serve->add_option("--grace-seconds", a->grace_seconds, "on SIGTERM/SIGINT, time in-flight requests get (default 30)");
}

}  // namespace grpo::cli
