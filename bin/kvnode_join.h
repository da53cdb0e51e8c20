// kvnode --join ENDPOINTS: a new node joins a running cluster as a learner.
//
// Why the node asks to be added itself (rather than only waiting for an operator's
// `kvctl member add --learner`): one command starts a replacement, with the addresses the
// node really listens on, and the cluster's id comes back in the same answer (a new
// data dir needs it). An operator who added the node first loses nothing: the node finds
// itself already a learner with the same addresses and goes on. It never makes itself a
// voter: promotion stays the operator's step (kvctl member promote, or kvctl member add
// without --learner, which waits for the catch-up and promotes).
//
// On a data dir that holds a join file (disk/join_file.h) the node asks nobody: it
// starts from that file and its own log, like any restarted node.
#pragma once

#include <string>

#include "net/node_config.h"

namespace kvnode {

// Fills config.clusterId, config.joinConf and config.members (from the configuration),
// asking the cluster at `endpoints` if the data dir holds no join file yet, for at most
// `timeoutMs`. False with one sentence in *error if the node cannot join (refused,
// unreachable, a data dir of another node).
bool prepareJoin(kvr::net::NodeConfig& config, const std::string& endpoints, uint32_t timeoutMs,
                 std::string* error);

}  // namespace kvnode
