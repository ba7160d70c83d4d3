// Collective over NCCL, for GPU ranks: one rank per GPU, buffers in CUDA device memory of the
// device current when the group is created. Ranks meet through the same file store as Gloo's
// (`<rendezvous_dir>/<group>/`): rank 0 creates NCCL's unique id and publishes it there.
//
// Timeouts: NCCL calls are asynchronous; each call waits for its stream polling NCCL's
// asynchronous error, and when the group's timeout passes it aborts the communicator and fails
// with kDeadlineExceeded, naming the peers this host can see are gone. Compiled everywhere
// (CI has the toolkit, not a GPU); tests need a GPU (tag `gpu`).
#ifndef GRPO_COLLECTIVE_NCCL_COLLECTIVE_H_
#define GRPO_COLLECTIVE_NCCL_COLLECTIVE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "collective/collective.h"

namespace grpo {

// Joins the group on the current CUDA device (cudaSetDevice before calling). Fails with
// kUnavailable when no GPU is present or the peers do not meet within the timeout.
absl::StatusOr<std::unique_ptr<Collective>> ConnectNccl(const CollectiveOptions& options);

}  // namespace grpo

#endif  // GRPO_COLLECTIVE_NCCL_COLLECTIVE_H_
