// What a model's parts take in memory, for plans made before allocating (core/memory_plan.h).
//
// Every count is overflow-checked (CheckedInt64) and a lower bound: the buffers that must exist
// at once, without allocator overhead, so that a plan refused here would certainly not fit.
// Labels name the config keys that size each part.
#ifndef GRPO_MODEL_MODEL_MEMORY_H_
#define GRPO_MODEL_MODEL_MEMORY_H_

#include <cstdint>
#include <string>

#include "core/checked_math.h"
#include "core/memory_plan.h"
#include "model/model_config.h"
#include "model/parameters.h"

namespace grpo {

// "hidden_size 64, intermediate_size 128, num_hidden_layers 2, vocab_size 512" (+ the expert
// keys of a MoE model): the keys that size a model, for the labels of plan parts.
std::string ModelSizeKeys(const ModelConfig& config);

// The parameters held in `format` (f32: 4 bytes a value; bf16: 2; fp8 and kStored: 1), plus
// the bookkeeping of each tensor.
CheckedInt64 ModelWeightBytes(const ModelConfig& config, WeightFormat format);

// One cached position of one sequence, all layers (KvCacheRowWidth floats per layer; more for
// MLA on a backend in batch-invariant mode).
CheckedInt64 KvBytesPerPosition(const ModelConfig& config, bool batch_invariant = false);

// Activations of one CausalLM::Forward over `num_tokens` tokens: linear in the tokens, whatever
// the sequence lengths (attention keeps one log-sum-exp per token and head, never the [L, L]
// probabilities; Backend::Attention). Inference holds one layer's at a time; keep_activations
// (training) every layer's, or with `recompute` every layer's input plus one layer's.
// Backward's gradient buffers are not included.
CheckedInt64 ActivationBytes(const ModelConfig& config, CheckedInt64 num_tokens, bool keep_activations,
                             bool recompute = false);

// Adds the weights in `format` to `plan`; with `training`, also their f32 gradients and AdamW's
// two f32 moments. `what` prefixes the labels (e.g. "policy", "reference model"); the weights'
// label names the size keys (ModelSizeKeys).
void AddModelWeights(const ModelConfig& config, WeightFormat format, bool training, const std::string& what,
                     MemoryPlan* plan);

}  // namespace grpo

#endif  // GRPO_MODEL_MODEL_MEMORY_H_
