// RolloutEngine: continuous batching of many groups of samples over one paged KV cache, with
// admission control, preemption by recompute, and live weight updates between steps.
//
// Contract:
//  - A group (GroupRequest) is G samples of one prompt. Its prompt is prefilled once (in chunks
//    of at most max_prefill_tokens_per_step tokens per step, shared with other prefills) into
//    one cache sequence; its samples fork that sequence's blocks (copy-on-write touches only
//    the prompt's last, partial block). Every step decodes one token for every running sample
//    of every admitted group, plus the prefill chunks that fit.
//  - Sample i draws from its own RNG seeded by (seed, i), so a sample depends only on
//    (prompt, options, seed, i, weights), not on how many samples its group has or what else is
//    batched with it (on the CPU backend, whose kernels compute each row independently of the batch).
//  - Admission: a waiting group is prefilled (FIFO) when its prompt's blocks (plus one block of
//    headroom when other groups hold blocks) are free and max_running_sequences allows; its
//    samples start as blocks free up. When a running sample needs a block and none is free,
//    the most recently admitted other sample is preempted (its blocks freed; its tokens and RNG
//    kept); with no other sample left, the prompt blocks of the most recently admitted group
//    without running samples go (it re-prefills later). A preempted sample resumes by
//    recomputing the cache of prompt + its tokens (prefill), so preemption never changes its
//    tokens. A request whose single sample could not fit in the whole pool is rejected
//    (ResourceExhausted) at submission.
//  - Weights: StageWeights(version, params) checks names and shapes and stages the values (from
//    host tensors, or from device buffers converted on the device, no host round trip); the
//    engine hands them to the model (CausalLM::UpdateParameters, its only write to the model's
//    values) at the next step boundary and, with
//    recompute_on_weight_update, recomputes every in-flight cache under them. Each token
//    records the version of the forward step that produced it (WeightVersionSpan encoding).
//  - Routing (MoE models, return_routing): prompt_routing holds positions 0..P-2, each sample's
//    routing its tokens 0..T-1 (the routing of the step whose input was the previous token),
//    token-major: experts[(t * L + l) * K + k], L = MoE layers, K = experts per token, as
//    proto/sample.proto TokenRouting. Multi-turn samples have routing for every token too: a
//    token an environment appended gets the routing of the step that fed the token before it
//    (the prefill of the result), so routing replay covers every position the learner forwards.
//  - Tool use (multi-turn, GroupRequest::environment): when a sample's decoded text comes to
//    contain the environment's call_end() (searched in the text its last token added), the
//    engine runs the call (Environment::Call) on one of tool_call_threads worker threads: the
//    sample takes no steps until the result is back (it keeps its blocks, or is preempted like
//    any other), while the other samples go on decoding; then the engine tokenizes the result and
//    appends its ids to the sample's tokens (logprobs 0, recorded in environment_spans), and the
//    sample goes on decoding: the next step feeds only the new ids (the last generated token and
//    the environment's), over the cache the sample already holds, so earlier positions are never
//    prefilled again. max_new_tokens bounds generated plus appended tokens; a sample makes at
//    most max_tool_calls calls (the marker after the last one ends it, kStop). Stop tokens and
//    stop strings are checked in the generated tokens only. A sample's tokens do not depend on
//    when its call comes back (each sample draws from its own RNG), so tool_call_threads = 0
//    (calls on the loop thread, between two steps) gives the same samples. A result that spends
//    max_new_tokens ends the sample (kLength) at once, or, with return_routing on an MoE model,
//    after one more step feeds the result's tokens (so their routing is recorded; no token is
//    drawn).
//  - Threads: one background loop thread runs the steps (a dedicated std::thread, not a pool
//    task: the model's kernels fan out on ThreadPool::Default(), which runs nested work
//    inline). Callbacks run on that thread between steps and must not block; they may call
//    Submit, Cancel, StageWeights and stats, not Drain, GenerateGroups, WaitForStagedWeights
//    or the destructor. All public methods are thread-safe.
#ifndef GRPO_ROLLOUT_ENGINE_H_
#define GRPO_ROLLOUT_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"
#include "model/causal_lm.h"
#include "rollout/environment.h"
#include "rollout/sampler.h"
#include "tokenizer/tokenizer.h"

