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
// Device state: the parameters live in the backend's memory from Load/Create on (the CPU backend
// aliases the host tensors it is given, Backend::ImportHost, so f32 masters and mmap'd serving
// weights are not held twice; other backends copy them and the host tensors are dropped). Host
// code sees values only through explicit transfers: ReadParameter / ReadParameters download,
// WriteParameter / UpdateParameters upload, UpdateParameterBuffers takes values already on the
// device (a serving copy made there, QuantizeOnDevice). Gradients are device buffers (Backward fills them; ReadGradients
// downloads). Forward downloads only its results (logprobs, entropies, routing); ForwardStep
// leaves the logits on the device for the backend's sampler (SampleNext) and downloads the
// routing only when StepInput::return_routing asks.
//
// Not thread-safe: one Forward/Backward at a time per model.
#ifndef GRPO_MODEL_CAUSAL_LM_H_
#define GRPO_MODEL_CAUSAL_LM_H_

#include <cstdint>
#include <functional>
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

// Full-distribution distillation (GKD-style on-policy distillation): at chosen targets, the
// divergence (model/ops/backend.h Divergence) between this model's next-token distribution and a
// teacher's, given as the teacher's logits at the same positions.
struct DivergenceTargets {
  Divergence kind = Divergence::kReverseKl;
  std::vector<int64_t> rows;              // indices into Forward's logprobs, strictly increasing
  std::span<const float> teacher_logits;  // rows.size() x vocab; must live until Backward
};

struct ForwardOptions {
  bool need_entropy = false;
  bool keep_activations = false;  // required before Backward
  bool recompute = false;         // with keep_activations: save layer inputs only
  const Routing* forced_routing = nullptr;
  // Computes ForwardOutput::divergence; Backward then takes divergence weights (may be null).
  const DivergenceTargets* divergence = nullptr;
  bool return_logits = false;     // fills ForwardOutput::logits (num_targets() x vocab floats)
};

struct ForwardOutput {
  std::vector<float> logprobs;    // num_targets(), sequence by sequence
  std::vector<float> entropy;     // same layout, when need_entropy
  std::vector<float> divergence;  // one per ForwardOptions::divergence row
  std::vector<float> logits;      // [num_targets(), vocab], when return_logits
  Routing routing;                // empty for dense models
};

// New tokens of several sequences for one incremental step (a prefill chunk or one decode
// token each) over a KV cache.
struct StepInput {
  std::vector<int32_t> tokens;          // new tokens, sequence by sequence
  std::vector<int64_t> offsets{0};      // num_seqs + 1, into tokens
  std::vector<int64_t> past;            // per sequence: positions already in the cache
  std::vector<int64_t> cache_seq;       // per sequence: its sequence id in the cache
  // Download the new tokens' experts and combine weights (StepOutput::routing); otherwise the
  // routing stays on the device and StepOutput::routing is empty.
  bool return_routing = false;
  int64_t num_seqs() const { return static_cast<int64_t>(past.size()); }
};

struct StepOutput {
  Buffer logits;    // device f32 [num_seqs, vocab]: next-token logits after each sequence's last new token
  Routing routing;  // experts of the new tokens (num_tokens = tokens.size()) when asked, else empty
};

// Tokens sampled from a StepOutput's logits (CausalLM::SampleNext), one per row.
struct SampledTokens {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;      // under the sampled distribution
  std::vector<float> raw_logprobs;  // log softmax(logits)[token]
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

// A parameter's value in device memory, in the dtype a model holds it.
struct DeviceParameter {
  Buffer value;      // F32, BF16 or F8E4M3; the parameter's number of elements
  Buffer scale_inv;  // F8E4M3 only: F32 block scales [ceil(rows/128), ceil(cols/128)]
};

// New device buffers holding the f32 device values `f32` (rows x cols, row-major; rows = 1 for
// a vector) as `dtype` (F32, BF16, or F8E4M3 with block scales), converted on the device by
// Backend::QuantizeWeight: nothing crosses to the host. `nonfinite` as QuantizeWeight's (may be
// null); the caller checks it before serving the result. Throws std::bad_alloc when the backend
// is out of memory.
DeviceParameter QuantizeOnDevice(Backend& backend, const Buffer& f32, int64_t rows, int64_t cols,
                                 DType dtype, DevicePtr<int32_t> nonfinite);

// Backward's report that the gradients of some trainable parameters (indices into
// parameter_specs()) are final for this call: Backward writes those gradient buffers no more, and
// their last writes are queued on the backend before anything the callee queues on the calling
// thread (a CopyDeviceToHost sees the final values). Called on Backward's thread, once per group of
// CausalLM::gradient_ready_order(), in that order.
using GradientsReady = std::function<void(std::span<const size_t> params)>;

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

