// Data-parallel ranks of the learner: the pieces that make N ranks apply the update one rank
// would, over collective/ (Gloo for CPU ranks).
//
// The scheme (docs/scale_out.md):
//  - rank 0 runs everything that must happen once (rollout, rewards, store, metrics,
//    evaluation, checkpoints) and broadcasts each step's training groups to the other ranks;
//  - every mini-batch's samples are cut into `size` contiguous ranges balanced by token count
//    (SplitByTokens); each rank forwards and backwards only its range;
//  - the per-token logprobs are all-gathered so every rank computes the same policy loss over
//    the whole mini-batch (any loss aggregation stays exact), and each rank backpropagates the
//    gradient of its own tokens;
//  - ZeRO-1 (the trainer's way): the gradients are reduce-scattered in buckets (GradientReducer,
//    learner/gradient_reducer.h, overlapped with the backward), each rank steps AdamW over its own
//    shard of every bucket (ShardedAdamW) and the parameters are all-gathered; or, with a
//    replicated optimizer, summed by AllReduceGradients after the backward and stepped by every
//    rank. Either way the replicas stay identical, and equal one process's up to the summation
//    order of the reduction.
#ifndef GRPO_LEARNER_DATA_PARALLEL_H_
#define GRPO_LEARNER_DATA_PARALLEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "collective/collective.h"
#include "core/status.h"
#include "learner/rl_update.h"
#include "model/causal_lm.h"

namespace grpo {

// Cuts items with the given costs into `parts` contiguous ranges whose cost sums are as even as
// a contiguous cut allows: returns parts + 1 boundaries (0 first, costs.size() last); range r is
// [b[r], b[r+1]), possibly empty when there are fewer items than parts. parts >= 1.
std::vector<size_t> SplitByTokens(const std::vector<int64_t>& costs, int parts);

// Sums every trainable gradient across the group's ranks, in place. Gradients are copied to host
// buckets of at most `bucket_elements` floats (several parameters per bucket, a large one split
// across buckets), each bucket all-reduced as one call and copied back.
absl::Status AllReduceGradients(Collective& collective, const std::vector<ParameterSpec>& specs,
                                std::vector<Buffer>* grads, int64_t bucket_elements = 1 << 22);

// Makes every rank's parameters equal rank 0's (host staging, one broadcast per parameter).
absl::Status BroadcastParameters(Collective& collective, CausalLM& model);

// Broadcasts a byte string of any length from `root` (its length first).
absl::Status BroadcastBytes(Collective& collective, std::string* bytes, int root);

// The training groups of one step as bytes and back (what rank 0 sends the other ranks).
std::string SerializeGroups(const std::vector<RlGroup>& groups);
absl::StatusOr<std::vector<RlGroup>> ParseGroups(const std::string& bytes);

}  // namespace grpo

#endif  // GRPO_LEARNER_DATA_PARALLEL_H_
