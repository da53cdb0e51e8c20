// The data directory's owner: file `identity` = "KVRID002", u64 cluster id, u32 node id,
// u64 incarnation, u64 XXH3 of the preceding bytes. Written once at first start; a node
// started on a data dir of another cluster or node refuses to start.
//
// The incarnation is a random number drawn when the dir is made: the same node id with
// another incarnation is a data dir that was wiped or replaced, which forgot the votes
// and entries this member acknowledged. Peers remember each other's incarnation
// (disk/peer_incarnations.h) and refuse such a member (net/raft_service.h). 0: unknown
// (never checked). A file without one ("KVRID001", written before incarnations, or one
// written with 0) gets the caller's incarnation, rewritten once as "KVRID002".
#pragma once

#include <cstdint>
#include <string>

#include "core/types.h"
#include "disk/file_system.h"

namespace kvr::disk {

struct NodeIdentity {
  uint64_t clusterId = 0;
  NodeId nodeId = kNoNode;
  uint64_t incarnation = 0;  // see above; not compared by checkOrWriteIdentity
};

constexpr const char* kIdentityFileName = "identity";

// Verifies the identity file, or writes it (durably) when the directory is new
// (`freshDir`: it holds no WAL or snapshot file). Returns the identity the dir holds now:
// `id` with the stored incarnation (id.incarnation for a new dir or an old-format file).
NodeIdentity checkOrWriteIdentity(FileSystem& fs, const std::string& dir,
                                  const NodeIdentity& id, bool freshDir);

}  // namespace kvr::disk
