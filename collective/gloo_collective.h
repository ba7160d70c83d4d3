// Collective over Gloo's TCP transport, for CPU ranks (the engine PyTorch uses for CPU
// collectives). Ranks meet through Gloo's file store in `<rendezvous_dir>/<group>/`: each rank
// publishes its listening address there and connects to every peer (a full mesh), so the
// directory must be visible to every rank (the job's shared rendezvous directory under Slurm,
// a fresh temporary directory for local ranks). Buffers are host memory.
#ifndef GRPO_COLLECTIVE_GLOO_COLLECTIVE_H_
#define GRPO_COLLECTIVE_GLOO_COLLECTIVE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "collective/collective.h"

namespace grpo {

// Joins the group: blocks until all `options.size` ranks have met or `options.timeout` passed
// (then fails with kUnavailable: this rank, the directory and Gloo's reason). Sets SIGPIPE to
// ignored when it has its default action: Gloo writes to sockets a dead peer closed, and the
// failed write must become an error naming that peer, not kill this process.
absl::StatusOr<std::unique_ptr<Collective>> ConnectGloo(const CollectiveOptions& options);

}  // namespace grpo

#endif  // GRPO_COLLECTIVE_GLOO_COLLECTIVE_H_
