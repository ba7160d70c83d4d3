// How the ranks of a group name each other after a failure (internal to collective/). Each
// rank publishes "host, listening address, process id" in the group's store once it has joined;
// a rank whose collective failed reads them back to tell which peer is gone.
#ifndef GRPO_COLLECTIVE_PEER_IDENTITY_H_
#define GRPO_COLLECTIVE_PEER_IDENTITY_H_

#include <string>
#include <vector>

#include "gloo/rendezvous/store.h"

namespace grpo::collective_internal {

std::string ThisHostName();

// The numeric address `host` resolves to, as Gloo prints peers ("127.0.0.1"); `host` itself
// when it does not resolve.
std::string NumericAddress(const std::string& host);

// Publishes this rank's identity; `listen_ip` is the address peers reach it at.
void PublishIdentity(gloo::rendezvous::Store& store, int rank, const std::string& listen_ip);

// The peers that failed: those on this host whose process has exited (gone, or a zombie not yet
// reaped); failing that, the one peer on another host whose address appears in `engine_message`.
// Empty when neither tells within 2 s (a peer that is exiting closes its sockets a moment
// before its process is gone, so the check is repeated for that long).
std::vector<int> FailedPeers(gloo::rendezvous::Store& store, int self, int size,
                             const std::string& engine_message);

// "peer rank 2 is gone; " per failed peer, or "a peer rank failed or timed out; ".
std::string DescribeFailedPeers(const std::vector<int>& peers);

}  // namespace grpo::collective_internal

#endif  // GRPO_COLLECTIVE_PEER_IDENTITY_H_
