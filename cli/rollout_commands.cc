#include "cli/rollout_commands.h"

#include <signal.h>
#include <sys/stat.h>

#include <memory>
#include <optional>
#include <string>

#include "cli/backend_flag.h"
#include "cli/subcommand.h"
#include "core/memory_plan.h"
#include "core/status.h"
#include "model/causal_lm.h"
#include "model/parameters.h"
#include "rollout/engine.h"
#include "rollout/push_token.h"
#include "rollout/service.h"
#include "tokenizer/tokenizer.h"

namespace grpo::cli {
namespace {

struct ServeArgs {
  std::string model, listen = "127.0.0.1:50061", tokenizer, push_token_file, backend;
  std::string serve_format = "f32";
  bool allow_unauthenticated_push = false;
  bool batch_invariant = false;
  bool serve_logprobs = false;
  int64_t max_logprobs_tokens = RolloutServeOptions().max_logprobs_tokens;
  int64_t max_batch = 256, kv_memory_mb = 1024, block_size = 16, max_prefill_tokens = 2048;
  int64_t max_group_size = 1024, max_prompt_tokens = 0, max_prompt_bytes = 0;
  int max_request_mb = RolloutServeOptions().max_request_mb;
  int max_concurrent_requests = RolloutServeOptions().max_concurrent_requests;
  double grace_seconds = 30;
  std::vector<std::string> tool_plugins;
  int64_t tool_call_threads = EngineOptions().tool_call_threads;
};

absl::Status RunServe(const ServeArgs& a) {
  // Block SIGTERM/SIGINT before any thread starts (the engine's loop, the kernel pool, gRPC's),
  // so that they reach only the sigwait of ServeRolloutUntilSignal.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (a.kv_memory_mb <= 0) return absl::InvalidArgumentError("--kv-memory-mb must be positive");
  if (a.tool_call_threads < 0 || a.tool_call_threads > 256) {
    return absl::InvalidArgumentError("--tools-call-threads must be in [0, 256] (0: calls run on the engine's loop "
                                      "thread), got " + std::to_string(a.tool_call_threads));
  }
  // Who may push weights, settled before the model loads (docs/security.md).
  GRPO_ASSIGN_OR_RETURN(const std::string push_token, PushTokenFromFileOrEnv(a.push_token_file));
  if (!push_token.empty() && a.allow_unauthenticated_push) {
    return absl::InvalidArgumentError(std::string("--allow-unauthenticated-push and a push token (--push-token-file "
                                                  "or $") + kPushTokenFileEnv + ") exclude each other");
  }
  const CheckedInt64 kv_bytes = CheckedInt64(a.kv_memory_mb) * (int64_t{1} << 20);
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<CausalLM> model, LoadServingModel(a.model, a.backend, a.serve_format));
  std::unique_ptr<CausalLM> logprobs_model;  // --serve-logprobs: a second copy, f32, scoring for Logprobs
  if (a.serve_logprobs) {
    GRPO_ASSIGN_OR_RETURN(logprobs_model, LoadServingModel(a.model, a.backend, "f32"));
  }
  if (a.batch_invariant) {
    if (a.serve_format != "f32") {
      return absl::InvalidArgumentError("--batch-invariant needs --serve-format f32 (the learner's own weights)");
    }
    if (!model->backend().SetBatchInvariant(true)) {
      return absl::InvalidArgumentError(std::string("--batch-invariant: backend '") + model->backend().name() +
                                        "' has no batch-invariant mode");
    }
  }
  {
    // The KV cache is allocated whole when the engine starts; requests in flight are bounded by
    // --max-request-mb x --max-concurrent-requests (rollout/service.h).
    MemoryPlan plan;
    plan.Add("KV cache (--kv-memory-mb " + std::to_string(a.kv_memory_mb) + ")", kv_bytes);
    GRPO_RETURN_IF_ERROR(plan.Check("the KV cache"));
  }
  std::optional<tokenizer::Tokenizer> tok;
  std::string tok_path = a.tokenizer;
  struct stat st;
  if (tok_path.empty() && stat((a.model + "/tokenizer.json").c_str(), &st) == 0) tok_path = a.model;
  if (!tok_path.empty()) {
    GRPO_ASSIGN_OR_RETURN(tokenizer::Tokenizer t, tokenizer::Tokenizer::Load(tok_path));
    tok = std::move(t);
  }
  EngineOptions eo;
  eo.kv_memory_bytes = kv_bytes.value();
  eo.block_size = a.block_size;
  eo.max_running_sequences = a.max_batch;
  eo.max_prefill_tokens_per_step = a.max_prefill_tokens;
  eo.tokenizer = tok ? &*tok : nullptr;
  eo.tool_call_threads = a.tool_call_threads;
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<RolloutEngine> engine, RolloutEngine::Create(std::move(model), eo));
  const EngineStats s = engine->stats();
  std::fprintf(stderr, "grpo rollout serve: %s (%s weights), KV cache %lld blocks of %lld positions, max batch %lld%s\n",
               a.model.c_str(), a.serve_format.c_str(), static_cast<long long>(s.total_blocks), static_cast<long long>(a.block_size),
               static_cast<long long>(a.max_batch), tok ? ", tokenizer loaded" : ", no tokenizer");
  RolloutServeOptions so;
  so.listen = a.listen;
  so.max_group_size = a.max_group_size;
  so.max_prompt_tokens = a.max_prompt_tokens;
  so.max_prompt_bytes = a.max_prompt_bytes;
  so.max_request_mb = a.max_request_mb;
  so.max_concurrent_requests = a.max_concurrent_requests;
  so.shutdown_grace = absl::Seconds(a.grace_seconds);
  so.push_token = push_token;
  so.allow_unauthenticated_push = a.allow_unauthenticated_push;
  so.logprobs_model = logprobs_model.get();
  so.max_logprobs_tokens = a.max_logprobs_tokens;
  if (logprobs_model) std::fprintf(stderr, "grpo rollout serve: serving Logprobs (a second f32 copy of the weights)\n");
  so.tool_plugins = a.tool_plugins;
  std::fprintf(stderr, "grpo rollout serve: weight pushes %s\n",
               !push_token.empty()             ? "need the job's push token"
               : a.allow_unauthenticated_push ? "are taken WITHOUT a token (--allow-unauthenticated-push)"
                                              : "are refused (no push token: --push-token-file or $GRPO_PUSH_TOKEN_FILE)");
  return ServeRolloutUntilSignal(*engine, eo.tokenizer, so);
}

}  // namespace