  // A model holding values already in device memory on `backend` (a serving copy made there,
  // QuantizeOnDevice), one per parameter in ExpectedParameters(config) order: F32, or for a
  // served matrix (ServedNarrow, 2-D) BF16 or F8E4M3 with its F32 block scales. The model owns
  // the buffers; nothing crosses to the host. Errors name the first parameter that does not fit.
  static absl::StatusOr<std::unique_ptr<CausalLM>> CreateOnDevice(ModelConfig config,
                                                          std::vector<DeviceParameter> values,
                                                          Backend& backend);

  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }
  // Every parameter's spec, in ExpectedParameters order.
  const std::vector<ParameterSpec>& parameter_specs() const { return specs_; }
  size_t num_parameters() const { return specs_.size(); }
  // Parameter i's value (and FP8 scales) downloaded to new host tensors, in the dtype the model
  // holds it.
  Parameter ReadParameter(size_t i) const;
  std::vector<Parameter> ReadParameters() const;
  // Uploads a new value of parameter i: the spec's shape, in the dtype the model holds it, or,
  // for a projection of a serving model, any served format (F32 owned, BF16, F8E4M3 with F32
  // scale_inv); the model then holds that format. Errors name the parameter.
  absl::Status WriteParameter(size_t i, const Tensor& value, const Tensor& scale_inv = Tensor());
  // Replaces the values of several parameters (index in parameter_specs() order, new value):
  // each must have the parameter's name and shape and the dtype the model holds it in (F32; or,
  // for a matrix served as bf16 / FP8, BF16 / F8E4M3 with F32 scale_inv of the block shape, as
  // Create checks). All are checked before any is uploaded (WriteParameter), so a failed update
  // changes nothing. The rollout engine's weight updates come this way; not during Forward,
  // Backward or ForwardStep.
  absl::Status UpdateParameters(std::vector<std::pair<int64_t, Parameter>> updates);
  // The same for values already in device memory on this model's backend (QuantizeOnDevice
  // makes them): each must be the dtype the model holds the parameter in, with its number of
  // elements (and, for F8E4M3, block scales of the matrix's grid). All are checked before any
  // is swapped in, so a failed update changes nothing; the model then owns the buffers. No host
  // traffic. Not during Forward, Backward or ForwardStep.
  absl::Status UpdateParameterBuffers(std::vector<std::pair<int64_t, DeviceParameter>> updates);
  DType parameter_dtype(size_t i) const { return dtypes_[i]; }
  // The device buffer of parameter i's value (f32 for every trainable parameter of a training
  // model): optimizers update it in place with backend ops.
  Buffer& parameter_buffer(size_t i) {
    compute_stale_ = true;
    return values_[i];
  }
  std::vector<Buffer>& parameter_buffers() {
    compute_stale_ = true;
    return values_;
  }
  const Buffer& parameter_buffer(size_t i) const { return values_[i]; }
  // True when some projection matrix is held as bf16 or FP8 (inference only).
  bool serves_quantized() const { return quantized_; }

  // Mixed precision (the recipe key learner.precision). With kBF16 a training model keeps, beside
  // its f32 parameters (the masters the optimizer updates), a bf16 compute copy of every
  // ServedNarrow matrix (the projections, the token embedding and the output head; norms,
  // routers and biases stay f32). Forward, Backward and ForwardStep multiply by the copies
  // (Backend::LinearWeights, LinearWeightsBackward; the CPU backend widens them exactly and
  // computes in f32); gradients stay f32 and are taken with respect to the bf16 values, which the
  // optimizer applies to the f32 masters (straight-through). The copies are made from the masters
  // on the device (Backend::QuantizeWeight, rounding to nearest even) and remade at the next
  // Forward or ForwardStep whenever the masters may have changed since: after a non-const
  // parameter_buffer(s) access (an optimizer step), WriteParameter or UpdateParameters. Backward
  // always uses the copies its Forward used. kF32 (the default) drops the copies: results are
  // those of a model that never had them, bit for bit. Any other dtype, or kBF16 on a model
  // serving narrow weights, is InvalidArgument / FailedPrecondition. Throws std::bad_alloc when
  // the backend is out of memory for the copies.
  absl::Status SetComputeDType(DType dtype);
  DType compute_dtype() const { return compute_dtype_; }
  // Remakes the compute copies from the masters now (no-op in kF32).
  void RefreshComputeWeights();
  // Bytes held by the compute copies (0 in kF32).
  int64_t compute_copy_bytes() const;
  // Bytes held by the parameter storage (values plus FP8 scales).
  int64_t parameter_bytes() const;

  absl::StatusOr<ForwardOutput> Forward(const TokenBatch& batch, const ForwardOptions& options);

  // New zeroed device gradients: one f32 buffer per parameter of its shape (empty for
  // untrainable parameters).
  std::vector<Buffer> NewGradients() const;
  // Gradients of sum_i weights[i] * logprob[i] for the batch of the last Forward (which must
  // have kept activations), accumulated into `grads` (device buffers; NewGradients when empty).
  // With `on_ready`, Backward announces each group of gradient_ready_order() as soon as that
  // group's gradients are final (data-parallel ranks start reducing them while the backward of
  // earlier layers goes on, learner/gradient_reducer.h). The callback must not call this model.
  absl::Status Backward(std::span<const float> weights, std::vector<Buffer>* grads,
                        const GradientsReady& on_ready = nullptr);
  // The same for loss = sum_i weights[i] * logprob[i] + sum_j divergence_weights[j] * D_j, D_j
  // the divergence of row j of the Forward's ForwardOptions::divergence (one weight per row; empty
  // when that Forward had none).
  absl::Status Backward(std::span<const float> weights, std::span<const float> divergence_weights,
                        std::vector<Buffer>* grads, const GradientsReady& on_ready = nullptr);
  // The trainable parameters grouped in the order Backward finishes their gradients: the output
  // head (when not tied to the embedding) with the final norm, then every decoder layer's
  // parameters from the last layer to the first, then the rest (the token embedding, and with it
  // a tied output head). Each trainable parameter is in exactly one group; no group is empty.
  const std::vector<std::vector<size_t>>& gradient_ready_order() const { return ready_order_; }
  // Downloads gradients to host tensors (F32, parameter shapes; zero for untrainable ones).
  std::vector<Tensor> ReadGradients(const std::vector<Buffer>& grads) const;

  // Runs the new tokens over the cache: reads rows of past positions, writes the rows of the new
  // positions, returns the next-token logits of each sequence. With `forced_routing`, MoE
  // layers use its experts for the new tokens. Inference only (no activations kept).
  absl::StatusOr<StepOutput> ForwardStep(const StepInput& input, KvCacheView& cache,
                                 const Routing* forced_routing = nullptr);
  // Draws tokens from `out.logits` with the backend's sampler (Backend::Sample; one result per
  // SamplingRow, each naming its logits row): only ids and logprobs come back to the host.
  SampledTokens SampleNext(const StepOutput& out, std::span<const SamplingRow> rows);

  // Frees the activations kept by the last Forward.
  void ReleaseActivations();

 private:
  struct Layer;
  struct LayerActs;
  struct State;
  CausalLM(ModelConfig config, std::vector<Parameter> params, Backend& backend);
  absl::Status Bind();
  // Binds the layers to the parameters by name (specs_) and uploads the usual RoPE tables.
  void BindLayers();
  // Groups the trainable parameters by the Backward stage that finishes their gradients
  // (ready_order_, ready_stage_); after BindLayers.
  void BindGradientReadyOrder();
  // Puts parameter i's host value on the device (aliasing or copying, Backend::ImportHost).
  void Import(size_t i, Parameter p);
  // RoPE tables covering at least `positions`, built once and grown when a longer batch comes
  // (decoding asks every step; the tables depend only on the config); uploaded when grown.
  const RopeTables& RopeFor(int64_t positions);

  ModelConfig config_;
  std::vector<Parameter> params_;     // host values until Bind has imported them
  std::vector<ParameterSpec> specs_;
  std::vector<Tensor> host_;          // host storage the device aliases (CPU backend), else empty
  std::vector<Tensor> host_scales_;
  std::vector<Buffer> values_, scales_;  // device: values, F32 block scales of FP8 values
  std::vector<DType> dtypes_;
  Backend& backend_;
  Buffer rope_cos_, rope_sin_;
  std::vector<std::unique_ptr<Layer>> layers_;
  // gradient_ready_order() and, per group, the Backward stage after which it is final: a layer
  // index, kHeadStage (after the output head and final norm) or kEndStage (after the embedding).
  static constexpr int64_t kHeadStage = -1, kEndStage = -2;
  std::vector<std::vector<size_t>> ready_order_;
  std::vector<int64_t> ready_stage_;
  int embed_ = -1, final_norm_ = -1, lm_head_ = -1;
  std::unique_ptr<State> state_;
  RopeTables rope_;
  bool quantized_ = false;
  // Mixed precision (SetComputeDType): bf16 copies of the ServedNarrow matrices (empty Buffers
  // for the others and in kF32), stale when the masters may have changed since they were made.
  DType compute_dtype_ = DType::kF32;
  std::vector<Buffer> compute_;
  bool compute_stale_ = false;
};

}  // namespace grpo

#endif  // GRPO_MODEL_CAUSAL_LM_H_