namespace grpo {

struct EngineOptions {
  // KV budget: num_blocks if > 0, else kv_memory_bytes / bytes per block.
  int64_t num_blocks = 0;
  int64_t kv_memory_bytes = int64_t{256} << 20;
  int64_t block_size = 16;                  // positions per block
  int64_t max_running_sequences = 256;      // samples decoding at once
  int64_t max_prefill_tokens_per_step = 2048;
  const tokenizer::Tokenizer* tokenizer = nullptr;  // needed for stop_strings; outlives the engine
  // At a weight switch, drop every cache and recompute it under the new weights (so the
  // logprobs of post-switch tokens are exactly the new policy's). false: in-flight sequences
  // keep the keys/values the old weights computed (cheaper; slightly off-policy).
  bool recompute_on_weight_update = true;
  // Threads that run environment calls (tool use) off the loop thread, so a slow tool (a
  // sandboxed program: tens of ms) stalls only its own sample. 0: calls run on the loop thread
  // and every sample waits for them. Environments must then be thread-safe.
  int64_t tool_call_threads = 4;
};

// One tensor of a weight update already in device memory (RolloutEngine::StageWeights).
struct DeviceWeight {
  std::string name;             // the parameter's HF name
  const Buffer* f32 = nullptr;  // its f32 values (the parameter's shape, row-major)
};

struct GroupRequest {
  std::vector<int32_t> prompt;
  int64_t n = 1;                       // G
  SamplingOptions sampling;
  int64_t max_new_tokens = 256;
  uint64_t seed = 0;
  std::vector<int32_t> stop_tokens;    // kept as the sample's last token
  std::vector<std::string> stop_strings;  // the token completing a match is kept
  bool return_routing = false;
  bool return_raw_logprobs = false;
  // Multi-turn tool use (see the contract above); null: single turn. Needs the engine's tokenizer.
  std::shared_ptr<Environment> environment;
  int64_t max_tool_calls = 4;           // per sample, >= 0
  int64_t max_tool_output_tokens = 64;  // per call, > 0: a longer result is cut
};

struct VersionSpan {
  uint64_t version = 0;
  int64_t first_token = 0;
  bool operator==(const VersionSpan&) const = default;
};

// Why a sample ended. proto/sample.proto FinishReason is its wire form and "stop" / "length" /
// "aborted" its text in JSON Lines files; rollout/sample_proto.h converts to both.
enum class FinishReason {
  kStop,     // it drew a stop token or its text came to contain a stop string
  kLength,   // it reached max_new_tokens
  kAborted,  // cut short (Cancel, a drain past its grace, the engine's destruction): not an answer
};

struct SampleResult {
  int64_t index = 0;                   // sample_index in the group
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;         // under the distribution sampled from
  std::vector<float> raw_logprobs;     // log softmax(logits); filled on request
  FinishReason finish_reason = FinishReason::kAborted;  // set when the sample ends
  std::vector<VersionSpan> versions;   // run-length weight version per token
  std::vector<int32_t> routing;        // T * L * K when requested (MoE)
  // The tokens the environment appended (multi-turn tool use), in order: every other token was
  // generated by the model. GeneratedTokenMask(tokens.size(), environment_spans) is the loss mask.
  std::vector<EnvironmentSpan> environment_spans;
};

struct GroupTiming {
  double queue_seconds = 0, prefill_seconds = 0, decode_seconds = 0, total_seconds = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

struct GroupResult {
  std::vector<SampleResult> samples;   // index order
  std::vector<int32_t> prompt_routing; // (P - 1) * L * K when requested (MoE)
  int64_t num_moe_layers = 0, top_k = 0;  // L and K of the routing arrays (0 when none)
  GroupTiming timing;
};

// Called on the engine thread. on_prefill: the prompt is prefilled (prompt_routing set, samples
// empty). on_sample: one sample finished. on_done: all samples, in index order, and timing.
struct GroupCallbacks {
  std::function<void(const GroupResult&)> on_prefill;
  std::function<void(const SampleResult&)> on_sample;
  std::function<void(GroupResult)> on_done;
};

struct EngineStats {
  uint64_t weight_version = 0;
  int64_t waiting_groups = 0, running_sequences = 0, free_blocks = 0, total_blocks = 0;
  int64_t preemptions = 0;  // since creation
  int64_t forwarded_tokens = 0;  // input positions of every forward step since creation
};

class RolloutEngine {
 public:
  static absl::StatusOr<std::unique_ptr<RolloutEngine>> Create(std::unique_ptr<CausalLM> model,
                                                       EngineOptions options);
  ~RolloutEngine();  // aborts what is in flight (callbacks still run), joins the loop