void AddRolloutCommands(CLI::App& rollout) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* serve = AddSubcommand(rollout, "serve", "Serve RolloutService over gRPC", [a] { return RunServe(*a); });
  serve->add_option("--model", a->model, "model directory (HF layout)")->required();
  serve->add_option("--listen", a->listen,
                    "HOST:PORT, port 0..65535 (default 127.0.0.1:50061, loopback; port 0 picks a free one)");
  serve->add_option("--max-batch", a->max_batch, "most sequences decoding at once (default 256)");
  serve->add_option("--serve-format", a->serve_format,
                    "how the weights are held and multiplied: f32, bf16, fp8 (128x128 blocks) or stored (as "
                    "the checkpoint stores them) (default f32)");
  serve->add_option("--kv-memory-mb", a->kv_memory_mb, "KV cache budget in MiB (default 1024)");
  serve->add_flag("--batch-invariant", a->batch_invariant,
                  "logprobs bit-identical to the learner's recomputation, whatever the batch (the "
                  "learner's recipe key rollout.batch_invariant; needs --serve-format f32; slower)");
  serve->add_flag("--serve-logprobs", a->serve_logprobs,
                  "answer Logprobs (a teacher for on-policy distillation: recipe distill.teacher_server); "
                  "loads a second f32 copy of the model");
  serve->add_option("--max-logprobs-tokens", a->max_logprobs_tokens,
                    "tokens of one Logprobs request, all sequences together (default 16384)");
  serve->add_option("--tokenizer", a->tokenizer, "tokenizer.json or its directory (default: the model's, if any)");
  serve->add_option("--block-size", a->block_size, "KV cache positions per block (default 16)");
  serve->add_option("--max-prefill-tokens", a->max_prefill_tokens, "prompt tokens prefilled per step (default 2048)");
  serve->add_option("--max-group-size", a->max_group_size, "largest group_size accepted (default 1024)");
  serve->add_option("--max-prompt-tokens", a->max_prompt_tokens, "longest prompt accepted (default: context - 1)");
  serve->add_option("--max-prompt-bytes", a->max_prompt_bytes,
                    "longest prompt_text accepted, refused before tokenizing (default: max prompt tokens x the "
                    "tokenizer's longest token)");
  serve->add_option("--max-request-mb", a->max_request_mb, "largest request accepted, in MiB (default 16)");
  serve->add_option("--max-concurrent-requests", a->max_concurrent_requests,
                    "Generate calls served at once; more are refused with RESOURCE_EXHAUSTED (default 64)");
  serve->add_option("--grace-seconds", a->grace_seconds, "on SIGTERM/SIGINT, time in-flight requests get (default 30)");
  serve->add_option("--push-token-file", a->push_token_file,
                    "file (mode 0600) with the job's token that weight pushes must carry (default: "
                    "$GRPO_PUSH_TOKEN_FILE; without one, pushes are refused)");
  serve->add_flag("--allow-unauthenticated-push", a->allow_unauthenticated_push,
                  "take weight pushes from any caller, without a token (local tests only)");
  serve->add_option("--tools-plugin", a->tool_plugins,
                    "a tool plugin (shared library) that requests may name in tools.plugin; repeatable "
                    "(the calculator and python tools need none; docs/tools.md)");
  serve->add_option("--tools-call-threads", a->tool_call_threads,
                    "threads running tool calls while other samples decode, 0..256 (default 4; 0: on the engine's "
                    "loop thread); the recipe's tools.call_threads");
  AddBackendOption(serve, &a->backend, "default cpu");
}

}  // namespace grpo::cli
