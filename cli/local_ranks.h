// `grpo train --nproc N`: N data-parallel ranks of the learner on this machine, and how a rank
// finds its group. Each rank is this same command run again without --nproc, with
//   GRPO_RANK, GRPO_WORLD_SIZE    its rank and the number of ranks;
//   GRPO_RENDEZVOUS_DIR           where the ranks meet (a fresh directory per launch);
//   GRPO_COLLECTIVE_HOST          the address it listens on (127.0.0.1 for local ranks).
// A cluster launch (srun, one rank per task) sets the same variables.
#ifndef GRPO_CLI_LOCAL_RANKS_H_
#define GRPO_CLI_LOCAL_RANKS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collective/collective.h"

namespace grpo::cli {

// Starts `nproc` ranks of the current command and waits for all of them. SIGTERM/SIGINT are
// passed on to every rank. When a rank exits non-zero or is killed, the others get
// `failure_grace` to end by themselves (a rank whose peer is gone fails its collective call at
// once, naming the peer); any still running then get SIGTERM, and SIGKILL 5 s later. Fails when
// any rank failed, naming each rank that exited non-zero or was killed, and which of them the
// launcher stopped.
absl::Status RunLocalRanks(int nproc, absl::Duration failure_grace);

// The group this process is a rank of, from the variables above; null when GRPO_WORLD_SIZE is
// unset or 1. Bad values are an error naming the variable.
absl::StatusOr<std::unique_ptr<Collective>> JoinRanksFromEnvironment(absl::Duration timeout);

}  // namespace grpo::cli

#endif  // GRPO_CLI_LOCAL_RANKS_H_
