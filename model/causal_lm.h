// CausalLM: forward and backward of every supported family (model_config.h) over a packed batch
// of independent sequences, on a Backend (model/ops/backend.h).
//
// Forward gives, per sequence of length L, the L-1 log-probabilities log p(t_i | t_<i), the
// entropies of the L-1 next-token distributions, and for MoE layers the experts chosen per
// token (and their combine weights). A forced routing (routing replay) makes MoE layers use
// given experts instead of choosing. Backward gives the gradients of
//   loss = sum_i weight_i * logprob_i
// with respect to every trainable parameter (router included, through the chosen experts' gate
// scores; not through the choice; the correction bias gets none), accumulated into `grads`.
//
// Activation memory: Forward with keep_activations saves what Backward needs; with `recompute`
// it saves only each layer's input and Backward recomputes the layer (using the routing the
// forward chose), trading one extra forward for O(layers * tokens * hidden) memory.
//
// Not thread-safe: one Forward/Backward at a time per model.
#ifndef GRPO_MODEL_CAUSAL_LM_H_
#define GRPO_MODEL_CAUSAL_LM_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/kv_cache.h"
#include "model/model_config.h"
#include "model/ops/backend.h"
#include "model/parameters.h"
#include "model/rope.h"

namespace grpo {

// Independent token sequences packed end to end.
struct TokenBatch {
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets{0};  // num_seqs + 1; sequence s is tokens[offsets[s], offsets[s+1])

  static TokenBatch FromSequences(const std::vector<std::vector<int32_t>>& sequences);
  int64_t num_seqs() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  // Number of predicted tokens: sum over sequences of max(L - 1, 0).
  int64_t num_targets() const;
};

// Experts chosen per MoE layer and token: experts[(layer * num_tokens + t) * top_k + j], layers
// counted over MoE layers only, in model order; weights in the same layout.
struct Routing {
  int64_t num_moe_layers = 0;
  int64_t num_tokens = 0;
  int64_t top_k = 0;
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

struct ForwardOptions {
  bool need_entropy = false;
  bool keep_activations = false;  // required before Backward
  bool recompute = false;         // with keep_activations: save layer inputs only
  const Routing* forced_routing = nullptr;
};

struct ForwardOutput {
  std::vector<float> logprobs;  // num_targets(), sequence by sequence
  std::vector<float> entropy;   // same layout, when need_entropy
  Routing routing;              // empty for dense models
};

// New tokens of several sequences for one incremental step (a prefill chunk or one decode
// token each) over a KV cache.
struct StepInput {
  std::vector<int32_t> tokens;          // new tokens, sequence by sequence
  std::vector<int64_t> offsets{0};      // num_seqs + 1, into tokens
  std::vector<int64_t> past;            // per sequence: positions already in the cache
  std::vector<int64_t> cache_seq;       // per sequence: its sequence id in the cache
  int64_t num_seqs() const { return static_cast<int64_t>(past.size()); }
};

struct StepOutput {
  std::vector<float> logits;  // [num_seqs, vocab]: next-token logits after each sequence's last new token
  Routing routing;            // experts of the new tokens (num_tokens = tokens.size())
};

// How a model holds its projection matrices, token embedding and output head (parameters.h's
// WeightFormat, ServedNarrow). With any format but kF32 (when a matrix actually ends up bf16 or
// FP8) the model is for inference only: Forward without keep_activations and ForwardStep work,
// served by Backend::LinearWeights (the logits too) and embedding rows widened on lookup, never
// building a full f32 copy; Forward with keep_activations and Backward return
// FailedPrecondition. Norms and routers stay f32.
struct ServeOptions {
  WeightFormat serve_format = WeightFormat::kF32;
};

class CausalLM {
 public:
  ~CausalLM();

