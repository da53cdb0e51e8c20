// The data directory's owner: file `identity` = "KVRID001", u64 cluster id, u32 node id,
// u64 XXH3 of the preceding bytes. Written once at first start; a node started on a
// data dir of another cluster or node refuses to start.
#pragma once

#include <cstdint>
#include <string>

#include "core/types.h"
#include "disk/file_system.h"

namespace kvr::disk {

struct NodeIdentity {
  uint64_t clusterId = 0;
  NodeId nodeId = kNoNode;
};

constexpr const char* kIdentityFileName = "identity";

// Verifies the identity file, or writes it (durably) when the directory is new
// (`freshDir`: it holds no WAL or snapshot file).
void checkOrWriteIdentity(FileSystem& fs, const std::string& dir, const NodeIdentity& id,
                          bool freshDir);

}  // namespace kvr::disk