  // InvalidArgument for a bad request (empty prompt, out-of-vocabulary token, n <= 0, bad
  // sampling, prompt + max_new_tokens beyond max_position_embeddings, stop strings without a
  // tokenizer, an environment without a tokenizer, max_tool_calls < 0, max_tool_output_tokens
  // <= 0); ResourceExhausted if one sample cannot fit in the pool; Unavailable after Drain.
  absl::Status Validate(const GroupRequest& request) const;
  // Queues a group; returns its id. Callbacks fire later on the engine thread.
  absl::StatusOr<uint64_t> Submit(GroupRequest request, GroupCallbacks callbacks);
  // Aborts a queued or running group: unfinished samples end with kAborted, blocks are freed,
  // on_sample/on_done still fire. Unknown or finished ids are ignored.
  void Cancel(uint64_t id);
  // Runs the groups with continuous batching and blocks until all are done (results in request
  // order). Fails with the first invalid request before running any. The groups are queued
  // together, so on an idle engine the results (tokens and every bit of the logprobs) depend
  // only on the requests, the weights and the thread count, not on timing; groups submitted one
  // by one while the engine runs share steps as they arrive, and batched GEMMs round a token's
  // results differently with different batch neighbours.
  absl::StatusOr<std::vector<GroupResult>> GenerateGroups(const std::vector<GroupRequest>& requests);

  // Stops accepting requests; waits up to `grace` (forever when absl::InfiniteDuration(); a
  // negative grace is zero) for in-flight groups, then aborts the rest. Returns {completed,
  // aborted} groups. The engine stays usable for StageWeights/stats; Submit fails with
  // Unavailable afterwards.
  std::pair<int64_t, int64_t> Drain(absl::Duration grace);

  // Checks every tensor against the model (name known, shape equal; value F32, BF16 or F16,
  // converted to the format the model holds) and stages them for the next step boundary.
  // `version` must exceed the serving and any staged version. Tensors not listed keep their
  // values.
  absl::Status StageWeights(uint64_t version, std::vector<Parameter> params);
  // The same for values already in device memory on the model's backend (an update from a
  // learner in this process): each tensor's f32 values, converted to the format the model holds
  // them in on the device (QuantizeOnDevice, Backend::QuantizeWeight) and staged. Host traffic:
  // 4 bytes up and 4 down (the count of non-finite values), whatever the model's size. The
  // source buffers may be reused once the call returns. Errors (nothing staged): an unknown
  // name, a buffer that is not F32 of the parameter's size on this backend, a non-finite value
  // (InvalidArgument); out of device memory (ResourceExhausted).
  absl::Status StageWeights(uint64_t version, const std::vector<DeviceWeight>& weights);
  // The version new tokens are generated with.
  uint64_t weight_version() const;
  // Blocks until no staged weights are pending (they were applied).
  void WaitForStagedWeights();

  EngineStats stats() const;
  const ModelConfig& config() const;
  int64_t block_size() const;

  class Impl;

 private:
  explicit RolloutEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo

#endif  // GRPO_ROLLOUT_ENGINE_H_