  // Loads config.json and the weights from an HF model directory. When the directory has a
  // checksum manifest (core/checksum_manifest.h; training checkpoints do), the model files are
  // verified first: a damaged one is kDataLoss naming it.
  // Every number of the model lives on `backend` (model/ops/registry.h picks one by name).
  static absl::StatusOr<std::unique_ptr<CausalLM>> Load(const std::string& dir, Backend& backend);
  // Serving: kStored keeps the checkpoint's bf16 / FP8 block projections (views of the
  // mapped file); kBF16 / kFp8Block convert them at load.
  static absl::StatusOr<std::unique_ptr<CausalLM>> Load(const std::string& dir, Backend& backend,
                                                const ServeOptions& options);
  // Wraps parameters in ExpectedParameters order (e.g. freshly initialized ones).
  static absl::StatusOr<std::unique_ptr<CausalLM>> Create(ModelConfig config, std::vector<Parameter> params,
                                                  Backend& backend);
  // The same, converting the projection matrices to options.serve_format first (e.g. kFp8Block:
  // quantize f32 masters to FP8 block weights to serve them; kStored: take them as they are,
  // F32, BF16 or F8E4M3 with scale_inv).
  static absl::StatusOr<std::unique_ptr<CausalLM>> Create(ModelConfig config, std::vector<Parameter> params,
                                                  Backend& backend, const ServeOptions& options);

  const ModelConfig& config() const { return config_; }
  // The backend the model runs on (its KV cache pool must live there too).
  Backend& backend() const { return backend_; }
  const std::vector<Parameter>& parameters() const { return params_; }
  // For the learner's optimizer (learner/optimizer.h): parameter values are updated in place.
  // Anything else that changes values goes through UpdateParameters.
  std::vector<Parameter>& mutable_parameters() { return params_; }
  // Replaces the values of parameters (index in parameters() order, new value): each must have
  // the parameter's name and shape and the dtype the model holds it in (F32; or, for a
  // projection served as bf16 / FP8, BF16 / F8E4M3 with F32 scale_inv of the block shape, as
  // Create checks). All are checked before any is applied, so a failed update changes nothing.
  // F32 values are copied into the parameter's storage; BF16 / FP8 parameters take the
  // update's storage (theirs may be a view of a checkpoint file). The one way new values reach
  // a model after creation (the rollout engine's weight updates); not during Forward,
  // Backward or ForwardStep.
  absl::Status UpdateParameters(std::vector<std::pair<int64_t, Parameter>> updates);
  // True when some projection matrix is held as bf16 or FP8 (inference only).
  bool serves_quantized() const { return quantized_; }
  // Bytes held by the parameter storage (values plus FP8 scales; ParameterBytes).
  int64_t parameter_bytes() const { return ParameterBytes(params_); }

  absl::StatusOr<ForwardOutput> Forward(const TokenBatch& batch, const ForwardOptions& options);

  // Gradients of sum_i weights[i] * logprob[i] for the batch of the last Forward (which must
  // have kept activations). grads is resized to parameters().size() (F32, parameter shapes;
  // untrainable ones stay zero) and accumulated into.
  absl::Status Backward(std::span<const float> weights, std::vector<Tensor>* grads);

  // Runs the new tokens over the cache: reads rows of past positions, writes the rows of the new
  // positions, returns the next-token logits of each sequence. With `forced_routing`, MoE
  // layers use its experts for the new tokens. Inference only (no activations kept).
  absl::StatusOr<StepOutput> ForwardStep(const StepInput& input, KvCacheView& cache,
                                 const Routing* forced_routing = nullptr);

  // Frees the activations kept by the last Forward.
  void ReleaseActivations();

 private:
  struct Layer;
  struct LayerActs;
  struct State;
  CausalLM(ModelConfig config, std::vector<Parameter> params, Backend& backend);
  absl::Status Bind();
  // RoPE tables covering at least `positions`, built once and grown when a longer batch comes
  // (decoding asks every step; the tables depend only on the config).
  const RopeTables& RopeFor(int64_t positions);

  ModelConfig config_;
  std::vector<Parameter> params_;
  Backend& backend_;
  std::vector<std::unique_ptr<Layer>> layers_;
  int embed_ = -1, final_norm_ = -1, lm_head_ = -1;
  std::unique_ptr<State> state_;
  RopeTables rope_;
  bool quantized_ = false;
};

}  // namespace grpo

#endif  // GRPO_MODEL_CAUSAL_LM_H_
